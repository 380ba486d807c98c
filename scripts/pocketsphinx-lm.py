#!/usr/bin/env python3
"""Converts Pocketsphinx's binary trigram (en-us.lm.bin, the sphinxbase "Trie Language Model" format)
into an ARPA file Earshot's `NGramLanguageModel(arpaFile:)` loads.

    scripts/pocketsphinx-lm.py /usr/share/pocketsphinx/model/en-us/en-us.lm.bin en-us.arpa
    scripts/pocketsphinx-lm.py IN.lm.bin small.arpa --vocab-limit 20000     # a pruned model

Why not `sphinx_lm_convert`: Debian's build aborts on this file (its header declares 2,051,547 bigrams,
the trie holds 2,051,541). The binary is read by corpus/lm_sampler.py's TrigramLM; this script only
selects, converts and writes.

What comes out:
  * log10 values: the stored values are float32 logs in base 1.0001 (quantised to 16-bit codes for
    bigrams and trigrams), written as value * log10(1.0001) with 6 decimals, i.e. exactly the
    dequantised model to within 5e-7 (0.012 units of the 1.0001 log base).
  * \\data\\ counts are the numbers of lines actually written, not the binary header's.
  * Words: Earshot's alphabet is a-z and the apostrophe. Words with other characters (hyphenated
    compounds such as "e-mail", spelled letters "a.", "b.'s") are dropped together with every n-gram
    that contains them; 279 of 72,547 words, 0.05% of the unigram mass.
  * <s>, </s> kept as stored; <unk> is added (en-us.lm.bin has none) with the unigram mass of all dropped
    words, so the unigram distribution still sums to one. Nothing is renormalised above unigrams: an
    n-gram query whose words are all kept gives exactly the original model's value (every n-gram and
    back-off weight it consults is kept), but after a history h the kept words' probabilities sum to
    1 - (mass the dropped words had after h), and the only stand-in for that mass is
    P(<unk> | h) = backoff(h) * P(<unk>).
  * --vocab-limit N keeps the N most probable words (plus <s>, </s>, <unk>) and the n-grams made only
    of them: the same exactness and the same deficiency, with a larger <unk>.
  * --vocabulary FILE keeps only the listed words (then --vocab-limit applies among them): a tiny model
    that is still exact for sentences over those words (a command set, or the test's sentences).
  * --order 2 drops the trigrams (and the bigram back-offs, which only trigram histories use).
  * A trigram whose two-word prefix is not stored as a bigram (none in en-us.lm.bin; ARPA requires the
    prefix) gets that bigram added with the back-off estimate sphinxbase itself would use,
    P(h1 | h2) = backoff(h2) * P(h1), and back-off 1, so no score changes.
For en-us.lm.bin: a 112 MB ARPA with 72,269 / 2,045,800 / 1,667,818 1/2/3-grams in about 10 s of
CPU (300 MB peak memory); Earshot loads it in about 2 s of CPU into 215 MB.
The output is written to a temporary file beside OUTPUT and renamed into place, so a reader never sees
half a file and an interrupted run leaves the old one.
"""

import argparse
import math
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus"))
from lm_sampler import LOG_BASE, TrigramLM  # noqa: E402

LOG10_PER_UNIT = math.log10(LOG_BASE)
WORD_RE = re.compile(r"[a-z']+")
SENTENCE_START, SENTENCE_END, UNKNOWN = "<s>", "</s>", "<unk>"
SPECIALS = (SENTENCE_START, SENTENCE_END, UNKNOWN)


def log10_text(units):
    return f"{units * LOG10_PER_UNIT:.6f}"


