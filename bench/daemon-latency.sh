#!/usr/bin/env bash
# Latency of earshotd's results for live speech: a client streams speech in real time
# (`earshot stream --realtime --json`), and every event is stamped as it arrives.
#
#   final latency   = arrival of the final - (stream start + speech end + trailing_silence)
#                     i.e. what a user waits after the endpointing rule is satisfied (the trailing
#                     silence itself is excluded: it is a setting, not a delay);
#   of which compute = arrival - sending of the 100 ms frame that decided the endpoint
#                     (the rest is the model's look-ahead and the 100 ms framing);
#   first partial   = arrival of an utterance's first partial - (stream start + its speech start).
#
# The client sends each 100 ms frame at the start of its interval, so audio reaches the daemon up to
# 0.1 s earlier than a live microphone would deliver it: final latency can read up to 0.1 s low.
# Also prints the daemon's resident memory with one model loaded.
#
# usage: bench/daemon-latency.sh            (EARSHOT_MODEL=path, EARSHOT_BIN=.build/release)
set -euo pipefail
source "$(dirname "$0")/daemon-lib.sh"
TRAILING=${TRAILING:-0.6}

speech "$WORK/talk.wav" 1.5 "turn on the lights" "what time is it" "open the terminal" "play some music" \
  "set a timer for ten minutes" "call my sister" "stop"
start_daemon --trailing-silence "$TRAILING"
echo "idle daemon: RSS $(rss_mb "$DAEMON_PID") MB"
stamped "$WORK/events" "$EARSHOT" stream --socket "$SOCK" --json --realtime "$WORK/talk.wav"
echo "after one stream: RSS $(rss_mb "$DAEMON_PID") MB, peak $(hwm_mb "$DAEMON_PID") MB"
machine
python3 - "$WORK/events" "$TRAILING" <<'PY'
import json, math, sys
trailing = float(sys.argv[2])
t0 = None; first_partial = {}; finals = []; endpoints = {}
for line in open(sys.argv[1]):
    stamp, text = line.split(" ", 1)
    t = float(stamp); e = json.loads(text)
    if e["type"] == "started": t0 = t
    elif e["type"] == "partial": first_partial.setdefault(e["utterance"], t)
    elif e["type"] == "final": finals.append((e, t))
    elif e["type"] == "endpoint": endpoints[e["utterance"]] = e
lat, comp, part = [], [], []
for e, t in finals:
    u = e["utterance"]; ep = endpoints.get(u)
    if ep is None or ep["reason"] != "silence": continue
    lat.append(t - (t0 + e["end"] + trailing))
    # `at` is on the session's 40 ms block grid; the 100 ms frame holding it was sent at its start.
    comp.append(t - (t0 + (math.ceil(ep["at"] / 0.1 - 1e-6) - 1) * 0.1))
    first = first_partial[u] - (t0 + e["start"]) if u in first_partial else None
    if first is not None: part.append(first)
    print(f"  utterance {u}: {e['text']!r:32} final {lat[-1]*1000:6.0f} ms (compute+transport {comp[-1]*1000:5.0f} ms), first partial {first*1000 if first is not None else float('nan'):6.0f} ms")
def stats(name, xs):
    xs = sorted(xs)
    if not xs: print(f"{name}: no data"); return
    print(f"{name}: min {xs[0]*1000:.0f} ms, median {xs[len(xs)//2]*1000:.0f} ms, max {xs[-1]*1000:.0f} ms over {len(xs)}")
stats("final latency after the trailing silence", lat)
stats("  of which compute and transport", comp)
stats("first partial after speech start", part)
PY
