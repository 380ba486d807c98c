#!/usr/bin/env bash
# Earshot and Pocketsphinx side by side on the same audio, both scored by NIST sclite.
# Usage: bench/compare-pocketsphinx.sh [--model PATH] [--lm FILE] [--lm-args "FLAGS"] [MANIFEST...]
#   --lm-args: decoding flags of the beam+LM column (default "--closed-vocabulary --lm-weight 0.8
#    --word-bonus 0": words from the LM's vocabulary only, as Pocketsphinx decodes from its dictionary;
#    the weights bench/tune-lm.sh chose on the validation set, never the test set: models/README.md)
#   BEAM: beam width of that column (default 32, as earshot's default with an LM)
#   (default manifests: the synthetic corpus's test.tsv if present, then bench/make-test-sets.sh's
#    fsdd-test, ps-librivox, ps-cards; default LM: $EARSHOT_LM, else en-us.eslm where setup makes it,
#    ${XDG_CACHE_HOME:-~/.cache}/earshot/lm)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
model_args=()
lm=${EARSHOT_LM-${XDG_CACHE_HOME:-$HOME/.cache}/earshot/lm/en-us.eslm}
lm_args="--closed-vocabulary --lm-weight 0.8 --word-bonus 0"
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model_args=(--model "$2"); shift 2;;
    --lm) lm=$2; shift 2;;
    --lm-args) lm_args=$2; shift 2;;
    *) break;;
  esac
done
sets=("$@")
if [ ${#sets[@]} -eq 0 ]; then
  dir=$HOME/.cache/earshot/testsets
  "$here/bench/make-test-sets.sh" "$dir"
  [ -f "$HOME/.cache/earshot/corpus/test.tsv" ] && sets+=("$HOME/.cache/earshot/corpus/test.tsv")
  sets+=("$dir/fsdd-test.tsv" "$dir/ps-librivox.tsv" "$dir/ps-cards.tsv")
fi
earshot=${EARSHOT:-$here/.build/release/earshot}
sclite=$(command -v sclite || echo /usr/lib/sctk/bin/sclite)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# Scores a hypotheses TSV against its manifest with sclite; prints WER%. earshot eval --score --trn
# writes the trn files: both texts normalised by Earshot's own rules (curly apostrophes, quotes,
# non-ASCII letters) and paired by audio path, so sclite aligns exactly what earshot eval scores.
score() {
  local ref=$1 hyp=$2
  [ -s "$hyp" ] || { echo "failed"; return; }
  rm -f "$work/ref.trn" "$work/hyp.trn"
  "$earshot" eval "$ref" --score "$hyp" --trn "$work" > /dev/null 2> "$work/score.err" || {
    echo "compare: earshot eval --score $hyp: $(tail -n 1 "$work/score.err")" >&2
    [ -s "$work/hyp.trn" ] || { echo "failed"; return; }
  }
  # A figure or a failure: a broken sclite must not print a blank column and exit 0.
  local wer
  wer=$("$sclite" -r "$work/ref.trn" trn -h "$work/hyp.trn" trn -i spu_id -o sum stdout 2> "$work/sclite.err" |
    awk '/Sum\/Avg/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) v[++k] = $i; print v[k - 1]; exit }')
  if [ -z "$wer" ]; then
    echo "compare: sclite gave no score for $2: $(tail -n 3 "$work/sclite.err")" >&2
    exit 1
  fi
  echo "$wer"
}

beam=${BEAM:-32}
echo "WER (%) scored by sclite; Earshot greedy (no LM), Earshot beam $beam + general LM ($(basename "$lm") $lm_args), Pocketsphinx (general LM)"
printf '%-18s %6s  %10s  %10s  %12s\n' "test set" "utts" "greedy" "beam+LM" "Pocketsphinx"
for m in "${sets[@]}"; do
  name=$(basename "$(dirname "$m")")-$(basename "$m" .tsv)
  # eval exits 1 when some audio could not be read (scored as empty hypotheses): say so, go on.
  "$earshot" eval "$m" "${model_args[@]}" --hyps "$work/$name.earshot.tsv" > "$work/$name.eval" 2> "$work/$name.err" ||
    echo "compare: earshot eval $m: $(tail -n 1 "$work/$name.err")" >&2
  lmwer="-"
  if [ -f "$lm" ]; then
    "$earshot" eval "$m" "${model_args[@]}" --lm "$lm" --beam "$beam" $lm_args --hyps "$work/$name.lm.tsv" > "$work/$name.lm.eval" 2> "$work/$name.lm.err" ||
      echo "compare: earshot eval --lm $m: $(tail -n 1 "$work/$name.lm.err")" >&2
    lmwer=$(score "$m" "$work/$name.lm.tsv")
  fi
  "$here/bench/pocketsphinx-hyps.sh" "$m" "$work/$name.ps.tsv" 2> "$work/$name.ps.err" ||
    { echo "compare: pocketsphinx-hyps.sh $m failed: $(tail -n 3 "$work/$name.ps.err")" >&2; exit 1; }
  # Scored into variables first: a failure inside printf's arguments would not stop the script.
  greedywer=$(score "$m" "$work/$name.earshot.tsv")
  pswer=$(score "$m" "$work/$name.ps.tsv")
  printf '%-18s %6d  %10s  %10s  %12s\n' "$name" "$(grep -cv '^#' "$m")" "$greedywer" "$lmwer" "$pswer"
done
