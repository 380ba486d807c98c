#!/usr/bin/env bash
# Grid search of the general LM's weight and word bonus on a validation manifest (never the test set):
# prints WER (sclite-compatible, `earshot eval`) for each pair, best last.
#
#   bench/tune-lm.sh [--model PATH] [--lm FILE] [--limit N] [--vocabulary closed|open] VALID.tsv
#
# Defaults: the shipped model, ~/.cache/earshot/lm/en-us.eslm, the first 200 utterances, closed vocabulary.
# Environment: WEIGHTS="0.3 0.6 1.0" BONUSES="0 1.5 3" (the grid), EARSHOT (binary).
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/earshot-base-en.safetensors lm=${EARSHOT_LM-${XDG_CACHE_HOME:-$HOME/.cache}/earshot/lm/en-us.eslm} limit=200 vocab=closed
while [ $# -gt 1 ]; do
  case $1 in
    --model) model=$2; shift 2;; --lm) lm=$2; shift 2;; --limit) limit=$2; shift 2;;
    --vocabulary) vocab=$2; shift 2;; *) echo "unknown option $1" >&2; exit 2;;
  esac
done
valid=${1:?usage: bench/tune-lm.sh [options] VALID.tsv}
EARSHOT=${EARSHOT:-.build/release/earshot}
work=$(mktemp -d /tmp/tune-lm.XXXXXX); trap 'rm -rf "$work"' EXIT
# Relative audio paths stay valid: the subset is written beside the manifest's folder's files.
dir=$(cd "$(dirname "$valid")" && pwd)
head -n "$limit" "$valid" | awk -F'\t' -v d="$dir" 'BEGIN{OFS="\t"} { if ($1 !~ /^\//) $1 = d "/" $1; print }' > "$work/valid.tsv"
best="" bestwer=1000
for w in ${WEIGHTS:-0.3 0.6 1.0}; do
  for b in ${BONUSES:-0 1.5 3}; do
    wer=$("$EARSHOT" eval "$work/valid.tsv" --model "$model" --lm "$lm" --lm-weight "$w" --word-bonus "$b" \
          --"$vocab"-vocabulary 2>/dev/null | awk '/^WER:/ {sub("%", "", $2); print $2}')
    echo "lm-weight $w word-bonus $b: WER $wer%"
    if awk -v a="$wer" -v b="$bestwer" 'BEGIN{exit !(a < b)}'; then bestwer=$wer best="--lm-weight $w --word-bonus $b"; fi
  done
done
echo "best ($vocab vocabulary, $(wc -l < "$work/valid.tsv") utterances of $valid): $best  WER $bestwer%"
