#!/usr/bin/env bash
# Latency of earshotd's results for live speech: a client streams speech in real time
# (`earshot stream --realtime --json`), and every event is stamped as it arrives.
#
#   final latency   = arrival of the final - (stream start + speech end + trailing_silence)
#                     i.e. what a user waits after the endpointing rule could first be satisfied (the
#                     trailing silence itself is excluded: it is a setting, not a delay);
#   of which compute = arrival - sending of the 100 ms frame that decided the endpoint
#                     (the rest is the model's look-ahead, where it places the word's end, and the
#                     100 ms framing);
#   first partial   = arrival of an utterance's first partial - (stream start + its speech start).
#
# Speech start and end are the audio's own, not the model's word times (a model that places a word's end
# late would otherwise hide that delay): each phrase spans the 10 ms frames within 40 dB of the file's
# loudest, the rule of bench/cut-to-speech.py, and the daemon's utterance is matched to the phrase it
# overlaps most. The error of the start and end the final reports is printed beside them (the model's
# word-timing calibration, models/README.md, is what keeps it small).
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
python3 - "$WORK/events" "$TRAILING" "$WORK/talk.wav" <<'PY'
import array, json, math, sys, wave
trailing = float(sys.argv[2])

def phrases(path, range_db=40.0, min_gap=0.5):
    # (start, end) in seconds of each stretch of speech: 10 ms frames within range_db of the loudest,
    # stretches closer than min_gap joined (the phrases are 1.5 s apart; pauses within one are shorter).
    with wave.open(path) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, "talk.wav: expected 16-bit mono"
        rate = w.getframerate()
        x = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        x.byteswap()
    hop = rate // 100
    energy = [sum(v * v for v in x[i:i + hop]) / hop for i in range(0, len(x) - hop + 1, hop)]
    threshold = max(energy) * 10 ** (-range_db / 10)
    spans = []
    for k, e in enumerate(energy):
        if e < threshold:
            continue
        if spans and k * 0.01 - spans[-1][1] < min_gap:
            spans[-1][1] = (k + 1) * 0.01
        else:
            spans.append([k * 0.01, (k + 1) * 0.01])
    return spans

truth = phrases(sys.argv[3])
def true_span(start, end):
    overlap = lambda s: min(end, s[1]) - max(start, s[0])
    best = max(truth, key=overlap)
    return best if overlap(best) > 0 else None
t0 = None; first_partial = {}; finals = []; endpoints = {}
for line in open(sys.argv[1]):
    stamp, text = line.split(" ", 1)
    t = float(stamp); e = json.loads(text)
    if e["type"] == "started": t0 = t
    elif e["type"] == "partial": first_partial.setdefault(e["utterance"], t)
    elif e["type"] == "final": finals.append((e, t))
    elif e["type"] == "endpoint": endpoints[e["utterance"]] = e
lat, comp, part, ends = [], [], [], []
for e, t in finals:
    u = e["utterance"]; ep = endpoints.get(u)
    if ep is None or ep["reason"] != "silence": continue
    span = true_span(e["start"], e["end"])
    if span is None:
        print(f"  utterance {u}: {e['text']!r:32} overlaps no speech in the audio ({e['start']:.2f}-{e['end']:.2f} s); not counted")
        continue
    lat.append(t - (t0 + span[1] + trailing))
    ends.append(e["end"] - span[1])
    # `at` is on the session's 40 ms block grid; the 100 ms frame holding it was sent at its start.
    comp.append(t - (t0 + (math.ceil(ep["at"] / 0.1 - 1e-6) - 1) * 0.1))
    first = first_partial[u] - (t0 + span[0]) if u in first_partial else None
    if first is not None: part.append(first)
    print(f"  utterance {u}: {e['text']!r:32} final {lat[-1]*1000:6.0f} ms (compute+transport {comp[-1]*1000:5.0f} ms), first partial {first*1000 if first is not None else float('nan'):6.0f} ms; reported start {(e['start'] - span[0])*1000:+5.0f} ms, end {(e['end'] - span[1])*1000:+5.0f} ms")
def stats(name, xs):
    xs = sorted(xs)
    if not xs: print(f"{name}: no data"); return
    print(f"{name}: min {xs[0]*1000:.0f} ms, median {xs[len(xs)//2]*1000:.0f} ms, max {xs[-1]*1000:.0f} ms over {len(xs)}")
stats("final latency after the trailing silence", lat)
stats("  of which compute and transport", comp)
stats("first partial after speech start", part)
stats("reported speech end minus the audio's", ends)
PY
