"""The voice inventory (engine + voice + variant) and its split: valid and test use voices never heard in
training. Each function here turns (voice, per-utterance parameters, text) into one engine call."""

import atexit
import os
import subprocess
import time

import accented

ESPEAK_ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc"]
# espeak-ng's variants (voices/!v) that sound like a person; the novelty ones (robosoft*, Demonic,
# UniRobot, announcer...) are left out.
ESPEAK_VARIANTS = [
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "grandma",
    "linda", "shelby", "steph", "steph2", "steph3", "whisperf",
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "klatt", "klatt2", "klatt3", "klatt4", "klatt5",
    "klatt6", "croak", "whisper", "Alex", "Andy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo",
    "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "adam", "antonio", "benjamin", "boris",
    "caleb", "david", "ed", "edward", "edward2", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4",
    "john", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "sandro", "travis", "victor", "zac",
]
# Held-out variants and accents: each eval split gets female, male, klatt and named variants, and one
# accent that training never hears at all.
TEST_VARIANTS = ["f3", "steph2", "Andrea", "m4", "klatt3", "Mike", "grandpa"]
VALID_VARIANTS = ["f4", "linda", "aunty", "m6", "klatt5", "Gene", "travis"]
TEST_ACCENTS = {"en-gb-x-gbcwmd": "all", "en-us": "held", "en-gb-scotland": "held"}
VALID_ACCENTS = {"en-029": "all", "en-gb-x-rp": "held", "en-us-nyc": "held"}
TRAIN_ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-us-nyc"]

FLITE_VOICES = {"train": ["kal", "kal16", "slt"], "valid": ["rms"], "test": ["awb"]}
FESTIVAL_VOICES = {"train": ["kal_diphone", "cmu_us_slt_arctic_hts"], "valid": [],
                   "test": ["ked_diphone"]}
ENGINE_SHARE = {"train": {"espeak": 0.55, "flite": 0.25, "festival": 0.20},
                "valid": {"espeak": 0.70, "flite": 0.30, "festival": 0.0},
                "test": {"espeak": 0.55, "flite": 0.25, "festival": 0.20},
                "accented": {"accented": 1.0}}


def voices_for(split):
    """{engine: [voice ids]} for a split; an espeak voice id is 'accent+variant'."""
    if split == "accented":
        return {"accented": list(accented.VOICES)}
    train_variants = [v for v in ESPEAK_VARIANTS if v not in TEST_VARIANTS and v not in VALID_VARIANTS]
    if split == "train":
        espeak = [f"{a}+{v}" for a in TRAIN_ACCENTS for v in train_variants]
    else:
        accents = TEST_ACCENTS if split == "test" else VALID_ACCENTS
        held = TEST_VARIANTS if split == "test" else VALID_VARIANTS
        espeak = []
        for accent, which in accents.items():
            variants = held + train_variants[::6] if which == "all" else held
            espeak += [f"{accent}+{v}" for v in variants]
    return {"espeak": espeak, "flite": FLITE_VOICES[split], "festival": FESTIVAL_VOICES[split]}


def check_disjoint():
    """Raises when a voice of valid or test also appears in train (the guarantee the splits rest on)."""
    train = {(e, v) for e, vs in voices_for("train").items() for v in vs}
    for split in ("valid", "test"):
        for engine, vs in voices_for(split).items():
            for v in vs:
                if (engine, v) in train:
                    raise AssertionError(f"voice {engine}:{v} is in both train and {split}")


FESTIVAL_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                     "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}


def check_installed(accented_voices=False):
    """Raises SystemExit naming the Debian package when a festival voice is missing: festival would
    otherwise fall back to its default voice silently and mislabel the utterance's voice."""
    packages = dict(FESTIVAL_PACKAGES)
    wanted = [v for split in ("train", "valid", "test") for v in FESTIVAL_VOICES[split]]
    if accented_voices:
        packages.update({v: p for v, (_, _, p) in accented.VOICES.items()})
        wanted += list(accented.VOICES)
    for voice in wanted:
        if accented.voice_dir(voice) is None:
            raise SystemExit(f"festival voice {voice} is not installed: run scripts/setup.sh "
                             f"(Debian package {packages.get(voice, '?')})")
        # A voice can be present and still not load: festvox-hi-nsk needs festival-hi's Hindi phone
        # set, which apt leaves out with --no-install-recommends. Every utterance would then be
        # rejected one by one ("festival wrote no audio"), so refuse to start instead.
        error = voice_load_error(voice)
        if error:
            raise SystemExit(f"festival voice {voice} does not load: {error}; run scripts/setup.sh "
                             f"(Debian packages {packages.get(voice, '?')})")


