#!/usr/bin/env bash
# bench/daemon-syscalls.sh: which system calls earshotd makes (strace -f) while it captures through
# ALSA (the `file` PCM), serves a subscriber, a streamed session, status, reloads by socket and SIGHUP,
# a failing reload and SIGTERM; then whether systemd/earshotd.service's SystemCallFilter= admits
# them all (the filter's groups expanded with `systemd-analyze syscall-filter`). Prints the calls
# the filter would refuse (a refused call fails with EPERM, SystemCallErrorNumber=, instead of
# killing the daemon). Asserts nothing; EARSHOT_BIN picks the build (default .build/release).
set -euo pipefail
source "$(dirname "$0")/daemon-lib.sh"
command -v strace >/dev/null || { echo "bench: needs strace" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "bench: needs systemd-analyze" >&2; exit 1; }

speech "$WORK/s.wav" 0.8 "hello world" "open the door"
sox "$WORK/s.wav" -t raw -r 16000 -c 1 -b 16 -e signed-integer "$WORK/mic.src"
cat > "$WORK/asoundrc" <<ASOUND
pcm.earshot_syscalls {
  type file
  slave.pcm null
  file "/dev/null"
  infile "$WORK/mic.raw"
  format "raw"
}
ASOUND
# run_pass NAME [STRACE OPTIONS...]: the daemon under strace and the client script; outputs in $WORK/NAME.*
run_pass() {
  local name=$1; shift
  SOCK=$WORK/$name.sock
  # The file PCM cannot open until its input exists (the daemon retries): the microphone "appears"
  # once the subscriber listens, so it hears every utterance.
  rm -f "$WORK/mic.raw"
  strace -f -qq -o "$WORK/$name.trace" "$@" -- "$EARSHOTD" --config "$WORK/none.toml" --socket "$SOCK" --model "$MODEL" \
    --device earshot_syscalls --alsa-config "$WORK/asoundrc" --capture-rate 16000 --capture-channels 1 \
    --capture-duration 4 --log-level info 2>"$WORK/$name.log" &
  local tracer=$!
  for _ in $(seq 1 600); do [ -S "$SOCK" ] && break; sleep 0.05; done
  [ -S "$SOCK" ] || { cat "$WORK/$name.log" >&2; exit 1; }
  # Signals go to earshotd itself, not to strace (which would detach and leave it running).
  DAEMON_PID=$(pgrep -P "$tracer" -x earshotd)
  "$EARSHOT" listen --socket "$SOCK" --json --no-partials > "$WORK/$name.listen" &
  local listener=$!
  sleep 0.5
  cp "$WORK/mic.src" "$WORK/mic.tmp" && mv "$WORK/mic.tmp" "$WORK/mic.raw"
  "$EARSHOT" stream --socket "$SOCK" "$WORK/s.wav" > "$WORK/$name.stream"
  "$EARSHOT" status --socket "$SOCK" > /dev/null
  "$EARSHOT" reload --socket "$SOCK" > /dev/null
  printf 'not a model' > "$WORK/bad.safetensors"
  "$EARSHOT" reload --socket "$SOCK" --model "$WORK/bad.safetensors" > /dev/null 2>&1 || true
  kill -HUP "$DAEMON_PID"
  for _ in $(seq 1 200); do grep -q "model reloaded" "$WORK/$name.log" && [ "$(grep -c 'model reloaded' "$WORK/$name.log")" -ge 2 ] && break; sleep 0.05; done
  "$EARSHOT" stream --socket "$SOCK" "$WORK/s.wav" >> "$WORK/$name.stream"
  kill -TERM "$DAEMON_PID"
  wait "$tracer" || true
  DAEMON_PID=""
  wait "$listener" || true
}

run_pass plain
# Every call name strace saw (resumed and signal lines carry none).
sed -E 's/^[0-9]+ +//' "$WORK/plain.trace" | grep -oE '^[a-z_0-9]+\(' | tr -d '(' | sort -u > "$WORK/used"

# A filter group's calls, groups expanded recursively.
expand() {
  systemd-analyze syscall-filter "$1" | sed -E 's/#.*//; s/^ +//; /^$/d' | tail -n +2 | while read -r item; do
    case $item in @*) expand "$item" ;; *) echo "$item" ;; esac
  done
}
expand @system-service | sort -u > "$WORK/allowed"
{ expand @privileged; expand @resources; } | sort -u > "$WORK/denied"
comm -23 "$WORK/allowed" "$WORK/denied" > "$WORK/admitted"

refused=$(comm -23 "$WORK/used" "$WORK/admitted" | paste -sd, -)
machine
echo "earshotd: $EARSHOTD"
echo "system calls made: $(wc -l < "$WORK/used")"
echo "  $(tr '\n' ' ' < "$WORK/used")"
echo "refused by SystemCallFilter=@system-service alone: $(comm -23 "$WORK/used" "$WORK/allowed" | tr '\n' ' ')"
echo "refused by the unit's filter (@system-service minus @privileged @resources): ${refused:-none}"
echo "microphone finals: $(grep -c '"final"' "$WORK/plain.listen" || true); session text: $(tr '\n' ' ' < "$WORK/plain.stream")"
if [ -n "$refused" ]; then
  # What the unit does to those calls (SystemCallErrorNumber=EPERM), injected by strace: the same run
  # must give the same results.
  run_pass refused -e inject="$refused":error=EPERM
  echo "with $refused failing with EPERM: microphone finals $(grep -c '"final"' "$WORK/refused.listen" || true); session text: $(tr '\n' ' ' < "$WORK/refused.stream")"
  if cmp -s "$WORK/plain.stream" "$WORK/refused.stream" && [ "$(grep -c '"final"' "$WORK/plain.listen")" = "$(grep -c '"final"' "$WORK/refused.listen")" ]; then
    echo "same results: the filter does not break the daemon"
  else
    echo "DIFFERENT results under the filter; earshotd log:"; tail -20 "$WORK/refused.log"
  fi
  echo "injected failures: $(grep -c 'INJECTED' "$WORK/refused.trace" || true) ($(grep -oE '^[0-9]+ +[a-z_0-9]+\(' "$WORK/refused.trace" >/dev/null; grep 'INJECTED' "$WORK/refused.trace" | sed -E 's/^[0-9]+ +//' | grep -oE '^[a-z_0-9]+' | sort | uniq -c | tr -s ' ' | paste -sd, -))"
fi
