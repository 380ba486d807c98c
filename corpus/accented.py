"""English read by festival's non-English diphone voices: more human voices for training.

Debian's English TTS voices give the corpus only two human speakers to train on (kal and slt); the
model fails on the held-out human voices (rms, awb, ked) while it reads new texts in the training voices
well. Festival's Italian, Czech, Finnish and Indian diphone voices are recordings of nine more people.
Here festival's English front end (kal's lexicon, phrasing, durations and intonation) turns the text into
English phones, each phone is replaced by the nearest phones of the voice's language (what a speaker of
that language might say), and the voice's own diphones speak the result: English with an accent, in a
human voice the corpus did not have.

A diphone voice has recordings only of the phone pairs its language uses. A missing pair would be
synthesised as silence, so each English phone has a list of substitutes in order of preference, and a
small search picks, for the whole utterance, the substitutes with the fewest missing pairs (then the
most preferred).
"""

import glob
import os

# voice: (phone map, f0 factor applied to kal's intonation, Debian package)
VOICES = {
    "pc_diphone": ("italian", 1.0, "festvox-itapc16k"),
    "lp_diphone": ("italian", 1.7, "festvox-italp16k"),
    "czech_dita": ("czech", 1.7, "festvox-czech-dita"),
    "czech_krb": ("czech", 2.0, "festvox-czech-krb"),
    "czech_machac": ("czech", 1.0, "festvox-czech-machac"),
    "czech_ph": ("czech", 1.0, "festvox-czech-ph"),
    "suo_fi_lj_diphone": ("finnish", 1.7, "festvox-suopuhe-lj"),
    "hy_fi_mv_diphone": ("finnish", 1.0, "festvox-suopuhe-mv"),
    "hindi_NSK_diphone": ("hindi", 1.0, "festvox-hi-nsk festival-hi"),
}

# English (festival's radio phone set, as kal_diphone's front end produces it) to each language's
# phones. Each entry: substitutes in order of preference, "|"-separated; a substitute is one or two
# phones (space-separated: diphthongs and r-coloured vowels become two), or "" to drop the phone.
_COMMON = {"b": "b", "d": "d", "f": "f", "g": "g", "k": "k", "l": "l", "m": "m", "n": "n", "p": "p",
           "r": "r", "s": "s", "t": "t", "v": "v", "el": "l", "em": "m", "en": "n", "nx": "n"}
MAPS = {
    "italian": dict(_COMMON, pau="#", aa="a|a1", ae="E|e|a", ah="a|a1", ao="O|o", ax="e|a", axr="e r|e",
                    er="e r|e", eh="E|e", ih="i|i1|e", iy="i|i1", uh="u|u1|o", uw="u|u1", aw="a u|a o|a",
                    ay="a i|a j|a", ey="e i|e j|e", ow="o u|o|O", oy="O i|o i|O", ch="tS|t S|S",
                    dh="d|dz|z", dx="t|d", hh="", hv="", jh="dZ|Z|z", ng="n|ng", sh="S|s", th="t|ts|s",
                    w="w|u|v", y="j|i", z="z|s", zh="Z|S|z", d="d|t", t="t|d", s="s|z", g="g|k",
                    l="l|r", r="r|l"),
    "czech": dict(_COMMON, pau="#", aa="a:|a", ae="e|e:|a", ah="a|a:", ao="o:|o", ax="e|a", axr="e r|e",
                  er="e r|e", eh="e|e:", ih="i|i:|e|i j", iy="i:|i|i: j", uh="u|u:|o", uw="u:|u|u: v",
                  aw="a u|a u:|a", ay="a j|a i|a", ey="e j|e i|e", ow="o u|o|o:", oy="o j|o i|o",
                  ch="c~|t s~|s~", dh="d|z|t", dx="d|t", hh="h|ch|", hv="h|", jh="dz~|z~|d", ng="n|n g",
                  sh="s~|s", th="t|s|f", w="u|v", y="j|i", z="z|s", zh="z~|s~|z", b="b|p", d="d|t",
                  g="g|k", v="v|f", t="t|d", k="k|g", p="p|b", s="s|z", l="l|r", r="r|l", m="m|n",
                  n="n|m", f="f|v"),
    "finnish": dict(_COMMON, pau="#", aa="a:|a", ae="e|a|e:", ah="a|a:", ao="o:|o", ax="e|a", axr="e r|e",
                    er="e r|e", eh="e|e:", ih="i|i:|e", iy="i:|i", uh="u|u:|o", uw="u:|u", aw="a u|a",
                    ay="a i|a", ey="e i|e", ow="o u|o|o:", oy="o i|o", ch="t S|t s|s", dh="d|t",
                    dx="d|t", hh="h|", hv="h|", jh="d j|d|j", ng="N|n|n g", sh="S|s", th="T|t|s",
                    w="w|v|u", y="j|i", z="s|", zh="S|s", b="b|p", d="d|t", g="g|k", t="t|d",
                    k="k|g", p="p|b", s="s|", l="l|r", r="r|l", m="m|n", n="n|m", f="f|v|", v="v|f|"),
    "hindi": dict(_COMMON, pau="pau", aa="aa|a", ae="eh|ay|aa", ah="a|aa", ao="aw|oo", ax="a|@", axr="a r|a",
                  er="a r|a", eh="eh|ee", ih="ih|iy", iy="iy|ih", uh="uh|uw", uw="uw|uh", aw="aa uh|aw|aa",
                  ay="aa ih|ay|aa", ey="ee|eh", ow="oo|aw", oy="aw ih|aw", ch="ch|sh", d="D|d",
                  dh="dh|d|D", dx="D|d", hh="h|", hv="h|", jh="j|zh", ng="n g|n", sh="sh|s", t="T|t",
                  th="th|t|T", w="v|w|uh", y="y|ih", z="s|j", zh="zh|sh", b="b|p", g="g|k", v="v|w",
                  k="k|g", p="p|b", s="s|sh", l="l|r", r="r|l", m="m|n", n="n|m", f="f|p"),
}
PAUSE = {"italian": "#", "czech": "#", "finnish": "#", "hindi": "pau"}

