"""The text sources of the corpus, each read offline from a Debian package or generated here, and the
split of every source's sentences into disjoint train / valid / test pools."""

import glob
import hashlib
import os
import random
import re

from textnorm import normalise, split_sentences, number_to_words, ordinal_words, year_words, \
    digits_words, ONES, MONTHS

LM_PATH = "/usr/share/pocketsphinx/model/en-us/en-us.lm.bin"
CMUDICT_PATH = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict"
FORTUNE_DIR = "/usr/share/games/fortunes"
LICENSE_DIR = "/usr/share/common-licenses"

MAX_WORDS = 24
OCLOCK = "o'clock"
MAX_CHARS = 150


def load_cmudict_words(path=CMUDICT_PATH):
    """The words of CMUdict (variants like read(2) folded): text whose every word is here is text the
    engines pronounce as words rather than spelling it out."""
    # A missing dictionary must stop the run: an empty word set would let every word through, and the
    # corpus would change without a word.
    words = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                head = line.split(" ", 1)[0]
                words.add(re.sub(r"\(\d+\)$", "", head))
    except OSError as e:
        raise SystemExit(f"texts: cannot read CMUdict at {path}: {e.strerror} (apt-get install pocketsphinx-en-us)")
    if not words:
        raise SystemExit(f"texts: CMUdict at {path} has no words")
    return words


def _keep(sentence, vocab, min_words=3):
    if sentence is None:
        return False
    words = sentence.split()
    if not (min_words <= len(words) <= MAX_WORDS) or len(sentence) > MAX_CHARS:
        return False
    return all(w in vocab for w in words) if vocab else True


# -- (a) the Pocketsphinx trigram -----------------------------------------------------------------------

def lm_sentences(count, seed, vocab, log=print):
    """`count` sentences of 4-16 words sampled from Pocketsphinx's general English trigram."""
    from lm_sampler import TrigramLM
    if not os.path.exists(LM_PATH):
        raise FileNotFoundError(f"{LM_PATH} is missing: install pocketsphinx-en-us")
    lm = TrigramLM(LM_PATH)
    word_re = re.compile(r"^[a-z]+('[a-z]+)?$")

    def accept(word):
        return bool(word_re.match(word)) and (not vocab or word in vocab)

    rng = random.Random(f"{seed}-lm")
    out, seen = [], set()
    attempts = 0
    while len(out) < count and attempts < count * 5:
        attempts += 1
        words = lm.sample_sentence(rng, accept)
        if not words:
            continue
        sentence = " ".join(words)
        if sentence not in seen and len(sentence) <= MAX_CHARS:
            seen.add(sentence)
            out.append(sentence)
            if len(out) % 5000 == 0:
                log(f"  lm: {len(out)}/{count} sentences")
    return out


# -- (b) fortunes -----------------------------------------------------------------------------------

def fortune_sentences(vocab):
    """Sentences of the fortune cookie files (Debian packages fortunes, fortunes-min)."""
    out = []
    files = sorted(f for f in glob.glob(os.path.join(FORTUNE_DIR, "*"))
                   if os.path.isfile(f) and "." not in os.path.basename(f))
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for cookie in text.split("\n%\n"):
            lines = []
            for line in cookie.split("\n"):
                stripped = line.strip()
                # Attribution lines, quoted dialogue speakers and ASCII art carry no sentences.
                if stripped.startswith("--") or stripped.startswith("-") and len(stripped) < 60 and lines and not stripped[1:2].isalpha():
                    break
                if re.match(r"^[A-Z]:\s", stripped):
                    stripped = stripped[3:]
                lines.append(stripped)
            for sentence in split_sentences(" ".join(lines)):
                norm = normalise(sentence)
                if _keep(norm, vocab):
                    out.append(norm)
    return out


# -- (c) documentation text: Debian's common licences -----------------------------------------------

def license_sentences(vocab):
    """Sentences of the licence texts in /usr/share/common-licenses (package base-files)."""
    out = []
    for path in sorted(glob.glob(os.path.join(LICENSE_DIR, "*"))):
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for paragraph in re.split(r"\n\s*\n", text):
            for sentence in split_sentences(paragraph):
                # Long legal sentences are cut at clause boundaries to fit a 15 s utterance.
                for clause in re.split(r";|:\s", sentence):
                    norm = normalise(clause)
                    if _keep(norm, vocab, min_words=4):
                        out.append(norm)
    return out


# -- (d) generated numbers, digits, dates, times and commands ----------------------------------------

def _digit_word(rng, d):
    return "oh" if d == 0 and rng.random() < 0.25 else ONES[d]