class WordSelection:
    """Which words the ARPA keeps: specials always, then words spelled with a-z and the apostrophe, only
    those listed in `allowed` when given, the `vocab_limit` most probable of them when given. Passed to
    TrigramLM as `select`, so n-grams over dropped words are never decoded. Counts what it dropped."""

    def __init__(self, vocab_limit=None, allowed=None):
        self.vocab_limit = vocab_limit
        self.allowed = allowed
        self.invalid = 0  # words with characters outside a-z'
        self.rare = 0  # valid words dropped: unlisted, or beyond the limit
        self.absent = []  # listed words the model does not have

    def __call__(self, words, uni_log):
        keep = [False] * len(words)
        ordinary = []
        for i, w in enumerate(words):
            if w in SPECIALS:
                keep[i] = True
            elif not WORD_RE.fullmatch(w):
                self.invalid += 1
            elif self.allowed is not None and w not in self.allowed:
                self.rare += 1
            else:
                ordinary.append(i)
        if self.vocab_limit is not None and len(ordinary) > self.vocab_limit:
            ordinary.sort(key=lambda i: (-uni_log[i], words[i]))  # ties by spelling: deterministic
            self.rare += len(ordinary) - self.vocab_limit
            ordinary = ordinary[:self.vocab_limit]
        for i in ordinary:
            keep[i] = True
        if self.allowed is not None:
            self.absent = sorted(self.allowed - set(words))
        return keep


def convert(lm, out_path, selection, order=3, unk_log10=None, source="?"):
    """Writes `lm` (read with `select=selection`) as ARPA; returns a dict of what was written."""
    words = lm.words
    keep = lm.kept
    if keep is None:
        raise ValueError("the model must be read with a word selection (TrigramLM(path, select=...))")
    dropped_mass = sum(LOG_BASE ** lm.uni_log[i] for i in range(lm.vocab)
                       if not keep[i] and words[i] not in SPECIALS)
    add_unk = UNKNOWN not in lm.index
    if not add_unk:  # the model's own <unk> is written as stored
        unk_log10 = lm.uni_log[lm.index[UNKNOWN]] * LOG10_PER_UNIT
    elif unk_log10 is None:
        unk_log10 = math.log10(dropped_mass) if dropped_mass > 0 else -99.0

    uni_count, bi_count, tri_count = lm.ngram_counts()
    missing = lm.missing_trigram_prefixes() if order >= 3 else []
    counts = [uni_count + (1 if add_unk else 0), bi_count + len(missing), tri_count][:order]

    # Each table has only 65,536 quantised values: format each once, not once per n-gram.
    bi_prob_text_of = {v: log10_text(v) for v in lm.bigram_prob_table}.__getitem__
    bi_bo_text_of = {v: log10_text(v) for v in lm.bigram_bo_table}.__getitem__
    tri_prob_text_of = {v: log10_text(v) for v in lm.trigram_prob_table}.__getitem__
    limit = selection.vocab_limit

    def write(fh):
        fh.write(f"Converted by scripts/pocketsphinx-lm.py from {source}\n"
                 f"(vocabulary limit {limit if limit is not None else 'none'}, "
                 f"word list {'given' if selection.allowed is not None else 'none'}, order {order}; "
                 f"{selection.invalid} words outside a-z' and {selection.rare} rarer or unlisted words "
                 f"dropped with their n-grams; <unk> {unk_log10:.6f})\n\n")
        fh.write("\\data\\\n")
        for n, c in enumerate(counts, 1):
            fh.write(f"ngram {n}={c}\n")
        fh.write("\n\\1-grams:\n")
        if add_unk:
            fh.write(f"{unk_log10:.6f}\t{UNKNOWN}" + ("\t0.000000\n" if order > 1 else "\n"))
        for i, w in enumerate(words):
            if keep[i]:
                if order > 1:
                    fh.write(f"{log10_text(lm.uni_log[i])}\t{w}\t{log10_text(lm.uni_bo_log[i])}\n")
                else:
                    fh.write(f"{log10_text(lm.uni_log[i])}\t{w}\n")
        if order >= 2:
            fh.write("\n\\2-grams:\n")
            lines = []
            for h1, w, p, b in lm.bigram_entries():
                if order > 2:
                    lines.append(f"{bi_prob_text_of(p)}\t{words[h1]} {words[w]}\t{bi_bo_text_of(b)}\n")
                else:
                    lines.append(f"{bi_prob_text_of(p)}\t{words[h1]} {words[w]}\n")
                if len(lines) >= 65536:
                    fh.writelines(lines)
                    lines.clear()
            for h2, h1 in missing:
                units = lm.uni_log[h1] + lm.uni_bo_log[h2]
                lines.append(f"{log10_text(units)}\t{words[h2]} {words[h1]}\t0.000000\n")
            fh.writelines(lines)
        if order >= 3:
            fh.write("\n\\3-grams:\n")
            lines = []
            for h2, h1, w, p in lm.trigram_entries():
                lines.append(f"{tri_prob_text_of(p)}\t{words[h2]} {words[h1]} {words[w]}\n")
                if len(lines) >= 65536:
                    fh.writelines(lines)
                    lines.clear()
            fh.writelines(lines)
        fh.write("\n\\end\\\n")

    write_atomically(out_path, write)
    return {"counts": counts, "header_counts": list(lm.header_counts), "dropped_unigram_mass": dropped_mass,
            "unk_log10": unk_log10, "filled_prefixes": len(missing)}


