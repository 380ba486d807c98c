# Shared by bench/daemon-*.sh (sourced, not run): binaries, test speech, starting earshotd, reading
# its memory from /proc. Figures depend on the machine and on what else runs on it: say which, and
# how loaded it was, when you quote them.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${EARSHOT_BIN:-$ROOT/.build/release}
EARSHOTD=${EARSHOTD:-$BIN/earshotd}
EARSHOT=${EARSHOT:-$BIN/earshot}
MODEL=${EARSHOT_MODEL:-$ROOT/models/earshot-base-en.safetensors}

for b in "$EARSHOTD" "$EARSHOT"; do
  [ -x "$b" ] || { echo "bench: $b not found; build with: swift build -c release" >&2; exit 1; }
done
[ -f "$MODEL" ] || { echo "bench: model $MODEL not found; set EARSHOT_MODEL" >&2; exit 1; }
command -v espeak-ng >/dev/null && command -v sox >/dev/null || { echo "bench: needs espeak-ng and sox (scripts/setup.sh)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/earshot-bench.XXXXXX)
DAEMON_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# speech OUT.wav GAP_SECONDS PHRASE...: the phrases spoken by espeak-ng at 16 kHz 16-bit mono, each
# followed by GAP_SECONDS of digital silence (0.3 s of it first).
speech() {
  local out=$1 gap=$2; shift 2
  local parts=() i=0
  sox -n -r 16000 -c 1 -b 16 "$WORK/lead.wav" trim 0 0.3
  sox -n -r 16000 -c 1 -b 16 "$WORK/gap.wav" trim 0 "$gap"
  parts+=("$WORK/lead.wav")
  for phrase in "$@"; do
    i=$((i + 1))
    espeak-ng -v en-us -s 160 -w "$WORK/p$i-22k.wav" "$phrase"
    sox "$WORK/p$i-22k.wav" -r 16000 -c 1 -b 16 "$WORK/p$i.wav"
    parts+=("$WORK/p$i.wav" "$WORK/gap.wav")
  done
  sox "${parts[@]}" "$out"
}

# start_daemon ARGS...: earshotd on $WORK/d.sock without a microphone; sets DAEMON_PID, waits for the socket.
start_daemon() {
  SOCK=$WORK/d.sock
  "$EARSHOTD" --config "$WORK/none.toml" --socket "$SOCK" --model "$MODEL" --no-capture --log-level warning "$@" \
    2>"$WORK/earshotd.log" &
  DAEMON_PID=$!
  for _ in $(seq 1 300); do
    [ -S "$SOCK" ] && return 0
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/earshotd.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "bench: earshotd did not start" >&2; exit 1
}
: > "$WORK/none.toml"

rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# Timestamps each line of stdin with the monotonic clock (seconds), unbuffered; creates the file named
# by its argument once it is running.
STAMP='import sys, time
open(sys.argv[1], "w").close()
for line in sys.stdin:
    sys.stdout.write("%.6f %s" % (time.monotonic(), line)); sys.stdout.flush()'

# stamped FILE COMMAND...: runs COMMAND with each line of its output stamped into FILE. COMMAND starts
# only once the stamper runs, so no line waits in the pipe for Python to start (that would stamp the
# first event, the stream's start, late and make every delay look shorter).
stamped() {
  local out=$1; shift
  rm -f "$out.ready"
  python3 -u -c "$STAMP" "$out.ready" < <(while [ ! -e "$out.ready" ]; do sleep 0.01; done; exec "$@") > "$out"
}

machine() {
  echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), model $(basename "$MODEL")"
}
