#!/usr/bin/env python3
"""Writes models/rehearsal-en.tsv: the general sentences `earshot adapt --rehearse` synthesises with
espeak-ng and mixes into adaptation, so a narrow domain does not make the model forget general speech
when the user has no corpus (docs/adaptation.md).

Each line: espeak-ng voice, words per minute, text. The texts are a seeded sample of the training split
of the corpus this recipe makes (corpus/synthesize.py; sources and licences in corpus/README.md),
stratified by source; the voices are espeak-ng training voices, so no held-out test voice is rehearsed.

    corpus/make_rehearsal.py --corpus ~/.cache/earshot/corpus --out models/rehearsal-en.tsv [--count 400]
"""
import argparse
import collections
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import voices  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.expanduser("~/.cache/earshot/corpus"))
    ap.add_argument("--out", default="models/rehearsal-en.tsv")
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    by_source = collections.defaultdict(list)
    with open(os.path.join(a.corpus, "voices.tsv"), encoding="utf-8") as f:
        next(f)
        meta = {}
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[1] == "train":
                meta[p[0]] = p[5]
    with open(os.path.join(a.corpus, "train.tsv"), encoding="utf-8") as f:
        for line in f:
            path, text = line.rstrip("\n").split("\t", 1)
            if path in meta and 3 <= len(text.split()) <= 16:
                by_source[meta[path]].append(text)
    rng = random.Random(a.seed)
    total = sum(len(v) for v in by_source.values())
    texts = []
    for source in sorted(by_source):
        pool = sorted(set(by_source[source]))
        texts += rng.sample(pool, min(len(pool), round(a.count * len(by_source[source]) / total)))
    rng.shuffle(texts)
    espeak = voices.voices_for("train")["espeak"]
    lines = [f"{rng.choice(espeak)}\t{rng.randint(140, 190)}\t{t}\n" for t in texts[:a.count]]
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("# earshot adapt --rehearse: espeak-ng voice, words per minute, text (corpus/make_rehearsal.py)\n")
        f.writelines(lines)
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(lines)} sentences")


if __name__ == "__main__":
    main()