def voice_load_error(voice):
    """None when festival selects the voice without an error, else festival's first error line."""
    try:
        done = subprocess.run(["festival", "-b", f"(voice_{voice})"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "SIOD ERROR" in line]
    if done.returncode != 0 or errors:
        return errors[0].strip() if errors else f"festival exited with status {done.returncode}"
    return None


def choose_params(engine, rng):
    """Per-utterance voice parameters: speaking rate and pitch within the engine's natural range."""
    if engine == "espeak":
        return {"wpm": rng.randint(120, 200), "pitch": rng.randint(30, 70),
                "gap": rng.choice([0] * 8 + [1, 2, 3])}
    return {"stretch": round(rng.uniform(0.8, 1.25), 3)}


def synthesize(engine, voice, params, text, wav_path):
    """Runs one engine; raises subprocess.CalledProcessError (with stderr) or OSError on failure."""
    if os.path.exists(wav_path):
        os.remove(wav_path)  # a stale file must never pass for this utterance's audio
    if engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, "-s", str(params["wpm"]), "-p", str(params["pitch"]),
               "-g", str(params["gap"]), "-w", wav_path, text]
        subprocess.run(cmd, check=True, capture_output=True)
    elif engine == "flite":
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={params['stretch']}",
               "-t", text, "-o", wav_path]
        subprocess.run(cmd, check=True, capture_output=True)
    elif engine == "festival":
        _festival_server(os.path.dirname(os.path.abspath(wav_path))).synthesize(
            voice, params["stretch"], text, wav_path)
    elif engine == "accented":
        _festival_server(os.path.dirname(os.path.abspath(wav_path))).synthesize_accented(
            voice, params["stretch"], text, wav_path)
    else:
        raise ValueError(f"unknown engine {engine}")


class FestivalServer:
    """One long-lived festival interpreter fed Scheme on stdin. Starting festival and loading a voice
    (what text2wave does for every call) costs 0.2-0.4 s, several times the synthesis itself, so each
    worker process keeps one. Completion is signalled by a marker file that festival creates after the
    synthesis, because festival buffers its stdout when it is not a terminal."""

    def __init__(self, work_dir):
        self.work_dir = work_dir
        self.proc = None
        self.voice = None
        self.count = 0
        self.prelude = False
        self.pairs = {}

    def _start(self):
        self.proc = subprocess.Popen(["festival"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, text=True)
        self.voice = None
        self.prelude = False

    def close(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
            self.proc = None

    def _run(self, scheme, timeout=60.0):
        self.count += 1
        marker = os.path.join(self.work_dir, f"festival-done-{os.getpid()}-{self.count}")
        self.proc.stdin.write(f'{scheme}\n(fclose (fopen "{marker}" "w"))\n')
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not os.path.exists(marker):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise OSError(f"festival did not finish: {scheme[:120]}")
            time.sleep(0.002)
        os.remove(marker)

    def synthesize(self, voice, stretch, text, wav_path):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        if voice != self.voice:
            self._run(f"(voice_{voice})")
            self.voice = voice
        safe = text.replace("\\", " ").replace('"', " ")
        self._run(f"(Parameter.set 'Duration_Stretch {stretch})\n"
                  f'(utt.save.wave (utt.synth (Utterance Text "{safe}")) "{wav_path}" \'riff)')
        if not os.path.exists(wav_path):
            raise OSError(f"festival wrote no audio for: {text}")

    def synthesize_accented(self, voice, stretch, text, wav_path):
        """The text in one of accented.VOICES (see accented.py). Raises OSError when the voice lacks a
        phone pair the utterance needs even with substitutes (festival would put silence there)."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        if not self.prelude:
            self._run(accented.PRELUDE)
            self.prelude = True
        if voice not in self.pairs:
            self.pairs[voice] = accented.diphones(voice)
        safe = text.replace("\\", " ").replace('"', " ")
        segfile = os.path.join(self.work_dir, f"festival-segments-{os.getpid()}")
        self._run(f'(xl-front "{safe}" {stretch} "{segfile}")')
        self.voice = "kal_diphone"
        with open(segfile) as fh:
            english = fh.read().split()
        os.remove(segfile)
        language, f0_factor, _ = accented.VOICES[voice]
        try:
            choices, missing = accented.choose(english, language, self.pairs[voice])
        except ValueError as err:  # a phone the front end has never produced before: reject, go on
            raise OSError(f"{err}, in: {text}") from err
        if missing:
            raise OSError(f"{voice} lacks {missing} phone pair(s) for: {text}")
        self._run(f"(voice_{voice})\n(xl-back '{accented.scheme_list(choices)} {f0_factor} \"{wav_path}\")")
        self.voice = voice
        if not os.path.exists(wav_path):
            raise OSError(f"festival wrote no audio for: {text}")


_servers = {}


def _festival_server(work_dir):
    # One per process (worker processes each get their own), closed when the process exits.
    server = _servers.get(os.getpid())
    if server is None:
        server = FestivalServer(work_dir)
        _servers[os.getpid()] = server
        atexit.register(server.close)
    return server