def number_sentences(count, seed):
    """Spoken numbers of every kind: isolated digits, digit strings, cardinals, ordinals, years, dates,
    times, money, phone numbers."""
    rng = random.Random(f"{seed}-numbers")
    out = [ONES[d] for d in range(10)] + ["oh"]
    weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    frames = ["my pin is {}", "the code is {}", "call {}", "dial {}", "extension {}", "room {}",
              "flight {}", "the number is {}", "enter {}", "{}", "{}", "{}", "account {}", "press {}"]
    while len(out) < count:
        kind = rng.random()
        if kind < 0.30:  # digit sequences, the most common request for a recogniser
            n = rng.choice([1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11])
            digits = " ".join(_digit_word(rng, rng.randrange(10)) for _ in range(n))
            out.append(rng.choice(frames).format(digits) if rng.random() < 0.3 else digits)
        elif kind < 0.45:
            n = rng.choice([rng.randrange(100), rng.randrange(1000), rng.randrange(10000),
                            rng.randrange(1000000), rng.randrange(10 ** 9)])
            out.append(number_to_words(n, british_and=rng.random() < 0.6))
        elif kind < 0.52:
            out.append(ordinal_words(rng.randrange(1, 120)))
        elif kind < 0.60:
            day, month = rng.randrange(1, 29), rng.choice(MONTHS)
            style = rng.randrange(4)
            if style == 0:
                out.append(f"the {ordinal_words(day)} of {month}")
            elif style == 1:
                out.append(f"{month} {ordinal_words(day)} {year_words(rng.randrange(1900, 2040))}")
            elif style == 2:
                out.append(f"{rng.choice(weekdays)} the {ordinal_words(day)} of {month}")
            else:
                out.append(f"on {month} {ordinal_words(day)}")
        elif kind < 0.70:
            h, m = rng.randrange(1, 13), rng.randrange(60)
            style = rng.randrange(6)
            if style == 0:
                minutes = ("oh " + ONES[m]) if 0 < m < 10 else number_to_words(m) if m else OCLOCK
                out.append(f"{number_to_words(h)} {minutes}")
            elif style == 1:
                out.append(f"{rng.choice(['quarter past', 'half past', 'quarter to', 'ten past', 'twenty to', 'five past'])} {number_to_words(h)}")
            elif style == 2:
                out.append(f"{number_to_words(h)} {number_to_words(m) if m >= 10 else 'oh ' + ONES[m]} {rng.choice(['a m', 'p m', 'in the morning', 'in the evening'])}")
            elif style == 3:
                minutes = number_to_words(m) if m >= 10 else OCLOCK
                out.append(f"set an alarm for {number_to_words(h)} {minutes}")
            elif style == 4:
                out.append(f"it is {number_to_words(m) if m else 'exactly'} minutes past {number_to_words(h)}")
            else:
                out.append(f"{number_to_words(rng.randrange(24))} hundred hours")
        elif kind < 0.78:
            dollars, cents = rng.randrange(1, 2000), rng.randrange(100)
            unit = rng.choice([("dollars", "cents"), ("pounds", "pence"), ("euros", "cents")])
            out.append(f"{number_to_words(dollars)} {unit[0]}" + (f" and {number_to_words(cents)} {unit[1]}" if cents else ""))
        elif kind < 0.86:
            groups = [rng.randrange(10 ** k) for k in (3, 3, 4)]
            out.append(" ".join(digits_words(f"{g:0{k}d}") for g, k in zip(groups, (3, 3, 4))))
        elif kind < 0.93:
            out.append(f"{year_words(rng.randrange(1700, 2100))}")
        else:
            a, b = rng.randrange(100), rng.randrange(1, 100)
            out.append(rng.choice([f"{number_to_words(a)} plus {number_to_words(b)}",
                                   f"{number_to_words(a)} times {number_to_words(b)}",
                                   f"what is {number_to_words(a)} minus {number_to_words(b)}",
                                   f"{number_to_words(a)} point {digits_words(str(b))}",
                                   f"{number_to_words(a)} percent",
                                   f"{number_to_words(b)} degrees"]))
    return out