MISSING_COST = 100  # a pair the voice lacks (synthesised as silence) outweighs any preference
RANK_COST = 1       # each step down a phone's list of substitutes


def voice_dir(voice):
    hits = glob.glob(f"/usr/share/festival/voices/*/{voice}")
    return hits[0] if hits else None


def diphones(voice):
    """The phone pairs ('a-b') voice has recordings of, from its group file's index."""
    folder = voice_dir(voice)
    if folder is None:
        raise SystemExit(f"festival voice {voice} is not installed: run scripts/setup.sh "
                         f"(Debian package {VOICES[voice][2]})")
    groups = glob.glob(os.path.join(folder, "group", "*.group"))
    if not groups:
        raise SystemExit(f"festival voice {voice} has no group file in {folder}/group")
    pairs = set()
    with open(groups[0], "rb") as fh:
        count = None
        for raw in fh:
            line = raw.decode("latin-1").strip()
            if line.startswith("NumEntries"):
                count = int(line.split()[1])
            elif line == "EST_Header_End":
                break
        if count is None:
            raise SystemExit(f"{groups[0]}: no NumEntries in the header; not a festival diphone index")
        for _ in range(count):
            pairs.add(fh.readline().decode("latin-1").split()[0])
    return pairs


def choose(english, lang, have):
    """For each English phone of an utterance, the list of voice phones to say instead (empty: drop it),
    minimising missing pairs, then preference ranks, over the whole utterance (dynamic programming on the
    last phone said)."""
    table = MAPS[lang]
    # best[last phone] = (cost, choices so far)
    best = {None: (0, [])}
    for phone in english:
        options = table.get(phone)
        if options is None:
            raise ValueError(f"no {lang} substitute for the English phone '{phone}'")
        subs = [o.split() for o in options.split("|")]
        nxt = {}
        for last, (cost, path) in best.items():
            for rank, sub in enumerate(subs):
                c = cost + rank * RANK_COST
                prev = last
                for p in sub:
                    if prev is not None and f"{prev}-{p}" not in have:
                        c += MISSING_COST
                    prev = p
                if prev not in nxt or c < nxt[prev][0]:
                    nxt[prev] = (c, path + [sub])
        best = nxt
    cost, path = min(best.values(), key=lambda cp: cp[0])
    return path, cost // MISSING_COST


def scheme_list(path):
    """The choices as a Scheme list of lists of strings: (("a") () ("e" "i") ...)."""
    return "(" + " ".join("(" + " ".join(f'"{p}"' for p in sub) + ")" for sub in path) + ")"


# Scheme for one long-lived festival: xl-front runs kal's English front end up to the F0 targets and
# writes the segment names, one per line; xl-back, given one list of substitutes per segment, renames,
# splits (halving the duration) or drops the segments, scales the F0 targets and synthesises with the
# voice selected in between.
PRELUDE = """
(define (xl-front text stretch segfile)
  (voice_kal_diphone)
  (Parameter.set 'Duration_Stretch stretch)
  (set! xl-utt (eval (list 'Utterance 'Text text)))
  (Initialize xl-utt) (Text xl-utt) (Token_POS xl-utt) (Token xl-utt) (POS xl-utt) (Phrasify xl-utt)
  (Word xl-utt) (Pauses xl-utt) (Intonation xl-utt) (PostLex xl-utt) (Duration xl-utt)
  (Int_Targets xl-utt)
  (set! xl-fd (fopen segfile "w"))
  (mapcar (lambda (s) (format xl-fd "%s\\n" (item.name s))) (utt.relation.items xl-utt 'Segment))
  (fclose xl-fd))
(define (xl-sub s m)
  (cond
   ((null m) (item.delete s))
   ((null (cdr m)) (item.set_name s (car m)))
   (t (let ((start (item.feat s 'segment_start)) (end (item.feat s 'end)))
        (item.set_name s (car m))
        (item.set_feat s 'end (/ (+ start end) 2))
        (item.insert s (list (car (cdr m)) (list (list 'end end))) 'after)))))
(define (xl-subs segs subs)
  (if segs (begin (xl-sub (car segs) (car subs)) (xl-subs (cdr segs) (cdr subs)))))
(define (xl-back subs f0scale wav)
  (xl-subs (utt.relation.items xl-utt 'Segment) subs)
  (mapcar (lambda (tg) (item.set_feat tg 'f0 (* f0scale (item.feat tg 'f0))))
          (utt.relation.items xl-utt 'Target))
  (Wave_Synth xl-utt)
  (utt.save.wave xl-utt wav 'riff))
"""
