#!/usr/bin/env python3
"""Cut every recording of a manifest to its speech, as tightly cut clips are (FSDD's digits, clips from a
voice-activity detector): from the first to the last 10 ms frame within 40 dB of the loudest, the rule of
the training augmentation `augment.trim_probability` (`speechBounds` in Sources/Features/SpeechBounds.swift),
with no margin. Writes 16 kHz 16-bit mono WAV files and a manifest of them, for measuring how a model hears
words at a recording's edge (models/README.md, "The trimmed cycle").

usage: bench/cut-to-speech.py MANIFEST OUT_DIR     (writes OUT_DIR/manifest.tsv; needs sox and numpy)
"""
import os
import subprocess
import sys
import wave

import numpy as np


def speech_bounds(x, rate=16000, range_db=40.0):
    frame = rate // 100
    frames = len(x) // frame
    if frames == 0:
        return None
    energy = (x[: frames * frame].reshape(frames, frame) ** 2).mean(axis=1)
    peak = energy.max()
    if peak <= 0:
        return None
    threshold = peak * 10 ** (-range_db / 10)
    if not (energy < threshold).any():
        return None
    loud = np.where(energy >= threshold)[0]
    end = len(x) if loud[-1] == frames - 1 else (loud[-1] + 1) * frame
    return loud[0] * frame, end


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    manifest, out_dir = sys.argv[1], sys.argv[2]
    base = os.path.dirname(os.path.abspath(manifest))
    os.makedirs(out_dir, exist_ok=True)
    cut = total = 0
    with open(manifest, encoding="utf-8") as src, open(os.path.join(out_dir, "manifest.tsv"), "w", encoding="utf-8") as out:
        for line in src:
            line = line.rstrip("\n")
            if not line:
                continue
            path, text = line.split("\t", 1)
            path = path if os.path.isabs(path) else os.path.join(base, path)
            raw = subprocess.run(["sox", path, "-t", "s16", "-r", "16000", "-c", "1", "-"],
                                 capture_output=True, check=True).stdout
            x = np.frombuffer(raw, dtype=np.int16).astype(np.float64) / 32768
            bounds = speech_bounds(x)
            if bounds:
                x = x[bounds[0]:bounds[1]]
                cut += 1
            name = os.path.join(os.path.abspath(out_dir), "%06d.wav" % total)
            with wave.open(name, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes((np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16).tobytes())
            out.write("%s\t%s\n" % (name, text))
            total += 1
    print("%d recordings, %d cut to their speech: %s" % (total, cut, os.path.join(out_dir, "manifest.tsv")))


if __name__ == "__main__":
    main()
