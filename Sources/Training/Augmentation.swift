import Audio
import Features
import Foundation
import Tensors

/// SpecAugment (Park et al., 2019) without time warping: frequency and time bands of a feature matrix
/// (frames x mel bins) replaced by a constant. Owns only its configuration; randomness comes from the
/// caller's generator so a checkpointed `SplitMix64` reproduces the masks exactly.
public struct SpecAugment: Sendable, Equatable, Codable {
    /// What masked cells are set to.
    public enum Fill: Sendable, Equatable, Codable {
        /// A fixed value (0 suits features normalised to zero mean).
        case value(Float)
        /// The mean of the whole feature matrix, so masking does not shift the level of un-normalised log-mels.
        case utteranceMean
    }

    public var frequencyMasks: Int
    /// Each frequency mask covers `0...maxFrequencyWidth` bins, uniformly.
    public var maxFrequencyWidth: Int
    public var timeMasks: Int
    /// Each time mask covers `0...maxTimeWidth` frames, uniformly (capped as below).
    public var maxTimeWidth: Int
    /// Upper bound on the fraction of frames masked, summed over the time masks, so short utterances are
    /// not wiped out (the paper's `p`). Widths are drawn first and then cut to the remaining budget.
    public var maxTimeProportion: Float
    public var fill: Fill

    public init(frequencyMasks: Int = 2, maxFrequencyWidth: Int = 27, timeMasks: Int = 2, maxTimeWidth: Int = 40,
                maxTimeProportion: Float = 0.2, fill: Fill = .utteranceMean) {
        self.frequencyMasks = frequencyMasks; self.maxFrequencyWidth = maxFrequencyWidth
        self.timeMasks = timeMasks; self.maxTimeWidth = maxTimeWidth
        self.maxTimeProportion = maxTimeProportion; self.fill = fill
    }

    /// Masks `features` (frames x bins, row-major) in place.
    public func apply(to features: inout Matrix, using rng: inout some RandomNumberGenerator) {
        let T = features.rows, F = features.cols
        guard T > 0 && F > 0 else { return }
        let value: Float
        switch fill {
        case .value(let v): value = v
        case .utteranceMean:
            var sum = 0.0
            for x in features.data { sum += Double(x) }
            value = Float(sum / Double(features.data.count))
        }
        features.data.withUnsafeMutableBufferPointer { d in
            for _ in 0..<frequencyMasks {
                let width = Int.random(in: 0...min(maxFrequencyWidth, F), using: &rng)
                let start = Int.random(in: 0...(F - width), using: &rng)
                for t in 0..<T { for f in start..<(start + width) { d[t * F + f] = value } }
            }
            var budget = Int((maxTimeProportion * Float(T)).rounded(.down))
            for _ in 0..<timeMasks {
                let width = min(Int.random(in: 0...min(maxTimeWidth, T), using: &rng), budget)
                budget -= width
                let start = Int.random(in: 0...(T - width), using: &rng)
                for i in (start * F)..<((start + width) * F) { d[i] = value }
            }
        }
    }
}

/// Vocal tract length perturbation (Jaitly & Hinton, 2013) done on log-mel features: each frame's
/// spectrum is stretched along the mel axis, so bin `f` takes the value at bin `f / factor` (linear
/// interpolation; past the top bin, the top bin's value). A factor above 1 moves formants up, as a
/// shorter vocal tract does. On the mel scale a linear warp is only an approximation of scaling
/// hertz, but the point is a plausible new speaker, not an exact one; it is applied before the
/// global normalisation, whose per-bin statistics would otherwise be moved with the bins.
public struct FrequencyWarp: Sendable, Equatable {
    public var factor: Float

    public init(factor: Float) { self.factor = factor }

    public func apply(to features: Matrix) -> Matrix {
        let T = features.rows, F = features.cols
        guard F > 1, factor != 1 else { return features }
        var out = Matrix(rows: T, cols: F)
        // Source positions are the same for every frame.
        var lower = [Int](repeating: 0, count: F), weight = [Float](repeating: 0, count: F)
        for f in 0..<F {
            let source = min(Float(f) / factor, Float(F - 1))
            let i = min(Int(source), F - 2)
            lower[f] = i; weight[f] = source - Float(i)
        }
        features.data.withUnsafeBufferPointer { x in
            out.data.withUnsafeMutableBufferPointer { y in
                for t in 0..<T {
                    let row = t * F
                    for f in 0..<F {
                        let a = x[row + lower[f]], b = x[row + lower[f] + 1]
                        y[row + f] = a + weight[f] * (b - a)
                    }
                }
            }
        }
        return out
    }
}

