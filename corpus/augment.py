"""Acoustic augmentation with sox: tempo/speed, pitch, room reverb, additive noise at a chosen SNR
(white, pink, brown, babble), telephone band and 8 kHz channels, and the output level."""

import os
import re
import shlex
import subprocess

SOX = ["sox", "-V1", "-R", "-D"]  # -R: repeatable random numbers; -D: no dither (reproducible output)
NOISE_COLOURS = ["whitenoise", "pinknoise", "brownnoise"]
NOISE_BED_SECONDS = 60.0


def choose(rng):
    """The augmentation of one utterance, as a plain dict (recorded in the voice description)."""
    aug = {"pad": [round(rng.uniform(0.05, 0.4), 3), round(rng.uniform(0.05, 0.4), 3)],
           "level_db": round(-rng.uniform(1.0, 20.0), 1)}
    if rng.random() < 0.25:
        aug["clean"] = True
        return aug
    aug["clean"] = False
    r = rng.random()
    if r < 0.2:
        aug["tempo"] = round(rng.uniform(0.9, 1.1), 3)
    elif r < 0.4:
        aug["speed"] = round(rng.uniform(0.9, 1.1), 3)
    if rng.random() < 0.25:
        aug["pitch_cents"] = rng.choice([-1, 1]) * rng.randint(50, 300)
    if rng.random() < 0.35:
        aug["reverb"] = {"reverberance": rng.randint(20, 80), "hf_damping": rng.randint(20, 80),
                         "room_scale": rng.randint(20, 100), "pre_delay_ms": rng.randint(0, 20),
                         "wet_gain_db": round(rng.uniform(-6.0, 0.0), 1)}
    if rng.random() < 0.55:
        colour = rng.choices(["whitenoise", "pinknoise", "brownnoise", "babble"], [0.15, 0.3, 0.2, 0.35])[0]
        aug["noise"] = {"type": colour, "snr_db": round(rng.uniform(5.0, 30.0), 1),
                        "offset": round(rng.uniform(0.0, 1.0), 4)}
    r = rng.random()
    if r < 0.10:
        aug["channel"] = "telephone"
    elif r < 0.18:
        aug["channel"] = "8khz"
    return aug


def describe(aug):
    """A short tag for summaries: clean, or the effects applied joined by '+'."""
    if aug.get("clean"):
        return "clean"
    parts = [k for k in ("tempo", "speed", "pitch_cents", "reverb") if k in aug]
    if "noise" in aug:
        parts.append(aug["noise"]["type"])
    if "channel" in aug:
        parts.append(aug["channel"])
    return "+".join(parts) or "level"


def stats(path):
    """(length seconds, RMS level dB) of an audio file from `sox stats`."""
    out = subprocess.run(["sox", path, "-n", "stats"], capture_output=True, text=True, check=True).stderr
    length = float(re.search(r"Length s\s+([\d.]+)", out).group(1))
    rms = re.search(r"RMS lev dB\s+(-?[\d.inf]+)", out).group(1)
    return length, (float(rms) if "inf" not in rms else -200.0)


def make_noise_beds(noise_dir, babble_sources, seconds=NOISE_BED_SECONDS):
    """Writes the noise beds (one per colour, and one babble bed per split made of that split's own
    TTS voices) and returns {name: (path, length s, RMS dB)}. babble_sources: {split: [wav paths]}."""
    os.makedirs(noise_dir, exist_ok=True)
    beds = {}
    for colour in NOISE_COLOURS:
        path = os.path.join(noise_dir, f"{colour}.wav")
        if not os.path.exists(path):
            tmp = path + ".tmp.wav"
            subprocess.run(SOX + ["-n", "-r", "16000", "-c", "1", "-b", "16", tmp, "synth", str(seconds),
                                  colour, "vol", "0.5"], check=True)
            os.replace(tmp, path)
        beds[colour] = (path,) + stats(path)
    for split, wavs in babble_sources.items():
        path = os.path.join(noise_dir, f"babble-{split}.wav")
        if not os.path.exists(path):
            tmp = path + ".tmp.wav"
            # Four talkers, each a concatenation of different utterances, mixed at equal level.
            tracks = []
            for t in range(4):
                track = os.path.join(noise_dir, f"babble-{split}-{t}.tmp.wav")
                mine = wavs[t::4] or wavs
                subprocess.run(SOX + mine + ["-r", "16000", "-c", "1", track, "norm", "-3"], check=True)
                tracks.append(track)
            mix = SOX + ["-m"]
            for track in tracks:
                mix += ["-v", "1", track]
            subprocess.run(mix + ["-b", "16", tmp, "norm", "-3"], check=True)
            for track in tracks:
                os.remove(track)
            os.replace(tmp, path)
        beds[f"babble-{split}"] = (path,) + stats(path)
    return beds


