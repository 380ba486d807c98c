#!/usr/bin/env bash
# Builds Earshot manifests for the real-speech test sets available offline:
#   fsdd-test.tsv      ../shared/data/fsdd indexes 0-4 of each digit and speaker (200 files, 8 kHz)
#   fsdd-train.tsv     indexes 5-49 (1800 files), the adaptation split
#   fsdd-select.tsv    indexes 5-9 (200 files, a subset of fsdd-train): for choosing between base models,
#                      which never train on FSDD, so that fsdd-test is only ever reported
#   ps-librivox.tsv    Debian pocketsphinx-testdata: 5 LibriVox read-speech utterances
#   ps-cards.tsv       Debian pocketsphinx-testdata: 5 card names ("four queen of clubs")
# and, when the synthetic corpus's test split exists ($CORPUS, default ~/.cache/earshot/corpus):
#   $CORPUS/test-subset.tsv  every 5th utterance of test.tsv from the first (208 utterances, 724 s with
#                            the default seed), the quick synthetic test set of the model card and benches
#   $CORPUS/valid-clean.tsv  the validation utterances synthesised without noise, reverb or band effects
#                            (255 with the default seed), silence around each: what `earshot model
#                            calibrate` measures word timing on (models/README.md)
# Usage: bench/make-test-sets.sh [OUTDIR]   (default: ~/.cache/earshot/testsets)
set -euo pipefail
# File order must not depend on the locale (0_george_1 against 0_george_10).
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$HOME/.cache/earshot/testsets}
mkdir -p "$out"
fsdd=${FSDD:-$here/../shared/data/fsdd/recordings}
if [ -d "$fsdd" ]; then
  fsdd=$(cd "$fsdd" && pwd)
  words=(zero one two three four five six seven eight nine)
  : > "$out/fsdd-test.tsv"; : > "$out/fsdd-train.tsv"; : > "$out/fsdd-select.tsv"
  for f in $(ls "$fsdd" | sort); do
    base=${f%.wav}; digit=${base%%_*}; index=${base##*_}
    if [ "$index" -le 4 ]; then list=fsdd-test; else list=fsdd-train; fi
    printf '%s\t%s\n' "$fsdd/$f" "${words[$digit]}" >> "$out/$list.tsv"
    if [ "$index" -ge 5 ] && [ "$index" -le 9 ]; then printf '%s\t%s\n' "$fsdd/$f" "${words[$digit]}" >> "$out/fsdd-select.tsv"; fi
  done
else
  # The other sets do not need it: a checkout without the shared recordings still gets them.
  echo "make-test-sets: FSDD not found at $fsdd (set FSDD=...): no fsdd-*.tsv" >&2
fi
ps=/usr/share/pocketsphinx/test/data
[ -d "$ps" ] || { echo "make-test-sets: $ps missing (apt-get install pocketsphinx-testdata)" >&2; exit 1; }
for set in librivox cards; do
  : > "$out/ps-$set.tsv"
  trans=$ps/$set/$set.transcription; [ -f "$trans" ] || trans=$ps/$set/transcription
  sed -E 's#^<s> (.*) </s> \((.*)\)$#\2\t\1#; s/ +\t/\t/; s/\t(.*) +$/\t\1/' "$trans" | while IFS=$'\t' read -r id text; do
    printf '%s\t%s\n' "$ps/$set/$id.wav" "$(echo "$text" | sed -E 's/ +/ /g; s/ $//')" >> "$out/ps-$set.tsv"
  done
done
corpus=${CORPUS:-$HOME/.cache/earshot/corpus}
if [ -s "$corpus/test.tsv" ]; then
  awk 'NR % 5 == 1' "$corpus/test.tsv" > "$corpus/test-subset.tsv.tmp"
  mv "$corpus/test-subset.tsv.tmp" "$corpus/test-subset.tsv"
  wc -l "$corpus/test-subset.tsv" >&2
fi
if [ -s "$corpus/valid.tsv" ]; then
  # valid.tsv's utterances with the records synthesize.py keeps for them (corpus/synthesize.py's
  # manifest_records: the one rule for which record of an utterance counts).
  python3 - "$corpus" "$here/corpus" > "$corpus/valid-clean.tsv.tmp" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
from synthesize import manifest_records
for r in manifest_records(sys.argv[1], "valid"):
    if r.get("aug", {}).get("clean"):
        print("%s\t%s" % (r["path"], r["text"]))
PY
  mv "$corpus/valid-clean.tsv.tmp" "$corpus/valid-clean.tsv"
  wc -l "$corpus/valid-clean.tsv" >&2
fi
if [ ! -s "$corpus/test.tsv" ]; then
  echo "make-test-sets: no $corpus/test.tsv yet (corpus/synthesize.py), so no test-subset.tsv" >&2
fi
wc -l "$out"/*.tsv >&2