/// Random equalisation of log-mel features: the same smooth curve is added to every frame, as a voice's
/// timbre or a microphone's response would colour the spectrum. The curve is a sum of three cosines along
/// the mel axis, `sum_k a_k cos(pi k f / (F - 1))`, with `a_k` drawn in `[-decibels, decibels] / k`, so
/// the broad tilt varies most and finer ripples less (at most about 1.8 x `decibels` in all). Applied
/// to natural-log mel power, before the global normalisation, like `FrequencyWarp`.
public struct SpectralShape: Sendable, Equatable {
    /// The curve per mel bin, in natural-log power units (dB x ln 10 / 10).
    public var gains: [Float]

    public init(gains: [Float]) { self.gains = gains }

    public static func random(bins: Int, decibels: Double, using rng: inout some RandomNumberGenerator) -> SpectralShape {
        let amplitudes = (1...3).map { k in Double.random(in: -decibels...decibels, using: &rng) / Double(k) }
        let toLog = log(10.0) / 10
        return SpectralShape(gains: (0..<bins).map { f in
            let x = bins > 1 ? Double.pi * Double(f) / Double(bins - 1) : 0
            var db = 0.0
            for (i, a) in amplitudes.enumerated() { db += a * cos(Double(i + 1) * x) }
            return Float(db * toLog)
        })
    }

    public func apply(to features: Matrix) -> Matrix {
        precondition(features.cols == gains.count, "spectral shape for \(gains.count) bins applied to \(features.cols)")
        var out = features
        out.data.withUnsafeMutableBufferPointer { y in
            for t in 0..<features.rows {
                for f in 0..<gains.count { y[t * gains.count + f] += gains[f] }
            }
        }
        return out
    }
}

/// Adds `noise` to `signal` scaled so that signal power / added-noise power is `snrDB` decibels.
///
/// The noise starts at a random offset and wraps around when shorter than the signal, so one long noise
/// recording yields many different mixtures. Silent signals or noise are left unchanged (no SNR is defined).
public func mixNoise(into signal: inout [Float], noise: [Float], snrDB: Float,
                     using rng: inout some RandomNumberGenerator) {
    guard !signal.isEmpty, !noise.isEmpty else { return }
    let offset = Int.random(in: 0..<noise.count, using: &rng)
    var signalPower = 0.0, noisePower = 0.0
    for x in signal { signalPower += Double(x) * Double(x) }
    for i in 0..<signal.count {
        let n = Double(noise[(offset + i) % noise.count])
        noisePower += n * n
    }
    guard signalPower > 0, noisePower > 0 else { return }
    let gain = Float((signalPower / (noisePower * pow(10, Double(snrDB) / 10))).squareRoot())
    for i in 0..<signal.count { signal[i] += gain * noise[(offset + i) % noise.count] }
}

/// Speed perturbation: plays `samples` `factor` times faster (0.9-1.1 typical), changing tempo and pitch
/// together, as Kaldi/ESPnet recipes do: the audio is treated as if recorded at `factor` times its rate and
/// resampled back, giving `ceil(count / factor)` samples at the original rate.
///
/// Uses the Audio module's libsamplerate converter (`.medium`: flat to 90 % of the lower Nyquist
/// frequency, aliases rejected by ~97 dB), so speeding up filters out what would fold over the new Nyquist.
/// Only the ratio matters to libsamplerate; the factor is resolved to 1/10000.
public func speedPerturb(_ samples: [Float], factor: Double) throws(TrainingError) -> [Float] {
    guard factor > 0, factor.isFinite else { throw .augmentation("speed factor must be a positive number, got \(factor)") }
    let base = 10_000
    let from = Int((factor * Double(base)).rounded())
    if from == base { return samples }
    do { return try Resampler.resample(samples, from: from, to: base) }
    catch { throw .augmentation("speed perturbation by \(factor) failed: \(error)") }
}

/// Edge trimming: the utterance cut to its speech (`speechBounds`) plus margins of `leading` and
/// `trailing` seconds, as a recording cut tightly around its words begins and ends (FSDD's digits,
/// clips from a voice-activity detector). A model trained only on utterances padded with silence hears
/// speech that starts at the first sample badly: its first and last frames see the encoder's zero padding
/// right after a sound. Unchanged when nothing is quiet enough to be an edge.
/// Unchanged too when the cut would leave fewer than `minimumSamples` (a CTC target needs its frames).
public func trimSilence(_ samples: [Float], sampleRate: Int, leading: Double, trailing: Double,
                        minimumSamples: Int = 0) -> [Float] {
    guard let speech = speechBounds(samples, sampleRate: sampleRate) else { return samples }
    let start = max(0, speech.lowerBound - Int(leading * Double(sampleRate)))
    let end = min(samples.count, speech.upperBound + Int(trailing * Double(sampleRate)))
    guard end - start >= minimumSamples else { return samples }
    return Array(samples[start..<end])
}
