#!/usr/bin/env python3
"""How tightly character CTC must pack a corpus's transcripts into encoder frames, and whether a
model's errors follow that.

    bench/ctc-density.py --corpus ~/.cache/earshot/corpus --split valid [--frame-ms 40] [--hyps HYPS.tsv]

Density = CTC labels needed (characters, spaces included, plus one blank between each doubled letter)
per encoder frame of synthesised speech (the TTS output before padding, from the corpus's meta/SPLIT.jsonl).
Prints its median and upper percentiles; with --hyps (from `earshot eval --hyps`), the CER of the
hypotheses in density bands. Standard library only.
"""
import argparse
import json
import os
import sys


def labels_needed(text):
    return len(text) + sum(1 for a, b in zip(text, text[1:]) if a == b)


def edit_distance(ref, hyp):
    prev = list(range(len(hyp) + 1))
    for i, a in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, b in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a != b))
        prev = cur
    return prev[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus folder (with meta/SPLIT.jsonl)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--frame-ms", type=float, default=40.0, help="encoder frame (40: subsampling 4, 20: subsampling 2)")
    ap.add_argument("--hyps", help="two-column hypotheses from earshot eval --hyps, paths as in the manifest")
    a = ap.parse_args()
    meta_path = os.path.join(os.path.expanduser(a.corpus), "meta", a.split + ".jsonl")
    try:
        rows = [json.loads(line) for line in open(meta_path, encoding="utf-8")]
    except OSError as e:
        sys.exit(f"ctc-density: cannot read {meta_path}: {e.strerror}")
    frames_per_second = 1000.0 / a.frame_ms
    density = {r["path"]: labels_needed(r["text"]) / (r["tts_seconds"] * frames_per_second) for r in rows}
    values = sorted(density.values())

    def q(p):
        return values[int(p * (len(values) - 1))]

    print(f"{a.split}: {len(values)} utterances, {a.frame_ms:g} ms frames: labels per frame median {q(0.5):.2f}, "
          f"p90 {q(0.9):.2f}, p99 {q(0.99):.2f}; over 0.8: {sum(v > 0.8 for v in values) / len(values):.1%}, "
          f"over 1 (impossible): {sum(v > 1 for v in values) / len(values):.1%}")
    if not a.hyps:
        return
    hyps = {}
    for line in open(a.hyps, encoding="utf-8"):
        path, _, hyp = line.rstrip("\n").partition("\t")
        hyps[path] = hyp
    bands = {}
    for r in rows:
        if r["path"] not in hyps:
            continue
        band = min(int(density[r["path"]] * 10), 9)
        e, n, c = bands.get(band, (0, 0, 0))
        bands[band] = (e + edit_distance(r["text"], hyps[r["path"]]), n + len(r["text"]), c + 1)
    for band in sorted(bands):
        e, n, c = bands[band]
        print(f"  density {band / 10:.1f}-{(band + 1) / 10:.1f}: {c:4d} utterances, CER {100 * e / n:.1f} %")


if __name__ == "__main__":
    main()
