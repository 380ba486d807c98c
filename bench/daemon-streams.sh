#!/usr/bin/env bash
# How many live streams one earshotd keeps up with: N clients stream the same speech at once in real
# time (`earshot stream --realtime --json`), for N = 1, 2, 4, 8, 12, 16 (or the counts given). A
# stream is on time when every final arrives within LATE seconds (default 0.5) of the frame that
# decided it being sent, and its `stopped` within LATE + 1 s of its last frame. Prints, per N: finals,
# the worst and 95th-percentile delay, streams on time, the daemon's RTF and memory.
#
# usage: bench/daemon-streams.sh [N...]     (EARSHOT_MODEL=path, EARSHOT_BIN=.build/release, LATE=0.5)
set -euo pipefail
source "$(dirname "$0")/daemon-lib.sh"
LATE=${LATE:-0.5}
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1 2 4 8 12 16)

speech "$WORK/talk.wav" 1.0 "turn on the lights in the kitchen" "what is the weather like tomorrow" \
  "open the terminal and list the files" "remind me to call the doctor at three" "play the next song"
echo "speech: $(soxi -D "$WORK/talk.wav") s per stream"
start_daemon
echo "idle daemon: RSS $(rss_mb "$DAEMON_PID") MB"
machine
best=0
for n in "${COUNTS[@]}"; do
  pids=()
  for i in $(seq 1 "$n"); do
    stamped "$WORK/ev-$n-$i" "$EARSHOT" stream --socket "$SOCK" --json --realtime "$WORK/talk.wav" &
    pids+=($!)
  done
  rss_peak=0
  while kill -0 "${pids[@]}" 2>/dev/null; do
    r=$(rss_mb "$DAEMON_PID"); rss_peak=$(python3 -c "print(max($rss_peak, $r))"); sleep 0.5
  done
  wait "${pids[@]}" || true
  status=$(python3 -c '
import socket, sys, json
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile()
f.readline(); s.sendall(b"{\"type\":\"status\"}\n"); print(f.readline().strip())' "$SOCK")
  line=$(python3 - "$n" "$LATE" "$WORK" "$status" <<'PY'
import json, math, sys, glob
n, late, work = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
status = json.loads(sys.argv[4])
delays, on_time, finals = [], 0, 0
for path in glob.glob(f"{work}/ev-{n}-*"):
    t0 = None; ok = True; last_sent = 0; stopped = None
    for line in open(path):
        stamp, text = line.split(" ", 1); t = float(stamp); e = json.loads(text)
        if e["type"] == "started": t0 = t
        elif e["type"] == "endpoint" and e["reason"] != "end_of_stream":
            # `at` is on the session's 40 ms block grid; the 100 ms frame holding it was sent at its start.
            d = t - (t0 + (math.ceil(e["at"] / 0.1 - 1e-6) - 1) * 0.1); delays.append(d); finals += 1
            ok = ok and d <= late
        elif e["type"] == "stopped":
            # The last frame was sent at t0 + (duration - 0.1) at the earliest.
            d = t - (t0 + e["audio_seconds"] - 0.1); ok = ok and d <= late + 1.0; stopped = d
    on_time += ok and stopped is not None
delays.sort()
p95 = delays[int(0.95 * (len(delays) - 1))] if delays else float("nan")
worst = delays[-1] if delays else float("nan")
print(f"{n:3d} streams: {finals:4d} finals, delay p95 {p95*1000:6.0f} ms, worst {worst*1000:6.0f} ms, "
      f"on time {on_time}/{n}, RTF {status['real_time_factor']:.3f}")
print("OK" if on_time == n else "LATE")
PY
)
  echo "$(echo "$line" | head -1), daemon RSS peak $rss_peak MB"
  [ "$(echo "$line" | tail -1)" = OK ] && best=$n
done
echo "sustained: $best concurrent real-time streams with every final on time (target >= 8)"
echo "daemon: RSS $(rss_mb "$DAEMON_PID") MB, peak $(hwm_mb "$DAEMON_PID") MB"
