#!/usr/bin/env bash
# Every figure the model card (models/README.md) reports for a base model, in one run, so a candidate
# can be measured before it ships (and measured again on a fresh machine):
#
#   bench/model-card.sh [MODEL]          (default models/earshot-base-en.safetensors)
#
# 1. greedy WER/CER on the synthetic valid set, the valid set cut to its speech (bench/cut-to-speech.py)
#    and the whole test set; the test set with the general LM as `earshot transcribe` decodes;
# 2. WER by voice on valid and test (bench/corpus-breakdown.py --by voice);
# 3. Earshot (greedy; beam + LM) beside Pocketsphinx on the synthetic test subset and the real-speech
#    sets, scored by sclite (bench/compare-pocketsphinx.sh);
# 4. speed and peak memory (earshot bench, one core) and the daemon's latency and memory
#    (bench/daemon-latency.sh).
# Needs the corpus (corpus/synthesize.py) and the test sets (bench/make-test-sets.sh, run here); about
# 15 minutes on the project's 2-core machine. The figures are meant to be read beside the card's: stop
# background training first, or the speeds are the machine's noise. Output: stdout and, per step, files in
# $OUT (default a new folder under /tmp, kept and printed at the end).
# Environment: CORPUS (default ~/.cache/earshot/corpus), EARSHOT (default .build/release/earshot; earshotd
# beside it), LM (the general LM, default the one scripts/setup.sh makes),
# LM_ARGS (the beam + LM column's flags, default the card's "--closed-vocabulary --lm-weight 0.8
# --word-bonus 0"), SKIP="daemon compare ..." to leave steps out.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
MODEL=$(realpath "${1:-$here/models/earshot-base-en.safetensors}")
CORPUS=${CORPUS:-$HOME/.cache/earshot/corpus}
EARSHOT=${EARSHOT:-$here/.build/release/earshot}
LM=${LM:-${EARSHOT_LM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/earshot/lm}/en-us.eslm}
LM_ARGS=${LM_ARGS:-"--closed-vocabulary --lm-weight 0.8 --word-bonus 0"}
SKIP=${SKIP:-}
OUT=${OUT:-$(mktemp -d /tmp/model-card.XXXXXX)}
mkdir -p "$OUT"
[ -x "$EARSHOT" ] || { echo "model-card: no $EARSHOT (scripts/setup.sh builds it)" >&2; exit 1; }
for f in "$MODEL" "$CORPUS/valid.tsv" "$CORPUS/test.tsv"; do
  [ -s "$f" ] || { echo "model-card: $f is missing (corpus/synthesize.py makes the corpus)" >&2; exit 1; }
done
[ -s "$LM" ] || { echo "model-card: no general LM at $LM (scripts/setup.sh makes it)" >&2; exit 1; }
skip() { case " $SKIP " in *" $1 "*) return 0;; esac; return 1; }
section() { printf '\n== %s\n' "$*"; }
# The WER and CER lines of `earshot eval`.
# On failure (an unreadable file, a bad model) everything eval said is shown, then the script stops.
evaluate() {
  local out
  if ! out=$("$EARSHOT" eval "$@" 2>&1); then
    printf '%s\n' "$out" >&2; echo "model-card: earshot eval $* failed" >&2; exit 1
  fi
  grep -E '^(WER|CER|speed):' <<< "$out"
}

sets=$HOME/.cache/earshot/testsets
"$here/bench/make-test-sets.sh" "$sets" > "$OUT/make-test-sets.log" 2>&1 || { cat "$OUT/make-test-sets.log" >&2; exit 1; }
echo "model: $MODEL"
info=$("$EARSHOT" model info "$MODEL")
grep -E '^(sha256|parameters|subsampling|look-ahead|word timing):' <<< "$info" || true
if grep -q '^word timing: *not calibrated' <<< "$info"; then
  echo "model-card: $MODEL has no word-timing calibration; before shipping it: earshot model calibrate --data $CORPUS/valid-clean.tsv --out $MODEL $MODEL (docs/training.md)" >&2
fi

section "synthetic valid (970), greedy"
evaluate "$CORPUS/valid.tsv" --model "$MODEL" --hyps "$OUT/valid.hyps.tsv"
if ! skip cut; then
  section "synthetic valid cut to its speech, greedy"
  [ -s "$OUT/valid-cut/manifest.tsv" ] || "$here/.venv/bin/python" "$here/bench/cut-to-speech.py" "$CORPUS/valid.tsv" "$OUT/valid-cut" > /dev/null
  evaluate "$OUT/valid-cut/manifest.tsv" --model "$MODEL"
fi
section "synthetic test (1036), greedy"
evaluate "$CORPUS/test.tsv" --model "$MODEL" --hyps "$OUT/test.hyps.tsv"
section "synthetic test (1036), beam + general LM ($LM_ARGS)"
# shellcheck disable=SC2086
evaluate "$CORPUS/test.tsv" --model "$MODEL" --lm "$LM" $LM_ARGS
section "FSDD test (200), greedy"
evaluate "$sets/fsdd-test.tsv" --model "$MODEL"

section "by voice, greedy (valid, then test)"
# The label density in the model's own output frames ("one output every 20 ms").
frame_ms=$(sed -n 's/^subsampling:.*one output every \([0-9.]*\) ms.*/\1/p' <<< "$info")
for split in valid test; do
  python3 "$here/bench/corpus-breakdown.py" --corpus "$CORPUS" --split $split --hyps "$OUT/$split.hyps.tsv" \
    --by voice ${frame_ms:+--frame-ms "$frame_ms"}
done

if ! skip compare; then
  section "beside Pocketsphinx (sclite)"
  "$here/bench/compare-pocketsphinx.sh" --model "$MODEL" --lm "$LM" --lm-args "$LM_ARGS" \
    "$CORPUS/test-subset.tsv" "$sets/fsdd-test.tsv" "$sets/ps-librivox.tsv" "$sets/ps-cards.tsv"
fi
if ! skip bench; then
  section "speed and memory, one core (earshot bench)"
  "$EARSHOT" bench --model "$MODEL" --audio "$CORPUS/test-subset.tsv"
fi
if ! skip daemon; then
  section "daemon latency and memory (bench/daemon-latency.sh)"
  EARSHOT_MODEL="$MODEL" EARSHOT_BIN="$(dirname "$EARSHOT")" "$here/bench/daemon-latency.sh"
fi
echo
echo "model-card: hypotheses and cut audio in $OUT"