def write_atomically(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a Pocketsphinx binary trigram (.lm.bin) into an ARPA file for Earshot.")
    parser.add_argument("input", help="Pocketsphinx trie LM, e.g. /usr/share/pocketsphinx/model/en-us/en-us.lm.bin")
    parser.add_argument("output", help="ARPA file to write (atomically)")
    parser.add_argument("--vocab-limit", type=int, metavar="N",
                        help="keep only the N most probable words (plus <s> </s> <unk>) and n-grams over them")
    parser.add_argument("--vocabulary", metavar="FILE",
                        help="keep only the words listed in FILE (whitespace-separated; applied before "
                             "--vocab-limit), e.g. a command set or a test's sentences")
    parser.add_argument("--order", type=int, choices=(1, 2, 3), default=3,
                        help="highest n-gram order to write (default 3)")
    parser.add_argument("--unk-log10", type=float, metavar="P",
                        help="log10 unigram probability of the added <unk> (default: the unigram mass of "
                             "the dropped words; ignored when the model has its own <unk>)")
    args = parser.parse_args(argv)
    if args.vocab_limit is not None and args.vocab_limit < 1:
        parser.error("--vocab-limit must be at least 1")
    if args.unk_log10 is not None and args.unk_log10 > 0:
        parser.error("--unk-log10 must be a log probability (<= 0)")

    allowed = None
    if args.vocabulary is not None:
        try:
            with open(args.vocabulary, encoding="utf-8") as fh:
                allowed = set(fh.read().split())
        except OSError as error:
            print(f"pocketsphinx-lm: cannot read the word list {args.vocabulary}: {error}", file=sys.stderr)
            return 1

    selection = WordSelection(args.vocab_limit, allowed)
    start = time.monotonic()
    try:
        lm = TrigramLM(args.input, select=selection)
    except (OSError, ValueError, IndexError) as error:
        print(f"pocketsphinx-lm: cannot read {args.input}: {error}", file=sys.stderr)
        return 1
    loaded = time.monotonic()
    try:
        stats = convert(lm, args.output, selection, args.order, args.unk_log10, source=args.input)
    except OSError as error:
        print(f"pocketsphinx-lm: cannot write {args.output}: {error}", file=sys.stderr)
        return 1
    done = time.monotonic()
    if selection.absent:
        absent = selection.absent
        print(f"pocketsphinx-lm: warning: {len(absent)} listed words are not in the model: "
              f"{' '.join(absent[:20])}{' ...' if len(absent) > 20 else ''}", file=sys.stderr)
    counts = ", ".join(f"{n}-grams {c:,}" for n, c in enumerate(stats["counts"], 1))
    print(f"pocketsphinx-lm: wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB): {counts}; "
          f"dropped {selection.invalid} words outside a-z' and {selection.rare} rarer or unlisted words "
          f"(unigram mass {stats['dropped_unigram_mass']:.4g}, <unk> log10 {stats['unk_log10']:.3f}); "
          f"binary header declared {', '.join(f'{c:,}' for c in stats['header_counts'])}; "
          f"{stats['filled_prefixes']} missing trigram prefixes added; "
          f"read {loaded - start:.1f} s, wrote {done - loaded:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
