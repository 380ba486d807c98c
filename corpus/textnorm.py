"""Text normalisation for the synthetic corpus: everything becomes lowercase a-z, space and apostrophe,
with numbers spelled out, so the label is exactly what the text-to-speech engine is asked to say."""

import re
import unicodedata

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
        "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]
ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                     "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]


def _below_thousand(n, british_and):
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [ONES[hundreds], "hundred"]
        if rest and british_and:
            words.append("and")
    if rest:
        if rest < 20:
            words.append(ONES[rest])
        else:
            tens, ones = divmod(rest, 10)
            words.append(TENS[tens] if not ones else TENS[tens] + " " + ONES[ones])
    return " ".join(words)


def number_to_words(n, british_and=True):
    """Cardinal number in words: 412 -> 'four hundred and twelve' (or without 'and')."""
    if n < 0:
        return "minus " + number_to_words(-n, british_and)
    if n < 20:
        return ONES[n]
    parts = []
    for value, name in SCALES:
        if n >= value:
            count, n = divmod(n, value)
            parts.append(number_to_words(count, british_and) + " " + name)
    if n:
        if parts and n < 100 and british_and:
            parts.append("and")
        parts.append(_below_thousand(n, british_and))
    return " ".join(parts)


def ordinal_words(n):
    """Ordinal in words: 21 -> 'twenty first'."""
    words = number_to_words(n, british_and=False).split(" ")
    last = words[-1]
    if last in ORDINAL_IRREGULAR:
        last = ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    words[-1] = last
    return " ".join(words)


def year_words(y):
    """A year as people say it: 1984 -> 'nineteen eighty four', 2005 -> 'two thousand and five'."""
    if 2000 <= y <= 2009:
        return "two thousand" + ("" if y == 2000 else " and " + ONES[y - 2000])
    if 1100 <= y <= 2099:
        hi, lo = divmod(y, 100)
        if lo == 0:
            return number_to_words(hi) + " hundred"
        if lo < 10:
            return number_to_words(hi) + " oh " + ONES[lo]
        return number_to_words(hi) + " " + number_to_words(lo)
    return number_to_words(y)


def digits_words(s):
    """Digit by digit: '907' -> 'nine zero seven'."""
    return " ".join(ONES[int(c)] for c in s)


_ORD_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_YEAR_RE = re.compile(r"\b(1[1-9]\d\d|20\d\d)s?\b")
_NUM_RE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_SYMBOLS = [("%", " percent "), ("&", " and "), ("+", " plus "), ("=", " equals "), ("@", " at ")]
# Abbreviations a text-to-speech engine expands differently from their letters: a sentence containing
# one is dropped rather than labelled with a word the engine did not say.
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "ie", "eg", "prof", "inc",
                  "ltd", "co", "corp", "gov", "gen", "lt", "col", "sgt", "capt", "rev", "hon", "ft",
                  "mt", "no", "vol", "pp", "fig", "approx", "dept", "est", "min", "max", "sec", "hr",
                  "oz", "lb", "lbs", "cm", "mm", "km", "kg", "mg", "ml", "ibid", "op", "cit"}
_ROMAN_RE = re.compile(r"^(?=[mdclxvi]{2,}$)m*(c[md]|d?c{0,3})(x[cl]|l?x{0,3})(i[xv]|v?i{0,3})$")
_ALLOWED_RE = re.compile(r"^[a-z' ]+$")


def _expand_number(match):
    text = match.group(0).replace(",", "")
    if "." in text:
        whole, frac = text.split(".")
        return " " + number_to_words(int(whole)) + " point " + digits_words(frac) + " "
    if len(text) > 1 and text.startswith("0"):
        return " " + digits_words(text) + " "
    if len(text) > 12:
        return " " + digits_words(text) + " "
    return " " + number_to_words(int(text)) + " "


def normalise(text):
    """Returns the sentence as lowercase words (a-z and apostrophes) or None when it cannot be
    normalised faithfully (abbreviations, roman numerals, symbols with no single reading, too few words)."""
    text = unicodedata.normalize("NFKD", text)
    # Typographic apostrophes first: the ASCII filter would drop them ("don\u2019t" -> "dont").
    text = text.replace("\u2019", "'").replace("`", "'")
    text = text.encode("ascii", "ignore").decode("ascii")
    lowered = text.lower()
    # An abbreviation with its full stop is the case engines expand ("Dr." -> "doctor").
    for token in re.findall(r"[a-z]+(?=\.)", lowered):
        if token in _ABBREVIATIONS:
            return None
    for symbol, word in _SYMBOLS:
        lowered = lowered.replace(symbol, word)
    lowered = _ORD_RE.sub(lambda m: " " + ordinal_words(int(m.group(1))) + " ", lowered)
    lowered = _YEAR_RE.sub(lambda m: " " + year_words(int(m.group(1))) + ("s" if m.group(0).endswith("s") else "") + " ", lowered)
    lowered = lowered.replace("twentys", "twenties").replace("tys ", "ties ")
    lowered = _NUM_RE.sub(_expand_number, lowered)
    if re.search(r"[$#*/\\|<>\[\]{}~^_]", lowered):
        return None
    # Hyphens and dashes join words; other punctuation ends or separates them.
    lowered = re.sub(r"[-\u2013\u2014]+", " ", lowered)
    lowered = re.sub(r"[.,;:!?\"()]", " ", lowered)
    words = []
    for word in lowered.split():
        word = word.strip("'")
        if not word:
            continue
        if not _ALLOWED_RE.match(word):
            return None
        if word in _ABBREVIATIONS or _ROMAN_RE.match(word):
            return None
        words.append(word)
    if not words:
        return None
    return " ".join(words)


_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]*[A-Z0-9])")


def split_sentences(paragraph):
    """Splits running text into sentences at . ! ? followed by a capital or digit."""
    paragraph = " ".join(paragraph.split())
    return [s.strip() for s in _SENT_SPLIT.split(paragraph) if s.strip()]
