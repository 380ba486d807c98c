"""Reads Pocketsphinx's binary trigram (the 'Trie Language Model' format of en-us.lm.bin) and samples
word sequences from it with Katz backoff.

Why a reader of our own: Debian's `sphinx_lm_convert -i en-us.lm.bin -o x.arpa` aborts on this file
(assertion `raw_ngram_idx == base->n_counts[i - 1]` in ngram_model_trie_write_arpa, because the trie
holds fewer bigrams than its header counts), so no ARPA text can be had from the packaged tools
(scripts/pocketsphinx-lm.py writes one with this reader).
The layout read here follows sphinxbase's lm_trie.c / lm_trie_quant.c (little-endian):
  "Trie Language Model", uint8 order, uint32 counts[order], int32 quant type,
  float32 quantisation tables ((order-2) x (prob[65536], backoff[65536]) + prob[65536]),
  unigrams[counts[0] + 1] = {float32 prob, float32 backoff, uint32 first child},
  bigram level: bit-packed {word, backoff code 16, prob code 16, first child}, one per entry,
  trigram level: bit-packed {word, prob code 16},
  int32 length, NUL-separated word strings.
The trie is reversed: a unigram's children are the words *before* it, so the bigram entry (w, h1) under
unigram w holds P(w | h1) and the backoff of history "h1 w"; the trigram entry h2 under it holds
P(w | h2 h1). Log probabilities are in base 1.0001 (sphinxbase's default log base).
"""

import bisect
import math
import struct

HEADER = b"Trie Language Model"
LOG_BASE = 1.0001


def _required_bits(max_value):
    return max_value.bit_length()