def render(tts_wav, out_path, aug, beds, split, work_dir, audio_format, min_seconds=1.05):
    """TTS output -> augmented 16 kHz mono 16-bit file, written atomically. Returns its length (s)."""
    stage = os.path.join(work_dir, "stage.wav")
    effects = ["pad", str(aug["pad"][0]), str(aug["pad"][1])]
    if "tempo" in aug:
        effects += ["tempo", "-s", str(aug["tempo"])]
    if "speed" in aug:
        effects += ["speed", str(aug["speed"])]
    if "pitch_cents" in aug:
        effects += ["pitch", str(aug["pitch_cents"])]
    if "reverb" in aug:
        r = aug["reverb"]
        effects += ["reverb", str(r["reverberance"]), str(r["hf_damping"]), str(r["room_scale"]), "100",
                    str(r["pre_delay_ms"]), str(r["wet_gain_db"]), "channels", "1"]
    effects += ["rate", "-v", "16000", "norm", "-3"]
    subprocess.run(SOX + [tts_wav, "-r", "16000", "-c", "1", "-e", "floating-point", "-b", "32", stage]
                   + effects, check=True)
    length, speech_rms = stats(stage)
    if length < min_seconds:
        # Isolated words are shorter than the 1 s floor: extend the silence around them rather than
        # lose them. speech_rms stays that measured before the extra silence, so the SNR is unchanged.
        extra = min_seconds - length
        padded = os.path.join(work_dir, "stage-padded.wav")
        subprocess.run(SOX + [stage, padded, "pad", f"{extra / 2:.4f}", f"{extra / 2:.4f}"], check=True)
        os.replace(padded, stage)
        length = stats(stage)[0]
    cmd = list(SOX)
    if "noise" in aug:
        n = aug["noise"]
        bed_name = n["type"] if n["type"] != "babble" else f"babble-{split}"
        bed_path, bed_len, bed_rms = beds[bed_name]
        offset = n["offset"] * max(0.0, bed_len - length - 0.01)
        gain = 10 ** (((speech_rms - n["snr_db"]) - bed_rms) / 20.0)
        repeats = int(length // max(bed_len - offset, 0.1)) + 1
        # sox runs a "|..." input through a shell: quote the path (a corpus folder may hold spaces).
        noise_input = f"|sox -V1 {shlex.quote(bed_path)} -p trim {offset:.3f} repeat {repeats} trim 0 {length:.4f}"
        cmd += ["-m", "-v", "1", stage, "-v", f"{gain:.6f}", noise_input]
    else:
        cmd += [stage]
    tmp = out_path + ".part." + audio_format
    cmd += ["-r", "16000", "-c", "1", "-b", "16", "-t", audio_format, tmp]
    if aug.get("channel") == "telephone":
        cmd += ["sinc", "300-3400", "rate", "8000", "rate", "16000"]
    elif aug.get("channel") == "8khz":
        cmd += ["rate", "8000", "rate", "16000"]
    cmd += ["gain", "-n", str(aug["level_db"])]
    subprocess.run(cmd, check=True)
    os.replace(tmp, out_path)
    return length
