#!/usr/bin/env bash
# earshot adapt on real recordings (FSDD: 4 speakers, 8 kHz spoken digits), printed as a table.
#
#   bench/adapt-fsdd.sh [BASE_MODEL]        (default models/earshot-base-en.safetensors)
#
# The "+text" configurations also pass --text with the ten digit words (a domain LM, closed vocabulary
# when tuning prefers it, stored in the model).
# For each configuration in $CONFIGS (default: all in options_for below) and split in $SPLITS:
#   - "seen": adapt on indexes 5-49 of every speaker (1800 files), greedy WER on indexes 0-4 (200);
#   - "loso-SPEAKER": adapt on indexes 5-49 of the other three speakers, WER on all 500 files of SPEAKER;
#   - the WER on the base model's held-out synthetic set ($SYNTH, 208 utterances) after adapting, to see
#     whether adapting wrecks general recognition.
# The first adaptation of a run starts from an empty activation cache, so its time includes caching;
# its wall time and peak memory are printed (target: under 10 minutes on 2 cores).
# Environment: EARSHOT (binary, default .build/release/earshot), FSDD, SYNTH, GENERAL, CONFIGS, SPLITS,
# KEEP=1 keeps the work folder.
set -euo pipefail
# File order (and so the seeded adaptation) must not depend on the locale.
export LC_ALL=C
cd "$(dirname "$0")/.."
BASE=${1:-models/earshot-base-en.safetensors}
EARSHOT=${EARSHOT:-.build/release/earshot}
FSDD=${FSDD:-../shared/data/fsdd/recordings}
SYNTH=${SYNTH:-$HOME/.cache/earshot/corpus/test-subset.tsv}
GENERAL=${GENERAL:-$HOME/.cache/earshot/corpus/train.tsv}
CONFIGS=${CONFIGS:-"default default+text general dense dense+text dense-nomask dense-prefix blocks2 dense-anchor1"}
SPLITS=${SPLITS:-"seen loso-george loso-jackson loso-lucas loso-nicolas"}
[ -x "$EARSHOT" ] || { echo "no $EARSHOT: swift build -c release --product earshot" >&2; exit 1; }
[ -f "$BASE" ] || { echo "no base model $BASE" >&2; exit 1; }
[ -d "$FSDD" ] || { echo "FSDD not found at $FSDD (the repository's ../shared/data/fsdd; set FSDD=...)" >&2; exit 1; }
# Absolute: the manifests live in $WORK, and a manifest's relative paths are read from its own folder.
FSDD=$(realpath "$FSDD")
WORK=$(mktemp -d /tmp/adapt-fsdd.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

# Manifests from the file names {digit}_{speaker}_{index}.wav.
words=(zero one two three four five six seven eight nine)
for f in "$FSDD"/*.wav; do
    n=$(basename "$f" .wav); d=${n%%_*}; rest=${n#*_}; spk=${rest%_*}; idx=${rest##*_}
    line="$f	${words[$d]}"
    if [ "$idx" -ge 5 ]; then echo "$line" >> "$WORK/seen-train.tsv"; else echo "$line" >> "$WORK/seen-test.tsv"; fi
    for s in george jackson lucas nicolas; do
        if [ "$spk" = "$s" ]; then echo "$line" >> "$WORK/loso-$s-test.tsv"
        elif [ "$idx" -ge 5 ]; then echo "$line" >> "$WORK/loso-$s-train.tsv"; fi
    done
done

printf '%s\n' "${words[@]}" > "$WORK/digits.txt"

# FSDD is scored as the model decodes by default (with its domain LM when it has one); the synthetic
# set always without it (--no-model-lm): the question there is what adapting did to the acoustics.
wer() { "$EARSHOT" eval "$2" --model "$1" "${@:3}" 2>/dev/null | awk '/^WER:/ {sub("%", "", $2); print $2}'; }

options_for() {
    case "$1" in
        # The defaults: dense layers + every encoder block at lr x 0.3, masking, file-by-file validation
        # split, speed copies 0.8-1.2, the mean of three runs.
        default) echo "" ;;
        default+text) echo "--text $WORK/digits.txt" ;;
        seed2+text) echo "--text $WORK/digits.txt --seed 2" ;;
        single+text) echo "--text $WORK/digits.txt --runs 1" ;;
        runs5+text) echo "--text $WORK/digits.txt --runs 5" ;;
        seed3+text) echo "--text $WORK/digits.txt --seed 3" ;;
        nospeed+text) echo "--text $WORK/digits.txt --speed 1" ;;
        speed+text) echo "--text $WORK/digits.txt --speed 0.9,1,1.1" ;;
        speed5+text) echo "--text $WORK/digits.txt --speed 0.8,0.9,1,1.1,1.2" ;;
        speed7+text) echo "--text $WORK/digits.txt --speed 0.7,0.8,0.9,1,1.1,1.25,1.4" ;;
        masks4+text) echo "--text $WORK/digits.txt --time-masks 4 --channel-masks 4 --patience 8" ;;
        general) echo "--general $GENERAL --general-share 0.2" ;;
        rehearse+text) echo "--text $WORK/digits.txt --rehearse" ;;
        speed5-rehearse+text) echo "--text $WORK/digits.txt --rehearse --speed 0.8,0.9,1,1.1,1.2" ;;
        dense+text) echo "--encoder-blocks 0 --text $WORK/digits.txt" ;;
        dense-anchor1) echo "--encoder-blocks 0 --anchor 1" ;;
        dense) echo "--encoder-blocks 0" ;;
        dense-nomask) echo "--encoder-blocks 0 --time-masks 0 --channel-masks 0" ;;
        dense-prefix) echo "--encoder-blocks 0 --split-by prefix" ;;
        blocks2) echo "--encoder-blocks 2 --encoder-lr-factor 0.1" ;;
        # The top half of the encoder only: half the backward cost, for the wider (384-channel) bases.
        top6+text) echo "--encoder-blocks 6 --text $WORK/digits.txt" ;;
        *) echo "unknown configuration $1" >&2; exit 1 ;;
    esac
}

# Every configuration name is checked first: inside $(...) below, options_for's exit would only end the
# subshell, and a typo would run (and print) the default configuration under its name.
for config in $CONFIGS; do options_for "$config" > /dev/null; done

base_synth=$(wer "$BASE" "$SYNTH")
declare -A base_wer
for split in $SPLITS; do base_wer[$split]=$(wer "$BASE" "$WORK/$split-test.tsv"); done

# adapted: as the model decodes by default (with its domain LM, if any); greedy: --no-model-lm.
printf '%-14s %-14s %9s %9s %9s %10s %10s %8s %6s %9s\n' config split base-WER adapted greedy "synth-base" "synth-adap" "time-s" epochs "peak-MiB"
first=1
for config in $CONFIGS; do
    for split in $SPLITS; do
        out="$WORK/$config-$split.safetensors"
        # shellcheck disable=SC2046
        /usr/bin/time -f '%e %M' -o "$WORK/time" "$EARSHOT" adapt --base "$BASE" --data "$WORK/$split-train.tsv" \
            --out "$out" --cache "$WORK/cache" $(options_for "$config") > "$WORK/stdout" 2> "$WORK/log-$config-$split"
        read -r secs kb < "$WORK/time"
        # One run: "B/N" (best epoch / epochs); several: "N" epochs in all for their mean, "N rK" when
        # run K was kept instead.
        epochs=$(sed -n -e 's/.*epoch \([0-9]*\) of \([0-9]*\)).*/\1\/\2/p' -e 's/.*the mean of [0-9]* runs, \([0-9]*\) epochs* in all.*/\1/p' \
            -e 's/.*(greedy, run \([0-9]*\) of .* \([0-9]*\) epochs in all.*/\2 r\1/p' "$WORK/stdout")
        after=$(wer "$out" "$WORK/$split-test.tsv")
        greedy=$(wer "$out" "$WORK/$split-test.tsv" --no-model-lm)
        synth=$(wer "$out" "$SYNTH" --no-model-lm)
        printf '%-14s %-14s %9s %9s %9s %10s %10s %8s %6s %9d\n' "$config" "$split" "${base_wer[$split]}" "$after" "$greedy" "$base_synth" "$synth" \
            "$secs" "$epochs" $((kb / 1024))
        if [ $first = 1 ]; then first=0; echo "  (first run: empty cache; $(grep -c . "$WORK/$split-train.tsv") training files)"; fi
    done
done
