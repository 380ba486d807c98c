"""Tests of the corpus recipe (standard library only):
  python3 corpus/tests/test_corpus.py        (prints 'corpus: N passed, N failed')
  python3 -m unittest discover -s corpus/tests
The smoke test runs `synthesize.py --small` (about 15-30 s) and checks what it wrote."""

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import unittest
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.dirname(HERE)
sys.path.insert(0, CORPUS)

import accented  # noqa: E402
import synthesize  # noqa: E402
import textnorm  # noqa: E402
import texts  # noqa: E402
import voices  # noqa: E402

LABEL_RE = re.compile(r"^[a-z']+( [a-z']+)*$")


class NumberWords(unittest.TestCase):
    def test_cardinals_spell_out_as_people_say_them(self):
        cases = {0: "zero", 13: "thirteen", 40: "forty", 99: "ninety nine", 100: "one hundred",
                 412: "four hundred and twelve", 1005: "one thousand and five",
                 21000: "twenty one thousand", 1000001: "one million and one",
                 7654321: "seven million six hundred and fifty four thousand three hundred and twenty one"}
        for n, words in cases.items():
            self.assertEqual(textnorm.number_to_words(n), words)
        self.assertEqual(textnorm.number_to_words(412, british_and=False), "four hundred twelve")

    def test_ordinals_years_and_digits(self):
        self.assertEqual(textnorm.ordinal_words(1), "first")
        self.assertEqual(textnorm.ordinal_words(22), "twenty second")
        self.assertEqual(textnorm.ordinal_words(40), "fortieth")
        self.assertEqual(textnorm.year_words(1984), "nineteen eighty four")
        self.assertEqual(textnorm.year_words(1905), "nineteen oh five")
        self.assertEqual(textnorm.year_words(2007), "two thousand and seven")
        self.assertEqual(textnorm.digits_words("4075"), "four zero seven five")


class Normalisation(unittest.TestCase):
    def test_a_typographic_apostrophe_is_kept_as_one(self):
        self.assertEqual(textnorm.normalise("I don\u2019t know what they\u2019re doing"), "i don't know what they're doing")

    def test_output_is_lowercase_letters_apostrophes_and_spaces(self):
        self.assertEqual(textnorm.normalise("In 1984, 35% of us won 3.5 points!"),
                         "in nineteen eighty four thirty five percent of us won three point five points")
        self.assertEqual(textnorm.normalise("Don't panic -- it's the 2nd time."),
                         "don't panic it's the second time")

    def test_text_an_engine_would_read_differently_is_dropped(self):
        for text in ["Dr. Who arrives", "Chapter IV", "It costs $5", "see /usr/bin", "Mr. Smith"]:
            self.assertIsNone(textnorm.normalise(text), text)

    def test_generated_numbers_and_commands_are_valid_labels(self):
        for sentence in texts.number_sentences(2000, 3) + texts.command_sentences(500, 3):
            self.assertRegex(sentence, LABEL_RE)


