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
/// together, by band-limited resampling to `count / factor` samples at the same rate.
///
/// Windowed-sinc interpolation (Blackman window, 32 zero crossings each side, so the transition band is
/// about 1.1 kHz wide at 16 kHz). The cut-off is 0.95 of the lower of the two Nyquist frequencies: when
/// speeding up, content above the new Nyquist is filtered rather than aliased; when slowing down, the
/// interpolation images are suppressed.
/// This is a self-contained stand-in: the integrator may switch it to the Audio module's libsamplerate
/// resampler once that exists.
public func speedPerturb(_ samples: [Float], factor: Double) -> [Float] {
    precondition(factor > 0, "speed factor must be positive, got \(factor)")
    let n = samples.count
    let outCount = Int((Double(n) / factor).rounded())
    guard n > 0, outCount > 0 else { return [] }
    if factor == 1 { return samples }
    let zeroCrossings = 32.0
    let cutoff = 0.95 * min(1, 1 / factor) // fraction of the input Nyquist frequency
    let halfWidth = zeroCrossings / cutoff // filter half-length in input samples
    var out = [Float](repeating: 0, count: outCount)
    samples.withUnsafeBufferPointer { x in
        for j in 0..<outCount {
            let centre = Double(j) * factor
            let lo = max(0, Int((centre - halfWidth).rounded(.up)))
            let hi = min(n - 1, Int((centre + halfWidth).rounded(.down)))
            guard lo <= hi else { continue }
            var acc = 0.0
            for i in lo...hi {
                let d = Double(i) - centre
                let arg = Double.pi * cutoff * d
                let sinc = abs(arg) < 1e-9 ? 1 : sin(arg) / arg
                let w = d / halfWidth // -1...1
                let window = 0.42 + 0.5 * cos(Double.pi * w) + 0.08 * cos(2 * Double.pi * w)
                acc += Double(x[i]) * cutoff * sinc * window
            }
            out[j] = Float(acc)
        }
    }
    return out
}
