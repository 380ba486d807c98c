#!/usr/bin/env python3
"""Where a model's errors are on a synthetic corpus split, and how tightly character CTC must pack
the split's transcripts into encoder frames.

    bench/corpus-breakdown.py --corpus ~/.cache/earshot/corpus --split valid [--frame-ms 40]
    bench/corpus-breakdown.py --corpus ~/.cache/earshot/corpus --split valid --hyps H.tsv [--by voice]

Without --hyps: the CTC label density of the split: labels needed (characters, spaces included, plus
one blank between each doubled letter) per encoder frame of synthesised speech (the TTS output before
padding, from the corpus's meta/SPLIT.jsonl for the utterances SPLIT.tsv lists), its median and upper percentiles.
With --hyps (from `earshot eval MANIFEST --hyps H.tsv`): WER and CER of the hypotheses grouped --by
voice (engine and base voice), engine, source (text source), aug (clean, effects, noisy) or density
(bands of the label density above). Scoring is a plain Levenshtein alignment of the corpus's
normalised texts (the totals agree with `earshot eval`'s, which sclite checks). Standard library only.
"""
import argparse
import collections
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


def group_of(row, by, density):
    if by == "voice":
        return f"{row['engine']}:{row['voice'].split('+')[0]}"
    if by == "engine":
        return row["engine"]
    if by == "source":
        return row["source"]
    if by == "aug":
        aug = row.get("aug", {})
        return "clean" if aug.get("clean") else ("noisy" if any("snr" in k or "noise" in k for k in aug) else "effects")
    band = min(int(density * 10), 9)
    return f"density {band / 10:.1f}-{(band + 1) / 10:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus folder (with SPLIT.tsv and meta/SPLIT.jsonl)")
    ap.add_argument("--split", default="valid", help="a manifest of the corpus: a split, test-subset, valid-clean...")
    ap.add_argument("--frame-ms", type=float, default=40.0, help="encoder frame for the density (40: subsampling 4, 20: 2)")
    ap.add_argument("--hyps", help="two-column hypotheses from earshot eval --hyps (paths as in the manifest)")
    ap.add_argument("--by", choices=["voice", "engine", "source", "aug", "density"], default="density")
    a = ap.parse_args()
    corpus = os.path.expanduser(a.corpus)
    # The manifest's utterances with their records, by synthesize.py's own rule (which record of an
    # utterance counts, which are in the split).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus"))
    from synthesize import manifest_records
    try:
        rows = [r for r in manifest_records(corpus, a.split) if "tts_seconds" in r]
    except OSError as e:
        sys.exit(f"corpus-breakdown: cannot read {a.split}.tsv of {corpus}: {e}")
    if not rows:
        sys.exit(f"corpus-breakdown: none of {a.split}.tsv's utterances has a record in {corpus}/meta/ (not this corpus's manifest?)")
    per_second = 1000.0 / a.frame_ms
    density = {r["path"]: labels_needed(r["text"]) / (r["tts_seconds"] * per_second) for r in rows}
    values = sorted(density.values())

    def q(p):
        return values[int(p * (len(values) - 1))]

    print(f"{a.split}: {len(values)} utterances; CTC labels per {a.frame_ms:g} ms frame: median {q(0.5):.2f}, "
          f"p90 {q(0.9):.2f}, p99 {q(0.99):.2f}; over 0.8: {sum(v > 0.8 for v in values) / len(values):.1%}, "
          f"over 1 (impossible): {sum(v > 1 for v in values) / len(values):.1%}")
    if not a.hyps:
        return
    hyps = {}
    try:
        for line in open(a.hyps, encoding="utf-8"):
            path, _, hyp = line.rstrip("\n").partition("\t")
            hyps[path] = hyp
    except OSError as e:
        sys.exit(f"corpus-breakdown: cannot read {a.hyps}: {e.strerror}")
    groups = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
    missing = 0
    for r in rows:
        if r["path"] not in hyps:
            missing += 1
            continue
        g = groups[group_of(r, a.by, density[r["path"]])]
        hyp = hyps[r["path"]]
        g[0] += edit_distance(r["text"].split(), hyp.split())
        g[1] += len(r["text"].split())
        g[2] += edit_distance(r["text"], hyp)
        g[3] += len(r["text"])
        g[4] += 1
    if missing:
        print(f"  ({missing} utterances of the split have no hypothesis and are left out)")
    for name in sorted(groups):
        w, nw, c, nc, n = groups[name]
        print(f"  {name:32s} {n:5d} utterances  WER {100 * w / nw:5.1f} %  CER {100 * c / nc:5.1f} %")


if __name__ == "__main__":
    main()