class TrigramReader(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from lm_sampler import TrigramLM
        if not os.path.exists(texts.LM_PATH):
            raise unittest.SkipTest  # replaced below by a failing test
        cls.lm = TrigramLM(texts.LM_PATH)

    def test_unigram_probabilities_sum_to_one(self):
        # The model's unigram distribution is normalised (ARPA sums to 1 within rounding of 4 decimals
        # on 72k entries); a misread offset or log base would be far off.
        self.assertAlmostEqual(sum(self.lm.uni_prob), 1.0, delta=1e-3)

    def test_english_order_is_more_probable_than_its_reverse(self):
        forward = "the president said on tuesday that he would".split()
        self.assertGreater(self.lm.log10_prob(forward), self.lm.log10_prob(forward[::-1]) + 5.0)

    def test_samples_have_4_to_16_allowed_words(self):
        rng = random.Random(5)
        word_re = re.compile(r"^[a-z]+('[a-z]+)?$")
        for _ in range(30):
            words = self.lm.sample_sentence(rng, lambda w: bool(word_re.match(w)))
            self.assertIsNotNone(words)
            self.assertTrue(4 <= len(words) <= 16, words)
            self.assertTrue(all(word_re.match(w) for w in words), words)


class LanguageModelPresent(unittest.TestCase):
    def test_pocketsphinx_model_is_installed(self):
        self.assertTrue(os.path.exists(texts.LM_PATH),
                        f"{texts.LM_PATH} missing: run scripts/setup.sh (package pocketsphinx-en-us)")


class VoiceSplit(unittest.TestCase):
    def test_no_eval_voice_is_a_training_voice(self):
        voices.check_disjoint()
        train = {(e, v) for e, vs in voices.voices_for("train").items() for v in vs}
        for split in ("valid", "test"):
            held = {(e, v) for e, vs in voices.voices_for(split).items() for v in vs}
            self.assertFalse(held & train)
            self.assertGreaterEqual(len({e for e, _ in held}), 2, f"{split} uses one engine only")


# festival's radio phone set as kal_diphone's front end produces it (its phoneset minus h#/brth).
ENGLISH_PHONES = ("pau aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k l m "
                  "n nx ng ow oy p r s sh t th uh uw v w y z zh").split()


class AccentedVoices(unittest.TestCase):
    def test_every_english_phone_has_a_substitute_each_voice_says(self):
        for voice, (language, _, _) in accented.VOICES.items():
            pairs = accented.diphones(voice)
            phones = {p for pair in pairs for p in pair.split("-", 1)}
            for english in ENGLISH_PHONES:
                options = accented.MAPS[language].get(english)
                self.assertIsNotNone(options, f"{language}: no substitute for {english}")
                usable = [sub for sub in options.split("|") if all(p in phones for p in sub.split())]
                self.assertTrue(usable, f"{voice} says none of {english}'s substitutes {options}")

    def test_every_voice_loads_and_a_broken_one_is_named(self):
        # The Hindi voice is installed without its phone set unless festival-hi is there too: a
        # voice that is present must also load, or every one of its utterances would be rejected.
        for voice in accented.VOICES:
            self.assertIsNone(voices.voice_load_error(voice), voice)
        error = voices.voice_load_error("no_such_voice")
        self.assertIsNotNone(error)
        self.assertIn("no_such_voice", error)

    def test_search_avoids_missing_pairs_then_prefers_the_first_substitute(self):
        have = {"#-s", "s-a:", "a:-#", "#-z", "z-a:", "s-#", "a:-s"}
        # "z" is preferred, but z-# is missing: the search says s at the end, z at the start.
        path, missing = accented.choose(["pau", "z", "aa", "z", "pau"], "czech", have)
        self.assertEqual(path, [["#"], ["z"], ["a:"], ["s"], ["#"]])
        self.assertEqual(missing, 0)
        # A pair no substitute can avoid is counted, not hidden.
        path, missing = accented.choose(["pau", "z", "aa", "z", "pau"], "czech", have - {"a:-s"})
        self.assertEqual(missing, 1)
        # Diphthongs become two phones; a dropped phone joins its neighbours.
        have = {"#-a", "a-i", "i-#", "a-#"}
        self.assertEqual(accented.choose(["pau", "hh", "ay", "pau"], "italian", have)[0],
                         [["#"], [], ["a", "i"], ["#"]])
        # A phone with no substitutes is an error naming it, not a silent gap.
        with self.assertRaisesRegex(ValueError, "brth"):
            accented.choose(["pau", "brth", "pau"], "czech", have)

    def test_scheme_list(self):
        self.assertEqual(accented.scheme_list([["#"], [], ["e", "i"]]), '(("#") () ("e" "i"))')


class Augment(unittest.TestCase):
    def test_noise_mixes_in_a_folder_whose_path_has_spaces(self):
        # sox reads the noise bed through a shell ("|sox ..."): an unquoted path split at the space and
        # every noisy utterance failed.
        import augment
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "my corpus")
            os.makedirs(folder)
            tts = os.path.join(folder, "tts.wav")
            subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", tts, "synth", "1.2", "sine", "300",
                            "vol", "0.3"], check=True)
            beds = augment.make_noise_beds(os.path.join(folder, "noise"), {}, seconds=3)
            out = os.path.join(folder, "out.flac")
            aug = {"pad": [0.1, 0.1], "noise": {"type": "whitenoise", "offset": 0.5, "snr_db": 10}, "level_db": -3}
            length = augment.render(tts, out, aug, beds, "train", folder, "flac")
            self.assertTrue(os.path.exists(out))
            self.assertGreater(length, 1.2)