class TrigramLM:
    """A forward-indexed trigram built from the reversed trie, for sampling sentences."""

    def __init__(self, path, select=None):
        """Reads the model at `path`. `select(words, unigram log probs)`, when given, returns a keep flag
        per word id: n-grams with a word not kept are skipped while decoding (ids stay those of the
        file), which makes reading a small sub-model cheap."""
        with open(path, "rb") as fh:
            data = fh.read()
        if not data.startswith(HEADER):
            raise ValueError(f"{path}: not a Pocketsphinx trie language model (header missing)")
        offset = len(HEADER)
        order = data[offset]
        offset += 1
        if order != 3:
            raise ValueError(f"{path}: expected a trigram model, found order {order}")
        counts = struct.unpack_from("<3I", data, offset)
        # What the header declares; the trie itself may hold fewer (en-us.lm.bin: 6 bigrams fewer).
        self.header_counts = counts
        offset += 12 + 4  # counts, then the unused quantisation-type word
        table_size = 65536 * 4
        tables = struct.unpack_from(f"<{3 * 65536}f", data, offset)
        offset += 3 * table_size
        self.bigram_prob_table = tables[0:65536]
        self.bigram_bo_table = tables[65536:131072]
        self.trigram_prob_table = tables[131072:196608]
        n_uni = counts[0]
        unigrams = list(struct.iter_unpack("<ffI", data[offset:offset + (n_uni + 1) * 12]))
        offset += (n_uni + 1) * 12
        word_bits = _required_bits(n_uni)
        next_bits = _required_bits(counts[2])
        mid_total = word_bits + 32 + next_bits
        mid_size = ((1 + counts[1]) * mid_total + 7) // 8 + 8
        long_total = word_bits + 16
        long_size = ((1 + counts[2]) * long_total + 7) // 8 + 8
        mid = data[offset:offset + mid_size]
        offset += mid_size
        longest = data[offset:offset + long_size]
        offset += long_size
        (str_len,) = struct.unpack_from("<i", data, offset)
        offset += 4
        self.words = [w.decode("utf-8", "replace") for w in data[offset:offset + str_len].split(b"\0")[:-1]]
        if len(self.words) != n_uni:
            raise ValueError(f"{path}: {len(self.words)} word strings for {n_uni} unigrams")
        self.index = {w: i for i, w in enumerate(self.words)}
        self.vocab = n_uni
        # Log values exactly as stored (base 1.0001), for writers that must not round-trip through pow.
        self.uni_log = [p for p, _, _ in unigrams[:-1]]
        self.uni_bo_log = [b for _, b, _ in unigrams[:-1]]
        self.uni_prob = [LOG_BASE ** p for p in self.uni_log]
        self.uni_bo = [LOG_BASE ** b for b in self.uni_bo_log]
        keep = select(self.words, self.uni_log) if select is not None else None
        self.kept = keep

        word_mask = (1 << word_bits) - 1
        next_mask = (1 << next_bits) - 1
        V = n_uni
        bigrams = []  # packed (h1 * V + w) << 32 | prob code << 16 | backoff code
        trigrams = []  # packed ((h2 * V + h1) * V + w) << 16 | prob code
        mid_from = mid.__getitem__
        for w in (range(n_uni) if keep is None else [i for i in range(n_uni) if keep[i]]):
            begin, end = unigrams[w][2], unigrams[w + 1][2]
            for j in range(begin, end):
                bit = j * mid_total
                raw = int.from_bytes(mid_from(slice(bit >> 3, (bit >> 3) + 8)), "little") >> (bit & 7)
                h1 = raw & word_mask
                if keep is not None and not keep[h1]:
                    continue
                quant = (raw >> word_bits) & 0xFFFFFFFF
                bigrams.append(((h1 * V + w) << 32) | quant)
                nbit = bit + word_bits + 32
                t_begin = (int.from_bytes(mid[nbit >> 3:(nbit >> 3) + 8], "little") >> (nbit & 7)) & next_mask
                nbit += mid_total
                t_end = (int.from_bytes(mid[nbit >> 3:(nbit >> 3) + 8], "little") >> (nbit & 7)) & next_mask
                base = h1 * V + w
                for k in range(t_begin, t_end):
                    tbit = k * long_total
                    traw = int.from_bytes(longest[tbit >> 3:(tbit >> 3) + 8], "little") >> (tbit & 7)
                    h2 = traw & word_mask
                    if keep is not None and not keep[h2]:
                        continue
                    code = (traw >> word_bits) & 0xFFFF
                    trigrams.append((((h2 * V) * V + base) << 16) | code)
        bigrams.sort()
        trigrams.sort()
        self._bigrams = bigrams
        self._trigrams = trigrams
        self._cache = {}

    # -- the stored n-grams, in ARPA (forward, sorted) order -----------------------------------------

    def bigram_entries(self):
        """Yields (h1, w, log prob, log backoff of "h1 w") for every stored bigram, sorted by (h1, w);
        logs in base 1.0001 exactly as dequantised."""
        V = self.vocab
        probs, bos = self.bigram_prob_table, self.bigram_bo_table
        for e in self._bigrams:
            h1, w = divmod(e >> 32, V)
            yield h1, w, probs[(e >> 16) & 0xFFFF], bos[e & 0xFFFF]

    def ngram_counts(self):
        """Numbers of unigrams, bigrams and trigrams decoded (kept ones only when `select` was given)."""
        unigrams = self.vocab if self.kept is None else sum(self.kept)
        return unigrams, len(self._bigrams), len(self._trigrams)

    def missing_trigram_prefixes(self):
        """(h2, h1) of every stored trigram 'h2 h1 w' whose prefix bigram 'h2 h1' is not stored (ARPA
        requires it; sphinxbase then backs off from h2 to the unigram h1)."""
        V = self.vocab
        bigram_keys = self._bigrams
        missing = []
        j = 0
        last = -1
        for e in self._trigrams:
            prefix = (e >> 16) // V
            if prefix == last:
                continue
            last = prefix
            # Both lists are sorted, so the bigram cursor only moves forward.
            while j < len(bigram_keys) and (bigram_keys[j] >> 32) < prefix:
                j += 1
            if j == len(bigram_keys) or (bigram_keys[j] >> 32) != prefix:
                missing.append(divmod(prefix, V))
        return missing

    def trigram_entries(self):
        """Yields (h2, h1, w, log prob) for every stored trigram, sorted by (h2, h1, w); base 1.0001."""
        V = self.vocab
        probs = self.trigram_prob_table
        for e in self._trigrams:
            rest, w = divmod(e >> 16, V)
            h2, h1 = divmod(rest, V)
            yield h2, h1, w, probs[e & 0xFFFF]

    # -- probabilities ------------------------------------------------------------------------------

    def _successors(self, history):
        """(words, cumulative probs, total mass, set of words) of the explicit n-grams after history."""
        cached = self._cache.get(history)
        if cached is not None:
            return cached
        V = self.vocab
        if len(history) == 1:
            (h1,) = history
            lo = bisect.bisect_left(self._bigrams, (h1 * V) << 32)
            hi = bisect.bisect_left(self._bigrams, ((h1 + 1) * V) << 32)
            entries = self._bigrams[lo:hi]
            words = [(e >> 32) - h1 * V for e in entries]
            probs = [LOG_BASE ** self.bigram_prob_table[(e >> 16) & 0xFFFF] for e in entries]
        else:
            h2, h1 = history
            key = h2 * V + h1
            lo = bisect.bisect_left(self._trigrams, (key * V) << 16)
            hi = bisect.bisect_left(self._trigrams, ((key + 1) * V) << 16)
            entries = self._trigrams[lo:hi]
            words = [(e >> 16) - key * V for e in entries]
            probs = [LOG_BASE ** self.trigram_prob_table[e & 0xFFFF] for e in entries]
        cumulative = []
        total = 0.0
        for p in probs:
            total += p
            cumulative.append(total)
        result = (words, cumulative, total, set(words))
        if len(self._cache) > 200000:
            self._cache.clear()
        self._cache[history] = result
        return result

    def bigram_backoff(self, h2, h1):
        """Backoff weight of history 'h2 h1' (1.0 when the bigram is absent)."""
        V = self.vocab
        i = bisect.bisect_left(self._bigrams, (h2 * V + h1) << 32)
        if i < len(self._bigrams) and (self._bigrams[i] >> 32) == h2 * V + h1:
            return LOG_BASE ** self.bigram_bo_table[self._bigrams[i] & 0xFFFF]
        return 1.0

    def has_bigram(self, h1, w):
        """Whether the bigram 'h1 w' is stored."""
        V = self.vocab
        i = bisect.bisect_left(self._bigrams, (h1 * V + w) << 32)
        return i < len(self._bigrams) and (self._bigrams[i] >> 32) == h1 * V + w

    def _unigram_cumulative(self):
        if not hasattr(self, "_uni_cum"):
            cum, total = [], 0.0
            for p in self.uni_prob:
                total += p
                cum.append(total)
            self._uni_cum = cum
        return self._uni_cum

    # -- sampling -----------------------------------------------------------------------------------

    def _sample_unigram(self, rng, exclude):
        cum = self._unigram_cumulative()
        for _ in range(1000):
            w = bisect.bisect_left(cum, rng.random() * cum[-1])
            w = min(w, self.vocab - 1)
            if w not in exclude:
                return w
        return w

    def _sample_level(self, rng, history, exclude):
        """Samples from P(. | history) with backoff, never returning a word in exclude (those had an
        explicit higher-order n-gram, so their mass was already offered)."""
        if not history:
            return self._sample_unigram(rng, exclude)
        words, cumulative, total, present = self._successors(history)
        if words and rng.random() < min(total, 1.0):
            for _ in range(100):
                i = bisect.bisect_left(cumulative, rng.random() * total)
                w = words[min(i, len(words) - 1)]
                if w not in exclude:
                    return w
        return self._sample_level(rng, history[1:], exclude | present)

    def sample_sentence(self, rng, accept_word, min_words=4, max_words=16, tries=50):
        """One sentence (list of words) from <s> to </s>, every word passing accept_word; None when
        no sentence of an acceptable length came out within `tries` attempts."""
        start = self.index["<s>"]
        end = self.index["</s>"]
        for _ in range(tries):
            history = (start,)
            out = []
            ok = True
            while True:
                for _ in range(30):
                    w = self._sample_level(rng, history, frozenset())
                    if w == end or (w != start and accept_word(self.words[w])):
                        break
                else:
                    ok = False
                    break
                if w == end:
                    break
                out.append(self.words[w])
                if len(out) > max_words:
                    ok = False
                    break
                history = (history[-1], w)
            if ok and min_words <= len(out) <= max_words:
                return out
        return None

    def log10_prob(self, sentence):
        """log10 P(sentence </s> | <s>) with backoff: a check that the reader decodes the model."""
        ids = [self.index["<s>"]] + [self.index[w] for w in sentence] + [self.index["</s>"]]
        total = 0.0
        for i in range(1, len(ids)):
            w = ids[i]
            hist = tuple(ids[max(0, i - 2):i])
            p = None
            bo = 1.0
            if len(hist) == 2:
                words, cum, _, present = self._successors(hist)
                if w in present:
                    j = words.index(w)
                    p = cum[j] - (cum[j - 1] if j else 0.0)
                else:
                    bo *= self.bigram_backoff(*hist)
                    hist = hist[1:]
            if p is None:
                words, cum, _, present = self._successors(hist)
                if w in present:
                    j = words.index(w)
                    p = bo * (cum[j] - (cum[j - 1] if j else 0.0))
                else:
                    p = bo * self.uni_bo[hist[0]] * self.uni_prob[w]
            total += math.log10(p)
        return total
