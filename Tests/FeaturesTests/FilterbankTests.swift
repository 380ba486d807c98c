import Foundation
import Testing
import Features

/// The mel filterbank and analysis windows against librosa/SciPy and a NumPy transcription of Kaldi's
/// `MelBanks`, all in float64.
///
/// Tolerance 1e-6 absolute: both sides compute in double precision, so the only difference is the final
/// rounding to float32 (at most 6e-8 for weights <= 1) plus a few ulps of differently ordered double
/// arithmetic. Slaney-normalised weights are ~1e-3..1e-2, so 1e-6 is still a 0.1% relative check
/// (the brief's 1e-5 would be too loose to catch a wrong area normalisation of a few percent).
@Suite struct FilterbankTests {
    struct Case: Codable {
        var sr: Int, nfft: Int, mels: Int, fmin: Float, fmax: Float?
        var htk: Bool, slaneyNorm: Bool, kaldi: Bool
    }

    static let cases: [Case] = [
        Case(sr: 16000, nfft: 512, mels: 80, fmin: 0, fmax: nil, htk: false, slaneyNorm: true, kaldi: false),
        Case(sr: 16000, nfft: 512, mels: 80, fmin: 0, fmax: nil, htk: true, slaneyNorm: false, kaldi: false),
        Case(sr: 16000, nfft: 512, mels: 80, fmin: 0, fmax: nil, htk: true, slaneyNorm: true, kaldi: false),
        Case(sr: 16000, nfft: 512, mels: 80, fmin: 0, fmax: nil, htk: false, slaneyNorm: false, kaldi: false),
        Case(sr: 8000, nfft: 256, mels: 40, fmin: 20, fmax: 3800, htk: false, slaneyNorm: true, kaldi: false),
        Case(sr: 22050, nfft: 2048, mels: 128, fmin: 0, fmax: 8000, htk: false, slaneyNorm: true, kaldi: false),
        Case(sr: 16000, nfft: 400, mels: 64, fmin: 125, fmax: 7600, htk: true, slaneyNorm: true, kaldi: false),
        Case(sr: 16000, nfft: 512, mels: 80, fmin: 20, fmax: nil, htk: true, slaneyNorm: false, kaldi: true),
        Case(sr: 16000, nfft: 512, mels: 23, fmin: 20, fmax: 7000, htk: true, slaneyNorm: false, kaldi: true),
        Case(sr: 8000, nfft: 256, mels: 40, fmin: 0, fmax: nil, htk: false, slaneyNorm: true, kaldi: true),
    ]

    struct WindowCase: Codable {
        var kind: String, n: Int, periodic: Bool
    }

    static let windowCases: [WindowCase] = WindowFunction.allCases.flatMap { kind in
        [400, 401, 1].flatMap { n in [true, false].map { WindowCase(kind: kind.rawValue, n: n, periodic: $0) } }
    }

    static let script = #"""
import json, sys
import numpy as np, scipy.signal, librosa

cases, windows, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]