class SplitTail(unittest.TestCase):
    @staticmethod
    def records(indices, rejected=()):
        return {i: dict({"index": i, "duration": 1.0}, **({"rejected": "tts"} if i in rejected else {}))
                for i in indices}

    def test_kept_stops_at_the_first_record_that_reaches_the_goal(self):
        recs = self.records(range(10), rejected={3})
        got = [r["index"] for r in synthesize.kept(recs, lambda total, count: total >= 4)]
        self.assertEqual(got, [0, 1, 2, 3, 4])   # 4 s from 0, 1, 2 and 4; 5-9 finished past the goal
        self.assertEqual([r["index"] for r in synthesize.kept(recs, lambda total, count: count >= 2)], [0, 1])

    def test_goals_never_shrink_and_splits_not_made_keep_theirs(self):
        saved = {"train": {"seconds": 7200.0}, "accented": {"seconds": 3600.0}, "valid": {"seconds": 3600.0}}
        goals = synthesize.merge_goals(synthesize.parse_args(["--hours", "1", "--eval-hours", "2"]), saved)
        self.assertEqual(goals["train"], {"seconds": 7200.0})      # a smaller --hours does not shorten it
        self.assertEqual(goals["valid"], {"seconds": 7200.0})      # a larger --eval-hours grows it
        self.assertEqual(goals["accented"], {"seconds": 3600.0})   # not made this run: kept
        rules = synthesize.goal_rules(goals)
        self.assertFalse(rules["train"](7199.0, 10**6))
        self.assertTrue(rules["train"](7200.0, 1))

    def test_kept_never_reaches_past_a_missing_record(self):
        recs = self.records([0, 1, 3, 4])
        self.assertEqual([r["index"] for r in synthesize.kept(recs, lambda total, count: total >= 10)], [0, 1])
        self.assertEqual([r["index"] for r in synthesize.kept(recs)], [0, 1])


