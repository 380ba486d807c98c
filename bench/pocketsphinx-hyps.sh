#!/usr/bin/env bash
# Runs Debian's pocketsphinx (general US English acoustic model, general trigram LM, CMU dictionary)
# over an Earshot manifest (audio path relative to the manifest's folder, TAB, reference text) and
# writes its hypotheses in the same two-column form, so both recognisers are scored the same way.
# Usage: bench/pocketsphinx-hyps.sh MANIFEST.tsv OUT.tsv
set -euo pipefail
manifest=$1; out=$2
base=$(cd "$(dirname "$manifest")" && pwd)
model=/usr/share/pocketsphinx/model/en-us
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
: > "$work/ids"
n=0
while IFS=$'\t' read -r path text; do
  case "$path" in ''|'#'*) continue;; esac
  n=$((n + 1))
  # pocketsphinx's model wants 16 kHz 16-bit mono; sox converts any input (8 kHz FSDD included).
  case "$path" in /*) audio=$path;; *) audio=$base/$path;; esac
  sox "$audio" -r 16000 -c 1 -b 16 -e signed -t raw "$work/$n.raw"
  printf '%s\t%s\n' "$n" "$path" >> "$work/map"
  echo "$n" >> "$work/ids"
done < "$manifest"
pocketsphinx_batch -hmm "$model/en-us" -lm "$model/en-us.lm.bin" -dict "$model/cmudict-en-us.dict" \
  -ctl "$work/ids" -cepdir "$work" -cepext .raw -adcin yes -adchdr 0 -hyp "$work/hyp" -logfn "$work/log" >/dev/null 2>&1
# The hyp file has lines "words (id score)"; map ids back to paths, drop fillers like <sil>.
python3 - "$work/map" "$work/hyp" "$out" <<'PY'
import re, sys
paths = dict(line.rstrip("\n").split("\t", 1) for line in open(sys.argv[1]))
hyps = {}
for line in open(sys.argv[2]):
    m = re.match(r"^(.*?)\s*\((\S+)(?:\s+-?\d+)?\)\s*$", line)
    if m:
        words = [w for w in m.group(1).split() if not w.startswith(("<", "[", "++"))]
        hyps[m.group(2)] = " ".join(re.sub(r"\(\d+\)$", "", w) for w in words)
with open(sys.argv[3], "w") as f:
    for i, p in paths.items():
        f.write(f"{p}\t{hyps.get(i, '')}\n")
PY
echo "pocketsphinx: $n files -> $out" >&2