_COMMANDS = {
    "verb_obj": ["open", "close", "start", "launch", "quit", "show", "hide", "restart", "minimise",
                 "maximise", "find", "search", "save", "print", "delete", "copy", "paste", "undo", "redo"],
    "obj": ["the terminal", "the browser", "my email", "the calendar", "the file manager", "the settings",
            "a new tab", "the window", "the document", "this file", "the music player", "the camera",
            "the calculator", "the downloads folder", "my notes", "the editor", "the last page", "the menu"],
    "device": ["the lights", "the radio", "the television", "the heating", "the fan", "the kettle",
               "the alarm", "the microphone", "the speaker", "the lamp", "the oven", "the air conditioning"],
    "room": ["in the kitchen", "in the living room", "in the bedroom", "in the hall", "upstairs",
             "downstairs", "in the office", "in the garage", "", "", ""],
    "level": ["volume", "brightness", "temperature", "speed", "bass", "contrast"],
    "direction": ["up", "down"],
    "person": ["mum", "dad", "john", "sarah", "the office", "my brother", "my sister", "alice", "bob",
               "the doctor", "grandma", "peter", "emma", "the plumber"],
    "media": ["some music", "the news", "the next song", "the previous track", "jazz", "classical music",
              "my playlist", "the radio", "a podcast", "something relaxing"],
    "place": ["london", "paris", "the station", "the airport", "home", "work", "the nearest pharmacy",
              "the city centre", "new york", "the beach"],
    "day": ["today", "tomorrow", "tonight", "this weekend", "on monday", "on friday", "next week"],
}
_COMMAND_TEMPLATES = [
    "{verb_obj} {obj}", "please {verb_obj} {obj}", "can you {verb_obj} {obj}",
    "turn on {device} {room}", "turn off {device} {room}", "switch on {device} {room}",
    "switch off {device} {room}", "turn the {level} {direction}", "turn {level} {direction} please",
    "set the {level} to {num}", "call {person}", "send a message to {person}", "ring {person} {day}",
    "play {media}", "stop the music", "pause", "resume", "skip this song", "next", "go back", "cancel",
    "yes", "no", "okay", "stop", "help", "what time is it", "what's the weather like {day}",
    "will it rain {day}", "how do i get to {place}", "navigate to {place}",
    "remind me to call {person} {day}", "set a timer for {num} minutes", "wake me up at {num}",
    "what's on my calendar {day}", "add milk to the shopping list", "read my messages",
    "scroll down", "scroll up", "zoom in", "zoom out", "take a screenshot", "lock the screen",
    "mute the microphone", "unmute", "select all", "go to the top of the page", "open a new window",
    "close all windows", "show me the weather in {place}", "book a table for {num} {day}",
]


def command_sentences(count, seed):
    """Short spoken commands built from templates."""
    rng = random.Random(f"{seed}-commands")
    out = []
    for _ in range(count):
        template = rng.choice(_COMMAND_TEMPLATES)
        text = template
        for slot in re.findall(r"{(\w+)}", template):
            value = number_to_words(rng.randrange(1, 60)) if slot == "num" else rng.choice(_COMMANDS[slot])
            text = text.replace("{" + slot + "}", value, 1)
        out.append(" ".join(text.split()))
    return out


# -- split into disjoint pools ------------------------------------------------------------------------

def split_of(sentence, seed, held_out_share):
    """'valid', 'test' or 'train', fixed by a hash of the sentence so that a sentence lands in one pool
    whatever else the pools contain."""
    h = int(hashlib.sha1(f"{seed}|{sentence}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < held_out_share:
        return "valid"
    if h < 2 * held_out_share:
        return "test"
    return "train"


def build_pools(seed, small, log=print):
    """{source: {split: [sentences]}} with each sentence in exactly one split and duplicates removed.
    Sentences one word long (isolated digits, 'yes', 'stop') stay in train: no pool can hold them out."""
    vocab = load_cmudict_words()
    if small:
        sizes = {"lm": 150, "numbers": 300, "commands": 200}
    else:
        sizes = {"lm": 40000, "numbers": 40000, "commands": 8000}
    sources = {}
    log("text: sampling the pocketsphinx trigram")
    sources["lm"] = lm_sentences(sizes["lm"], seed, vocab, log)
    log("text: reading fortunes")
    sources["fortunes"] = fortune_sentences(vocab)
    log("text: reading common licences")
    sources["docs"] = license_sentences(vocab)
    log("text: generating numbers and commands")
    sources["numbers"] = number_sentences(sizes["numbers"], seed)
    sources["commands"] = command_sentences(sizes["commands"], seed)
    share = {"lm": 0.03, "fortunes": 0.04, "docs": 0.06, "numbers": 0.04, "commands": 0.08}
    pools = {}
    claimed = {}
    for source in ["numbers", "commands", "lm", "fortunes", "docs"]:
        pools[source] = {"train": [], "valid": [], "test": []}
        for sentence in dict.fromkeys(sources[source]):
            if sentence in claimed:
                continue
            split = "train" if len(sentence.split()) == 1 else split_of(sentence, seed, share[source])
            claimed[sentence] = split
            pools[source][split].append(sentence)
    return pools
