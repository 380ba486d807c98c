#!/usr/bin/env bash
# Soak test: for DURATION seconds (default 1800), clients keep connecting and leaving earshotd -
# streams that finish, streams dropped mid-utterance, subscribers that come and go, status and ping
# requests - while the daemon's resident memory and open descriptors are sampled from /proc every
# 10 s. Prints every sample and the first, last and largest of each: a leak shows as a climb
# that does not level off.
#
# usage: bench/daemon-soak.sh [DURATION_SECONDS]    (EARSHOT_MODEL=path, EARSHOT_BIN=.build/release)
set -euo pipefail
source "$(dirname "$0")/daemon-lib.sh"
DURATION=${1:-1800}

speech "$WORK/short.wav" 0.8 "open the door" "close it again"
start_daemon
machine
echo "soak for $DURATION s; sampling every 10 s"

# Clients in the background until the deadline.
deadline=$(( $(date +%s) + DURATION ))
client_loop() {
  local kind=$1 n=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    n=$((n + 1))
    case $kind in
      stream) "$EARSHOT" stream --socket "$SOCK" "$WORK/short.wav" >/dev/null 2>&1 || true ;;
      drop)   # a session abandoned mid-stream: the connection closes without stop
              timeout 0.7 "$EARSHOT" stream --socket "$SOCK" --realtime "$WORK/short.wav" >/dev/null 2>&1 || true ;;
      listen) timeout 1.3 "$EARSHOT" listen --socket "$SOCK" --json >/dev/null 2>&1 || true ;;
      poke)   python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile()
f.readline(); s.sendall(b"{\"type\":\"status\"}\n{\"type\":\"ping\"}\n{\"type\":\"nonsense\"}\n")
for _ in range(3): f.readline()' "$SOCK" 2>/dev/null || true
              sleep 0.2 ;;
    esac
  done
  echo "$kind: $n clients" > "$WORK/count-$kind"
}
for kind in stream drop listen poke; do client_loop "$kind" & done

samples=()
start=$(date +%s)
while [ "$(date +%s)" -lt "$deadline" ]; do
  s="$(( $(date +%s) - start )) $(rss_mb "$DAEMON_PID") $(fds "$DAEMON_PID")"
  samples+=("$s")
  echo "  t=${s%% *} s  RSS $(echo "$s" | cut -d' ' -f2) MB  fds $(echo "$s" | cut -d' ' -f3)"
  sleep 10
done
wait $(jobs -p | grep -v "^$DAEMON_PID$") 2>/dev/null || true
sleep 1
s="$(( $(date +%s) - start )) $(rss_mb "$DAEMON_PID") $(fds "$DAEMON_PID")"
samples+=("$s")
echo "  t=${s%% *} s  RSS $(echo "$s" | cut -d' ' -f2) MB  fds $(echo "$s" | cut -d' ' -f3)  (clients gone)"
cat "$WORK"/count-* | tr '\n' ' '; echo
printf '%s\n' "${samples[@]}" | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
rss = [float(r[1]) for r in rows]; fds = [int(r[2]) for r in rows]
print(f"RSS MB: first {rss[0]:.1f}, last {rss[-1]:.1f}, max {max(rss):.1f}")
print(f"open fds: first {fds[0]}, last {fds[-1]}, max {max(fds)}")'
status=$(python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile()
f.readline(); s.sendall(b"{\"type\":\"status\"}\n"); print(f.readline().strip())' "$SOCK")
echo "status: $status"
kill -0 "$DAEMON_PID" && echo "daemon alive after the soak"