def kaldi_mel_banks(sr, nfft, mels, fmin, fmax, htk, slaney_norm):
    # Kaldi's MelBanks (mel-computations.cc): triangles linear in mel, strict inequalities.
    if htk:
        mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
        hz = lambda m: 700.0 * (np.exp(m / 1127.0) - 1.0)
    else:
        mel = lambda f: librosa.hz_to_mel(f, htk=False)
        hz = lambda m: librosa.mel_to_hz(m, htk=False)
    lo, hi = mel(fmin), mel(fmax)
    delta = (hi - lo) / (mels + 1)
    w = np.zeros((mels, nfft // 2 + 1))
    bin_mel = mel(sr / nfft * np.arange(nfft // 2 + 1, dtype=np.float64))
    for b in range(mels):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        inside = (bin_mel > left) & (bin_mel < right)
        w[b] = np.where(inside, np.where(bin_mel <= center, (bin_mel - left) / (center - left),
                                         (right - bin_mel) / (right - center)), 0.0)
        if slaney_norm:
            w[b] *= 2.0 / (hz(right) - hz(left))
    return w

for i, c in enumerate(cases):
    fmax = c.get("fmax") or c["sr"] / 2
    if c["kaldi"]:
        w = kaldi_mel_banks(c["sr"], c["nfft"], c["mels"], c["fmin"], fmax, c["htk"], c["slaneyNorm"])
    else:
        w = librosa.filters.mel(sr=c["sr"], n_fft=c["nfft"], n_mels=c["mels"], fmin=c["fmin"], fmax=fmax,
                                htk=c["htk"], norm="slaney" if c["slaneyNorm"] else None, dtype=np.float64)
    w.astype("<f8").tofile(f"{out}/mel{i}.f64")

for i, c in enumerate(windows):
    n, periodic = c["n"], c["periodic"]
    if c["kind"] == "povey":
        # Kaldi: pow(0.5 - 0.5 cos(2 pi i / (N - 1)), 0.85)
        w = scipy.signal.get_window("hann", n, fftbins=periodic) ** 0.85
    else:
        name = {"hann": "hann", "hamming": "hamming", "blackman": "blackman",
                "bartlett": "bartlett", "rectangular": "boxcar"}[c["kind"]]
        w = scipy.signal.get_window(name, n, fftbins=periodic)
    np.asarray(w, dtype="<f8").tofile(f"{out}/win{i}.f64")
"""#

    @Test func filterbanksAndWindowsMatchLibrosaScipyAndKaldi() throws {
        let dir = try PythonReference.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let encoder = JSONEncoder()
        try PythonReference.run(Self.script, arguments: [
            String(decoding: try encoder.encode(Self.cases), as: UTF8.self),
            String(decoding: try encoder.encode(Self.windowCases), as: UTF8.self),
            dir.path,
        ])
        for (i, c) in Self.cases.enumerated() {
            let bank = try MelFilterbank(sampleRate: c.sr, fftSize: c.nfft, melBins: c.mels, fMin: c.fmin, fMax: c.fmax,
                                         scale: c.htk ? .htk : .slaney, normalization: c.slaneyNorm ? .slaney : .none,
                                         triangles: c.kaldi ? .linearInMel : .linearInHertz)
            let reference = try PythonReference.readFloat64(dir.appendingPathComponent("mel\(i).f64"))
            try #require(bank.weights.rows == c.mels && bank.weights.cols == c.nfft / 2 + 1)
            try #require(reference.count == bank.weights.data.count, "case \(i): reference has \(reference.count) weights")
            var worst = 0.0
            for k in 0..<reference.count { worst = max(worst, abs(Double(bank.weights.data[k]) - reference[k])) }
            #expect(worst <= 1e-6, "filterbank case \(i) \(c): max |diff| \(worst)")
            // The sparse ranges must cover every nonzero weight.
            for m in 0..<c.mels {
                for k in 0..<bank.weights.cols where bank.weights[m, k] != 0 {
                    #expect(k >= bank.firstBin[m] && k < bank.endBin[m], "case \(i): filter \(m) bin \(k) outside its range")
                }
            }
        }
        for (i, c) in Self.windowCases.enumerated() {
            let w = WindowFunction(rawValue: c.kind)!.coefficients(length: c.n, periodic: c.periodic)
            let reference = try PythonReference.readFloat64(dir.appendingPathComponent("win\(i).f64"))
            try #require(reference.count == w.count)
            let worst = zip(w, reference).map { abs(Double($0) - $1) }.max() ?? 0
            #expect(worst <= 1e-6, "window \(c): max |diff| \(worst)")
        }
    }

    @Test func slaneyNormalisedFiltersHaveEqualAreaInHertz() throws {
        // A property independent of any reference: with area normalisation each triangle integrates to 1
        // over Hz (2 / width * width / 2), so the sum of weights times the bin spacing is ~1 for filters
        // wide enough to be sampled by many bins.
        let bank = try MelFilterbank(sampleRate: 16000, fftSize: 4096, melBins: 40, scale: .slaney, normalization: .slaney)
        let binHz = 16000.0 / 4096
        for m in 0..<40 {
            let area = bank.weights.row(m).reduce(0.0) { $0 + Double($1) } * binHz
            #expect(abs(area - 1) < 0.05, "filter \(m) area \(area)")
        }
    }
}
