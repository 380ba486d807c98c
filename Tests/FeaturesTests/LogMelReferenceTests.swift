import Foundation
import Testing
import Features

/// Whole log-mel features against an independent float64 NumPy/librosa computation driven by the same
/// JSON config the model file carries.
///
/// The reference frames centred configs with `librosa.stft(center=True, pad_mode="constant")` (which also
/// places the short window inside `n_fft`) and non-centred ones by slicing, builds filters with
/// `librosa.filters.mel` or a transcription of Kaldi's `MelBanks`, and does the per-frame Kaldi steps
/// (DC removal, per-frame pre-emphasis) itself.
///
/// Tolerance 5e-4 absolute on log-mel values (and on per-feature-normalised values, which divide by a
/// standard deviation of order 1): the frontend runs in float32, whose FFT rounding error is ~1e-7 of
/// the frame's energy. A log value's error is the power's relative error, ~1e-6 for bins carrying a fair
/// share of the frame's energy, growing as a bin falls below the frame's loudest ones (the lowest bins
/// after pre-emphasis here: measured up to ~3e-5). 5e-4 leaves >10x headroom over that while any real
/// difference (a wrong window, filter, pre-emphasis, guard or framing) moves values by 1e-2 or more.
/// The measured maximum per config is printed.
@Suite struct LogMelReferenceTests {
    static let script = #"""
import json, sys
import numpy as np, scipy.signal, librosa

cfgs, signal, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
x0 = np.fromfile(signal, dtype="<f4").astype(np.float64)

def window(kind, n, periodic):
    if kind == "povey":
        return scipy.signal.get_window("hann", n, fftbins=periodic) ** 0.85
    name = {"hann": "hann", "hamming": "hamming", "blackman": "blackman",
            "bartlett": "bartlett", "rectangular": "boxcar"}[kind]
    return scipy.signal.get_window(name, n, fftbins=periodic)

def kaldi_mel_banks(sr, nfft, mels, fmin, fmax, htk):
    mel = (lambda f: 1127.0 * np.log(1.0 + f / 700.0)) if htk else (lambda f: librosa.hz_to_mel(f, htk=False))
    lo, hi = mel(fmin), mel(fmax)
    delta = (hi - lo) / (mels + 1)
    bin_mel = mel(sr / nfft * np.arange(nfft // 2 + 1, dtype=np.float64))
    w = np.zeros((mels, nfft // 2 + 1))
    for b in range(mels):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        inside = (bin_mel > left) & (bin_mel < right)
        w[b] = np.where(inside, np.where(bin_mel <= center, (bin_mel - left) / (center - left),
                                         (right - bin_mel) / (right - center)), 0.0)
    return w

for i, c in enumerate(cfgs):
    sr, win, hop, nfft = c["sampleRate"], c["windowLength"], c["hopLength"], c["fftSize"]
    x = x0 * c["sampleScale"]
    p = c.get("preemphasis")
    if p is not None and c["preemphasisScope"] == "signal":
        x = np.concatenate([x[:1], x[1:] - p * x[:-1]])      # NeMo: first sample kept
    w = window(c["window"], win, c["periodicWindow"])
    per_frame = c["removeDCOffset"] or (p is not None and c["preemphasisScope"] == "frame")
    if c["center"]:
        assert not per_frame
        spec = np.abs(librosa.stft(x, n_fft=nfft, hop_length=hop, win_length=win, window=w,
                                   center=True, pad_mode="constant")) ** c["power"]
        spec = spec.T                                            # frames x bins
    else:
        n = 1 + (len(x) - win) // hop if len(x) >= win else 0
        frames = np.stack([x[t * hop : t * hop + win] for t in range(n)])
        if c["removeDCOffset"]:
            frames = frames - frames.mean(axis=1, keepdims=True)
        if p is not None and c["preemphasisScope"] == "frame":
            f = frames.copy()                                    # Kaldi: w[i] -= p w[i-1]; w[0] -= p w[0]
            frames[:, 1:] = f[:, 1:] - p * f[:, :-1]
            frames[:, 0] = f[:, 0] - p * f[:, 0]
        spec = np.abs(np.fft.rfft(frames * w, n=nfft, axis=1)) ** c["power"]
    fmax = c.get("fMax") or sr / 2
    if c["melTriangles"] == "linearInMel":
        assert c["melNormalization"] == "none"
        fb = kaldi_mel_banks(sr, nfft, c["melBins"], c["fMin"], fmax, c["melScale"] == "htk")
    else:
        fb = librosa.filters.mel(sr=sr, n_fft=nfft, n_mels=c["melBins"], fmin=c["fMin"], fmax=fmax,
                                 htk=c["melScale"] == "htk",
                                 norm="slaney" if c["melNormalization"] == "slaney" else None, dtype=np.float64)
    mel = spec @ fb.T
    g = c["logGuard"]
    feats = np.log(mel + g) if c["logGuardKind"] == "add" else np.log(np.maximum(mel, g))
    if c["normalization"] == "perFeature":                      # NeMo normalize_batch(per_feature)
        mean = feats.mean(axis=0)
        std = feats.std(axis=0, ddof=1) + 1e-5
        feats = (feats - mean) / std
    feats.astype("<f8").tofile(f"{out}/feats{i}.f64")
"""#

    /// (name, config): NeMo-like as the brief states it (periodic Hann), NeMo's own preset (symmetric Hann,
    /// no normalisation), Kaldi's fbank on int16-scaled samples, and an odd mix (non-power-of-two FFT,
    /// magnitude, HTK-scale librosa filters, no pre-emphasis, hop not dividing the window).
    static let configs: [(String, FrontendConfig)] = {
        var nemoPeriodic = FrontendConfig.nemo(normalization: .perFeature)
        nemoPeriodic.periodicWindow = true
        let nemo = FrontendConfig.nemo(melBins: 64, normalization: .none)
        let kaldi = FrontendConfig.kaldi(melBins: 80, sampleScale: 32768)
        var kaldiHamming = FrontendConfig.kaldi(melBins: 40)  // hamming's w[0] != 0 exposes the frame edge of pre-emphasis
        kaldiHamming.window = .hamming
        let mixed = FrontendConfig(windowLength: 400, hopLength: 123, fftSize: 400, melBins: 40, fMin: 60, fMax: 7000,
                                   preemphasis: nil, window: .hamming, periodicWindow: false,
                                   melScale: .htk, melTriangles: .linearInHertz, melNormalization: .none,
                                   power: 1, logGuard: 1e-10, logGuardKind: .clamp, center: true)
        let blackmanKaldiSlaney = FrontendConfig(windowLength: 320, hopLength: 160, fftSize: 512, melBins: 48, fMin: 0,
                                                 preemphasis: 0.9, preemphasisScope: .signal, window: .blackman,
                                                 periodicWindow: true, melScale: .slaney, melTriangles: .linearInMel,
                                                 melNormalization: .none, removeDCOffset: true, center: false)
        return [("nemo-periodic-perFeature", nemoPeriodic), ("nemo", nemo), ("kaldi", kaldi), ("kaldi-hamming", kaldiHamming),
                ("mixed-centred", mixed), ("blackman-dc-signalPreemph", blackmanKaldiSlaney)]
    }()

    @Test func logMelMatchesNumPyReference() throws {
        let signal = testSignal(seconds: 2.3)
        let dir = try PythonReference.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let signalURL = dir.appendingPathComponent("signal.f32")
        try PythonReference.writeFloat32(signal, to: signalURL)
        let configsJSON = try JSONEncoder().encode(Self.configs.map(\.1))
        try PythonReference.run(Self.script, arguments: [String(decoding: configsJSON, as: UTF8.self), signalURL.path, dir.path])

        for (i, (name, config)) in Self.configs.enumerated() {
            let frontend = try LogMelFrontend(config: config, mode: .offline)
            let features = frontend.compute(signal)
            let reference = try PythonReference.readFloat64(dir.appendingPathComponent("feats\(i).f64"))
            #expect(features.rows == config.frameCount(samples: signal.count), "\(name): frame count")
            try #require(reference.count == features.rows * features.cols,
                         "\(name): reference has \(reference.count / config.melBins) frames, frontend \(features.rows)")
            var worst = 0.0, at = 0
            for k in 0..<reference.count {
                let d = abs(Double(features.data[k]) - reference[k])
                if d > worst { worst = d; at = k }
            }
            print("log-mel vs NumPy, \(name): \(features.rows) frames x \(features.cols), max |diff| \(worst) at frame \(at / features.cols) bin \(at % features.cols)")
            #expect(worst <= 5e-4, "\(name): max |diff| \(worst) at frame \(at / features.cols) bin \(at % features.cols)")
        }
    }
}