class SmallRun(unittest.TestCase):
    """Runs the whole recipe in --small mode and checks its outputs."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = cls.tmp.name
        cls.proc = subprocess.run([sys.executable, os.path.join(CORPUS, "synthesize.py"), "--small",
                                   "--out", cls.out], capture_output=True, text=True, timeout=300)
        with open(os.path.join(cls.out, "train.tsv")) as fh:
            cls.train_before = fh.read()
        # The accented supplement, added to the finished corpus afterwards.
        cls.accented = subprocess.run([sys.executable, os.path.join(CORPUS, "synthesize.py"), "--small",
                                       "--accented-hours", "1", "--out", cls.out],
                                      capture_output=True, text=True, timeout=300)
        # The same recipe with two workers, into another folder.
        cls.tmp2 = tempfile.TemporaryDirectory()
        cls.parallel = subprocess.run([sys.executable, os.path.join(CORPUS, "synthesize.py"), "--small", "--jobs", "2",
                                       "--accented-hours", "1", "--out", cls.tmp2.name], capture_output=True, text=True, timeout=300)
        # ... and again without the supplement's flag: its manifest must keep its goal, not grow the tail.
        cls.parallel_again = subprocess.run([sys.executable, os.path.join(CORPUS, "synthesize.py"), "--small", "--jobs", "2",
                                             "--out", cls.tmp2.name], capture_output=True, text=True, timeout=300)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        cls.tmp2.cleanup()

    def manifest(self, split):
        with open(os.path.join(self.out, f"{split}.tsv")) as fh:
            return [line.rstrip("\n").split("\t") for line in fh]

    def test_run_succeeds_and_writes_manifests_of_the_small_sizes(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stdout[-2000:] + self.proc.stderr[-2000:])
        sizes = {split: len(self.manifest(split)) for split in ("train", "valid", "test")}
        self.assertEqual(sizes, {"train": 40, "valid": 10, "test": 10})

    def test_audio_is_16k_mono_16bit_between_1_and_15_s_with_valid_labels(self):
        for split in ("train", "valid", "test"):
            for path, text in self.manifest(split):
                self.assertRegex(text, LABEL_RE)
                full = os.path.join(self.out, path)
                info = subprocess.run(["soxi", full], capture_output=True, text=True, check=True).stdout
                self.assertIn("Sample Rate    : 16000", info)
                self.assertIn("Channels       : 1", info)
                self.assertIn("16-bit", info)
                seconds = float(subprocess.run(["soxi", "-D", full], capture_output=True, text=True).stdout)
                self.assertTrue(1.0 <= seconds <= 15.0, f"{path}: {seconds} s")

    def test_eval_texts_and_voices_are_unseen_in_training(self):
        with open(os.path.join(self.out, "voices.tsv")) as fh:
            rows = [line.rstrip("\n").split("\t") for line in fh][1:]
        train_voices = {(r[2], r[3]) for r in rows if r[1] == "train"}
        train_texts = {t for _, t in self.manifest("train")}
        with open(os.path.join(self.out, "text", "pools.json")) as fh:
            pools = json.load(fh)["pools"]
        train_pool = {s for src in pools.values() for s in src["train"]}
        for split in ("valid", "test"):
            for r in rows:
                if r[1] == split:
                    self.assertNotIn((r[2], r[3]), train_voices)
            for _, text in self.manifest(split):
                self.assertNotIn(text, train_texts)
                self.assertNotIn(text, train_pool)

    def test_accented_supplement_reads_training_texts_in_the_accented_voices_only(self):
        self.assertEqual(self.accented.returncode, 0, self.accented.stdout[-2000:] + self.accented.stderr[-2000:])
        rows = self.manifest("accented")
        self.assertEqual(len(rows), 10)
        with open(os.path.join(self.out, "train.tsv")) as fh:
            self.assertEqual(fh.read(), self.train_before, "the training split must not change")
        self.assertEqual(self.manifest("train+accented"), self.manifest("train") + rows)
        with open(os.path.join(self.out, "text", "pools.json")) as fh:
            pools = json.load(fh)["pools"]
        train_pool = {s for src in pools.values() for s in src["train"]}
        with open(os.path.join(self.out, "voices.tsv")) as fh:
            meta = {r[0]: r for r in (line.rstrip("\n").split("\t") for line in fh)}
        for path, text in rows:
            self.assertRegex(text, LABEL_RE)
            self.assertIn(text, train_pool)
            self.assertEqual(meta[path][1:3], ["accented", "accented"])
            self.assertIn(meta[path][3], accented.VOICES)
            seconds = float(subprocess.run(["soxi", "-D", os.path.join(self.out, path)],
                                           capture_output=True, text=True).stdout)
            self.assertTrue(1.0 <= seconds <= 15.0, f"{path}: {seconds} s")

    def test_two_workers_write_the_same_manifests_as_one(self):
        self.assertEqual(self.parallel.returncode, 0, self.parallel.stdout[-2000:] + self.parallel.stderr[-2000:])
        self.assertEqual(self.parallel_again.returncode, 0, self.parallel_again.stderr[-2000:])
        for split in ("test", "valid", "train", "accented"):
            with open(os.path.join(self.tmp2.name, f"{split}.tsv")) as fh:
                parallel = fh.read()
            ours = self.train_before if split == "train" else "".join(l + "\n" for l in map("\t".join, self.manifest(split)))
            self.assertEqual(parallel, ours, split)
        report = subprocess.run([sys.executable, os.path.join(CORPUS, "synthesize.py"), "--report", "--out", self.tmp2.name],
                                capture_output=True, text=True, timeout=60)
        # What the manifests hold, not the workers' tail.
        self.assertRegex(report.stdout, r"(?m)^train: [\d.]+ h, 40 utterances ")
        self.assertRegex(report.stdout, r"(?m)^accented: [\d.]+ h, 10 utterances ")

    def test_manifest_records_are_the_manifests_utterances_in_order(self):
        for split in ("valid", "train", "train+accented"):
            recs = synthesize.manifest_records(self.out, split)
            self.assertEqual([[r["path"], r["text"]] for r in recs], self.manifest(split))

    def test_second_run_resumes_without_redoing_anything(self):
        self.assertEqual(self.proc.returncode, 0)
        again = subprocess.run([sys.executable, os.path.join(CORPUS, "synthesize.py"), "--small",
                                "--out", self.out], capture_output=True, text=True, timeout=120)
        self.assertEqual(again.returncode, 0, again.stderr[-2000:])
        self.assertIn("train: 40 utterances (", again.stdout)
        self.assertNotIn("rejected:", again.stdout)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"corpus: {result.testsRun - failed - len(result.skipped)} passed, {failed} failed")
    sys.exit(1 if failed else 0)
