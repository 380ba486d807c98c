import Features
import Foundation
import Testing
import Tensors
@testable import Training

@Suite struct AugmentationTests {
    /// Features that are never equal to the fill value, so masked cells are recognisable.
    func features(frames: Int, bins: Int) -> Matrix {
        Matrix(rows: frames, cols: bins, data: (0..<(frames * bins)).map { Float($0 % 97) + 1 })
    }

    @Test func masksRespectWidthLimitsAndTimeBudget() {
        let aug = SpecAugment(frequencyMasks: 2, maxFrequencyWidth: 5, timeMasks: 3, maxTimeWidth: 30,
                              maxTimeProportion: 0.1, fill: .value(-100))
        var rng = SplitMix64(seed: 1)
        var sawMask = false
        for _ in 0..<50 {
            var m = features(frames: 200, bins: 40)
            aug.apply(to: &m, using: &rng)
            let maskedBins = (0..<40).filter { f in (0..<200).allSatisfy { m[$0, f] == -100 } }
            let maskedFrames = (0..<200).filter { t in m.row(t).allSatisfy { $0 == -100 } }
            #expect(maskedBins.count <= 10)
            #expect(maskedFrames.count <= 20, "10% of 200 frames")
            // Every masked cell lies in a fully masked row or column (masks are bands, nothing else changes).
            for t in 0..<200 { for f in 0..<40 where m[t, f] == -100 {
                #expect(maskedBins.contains(f) || maskedFrames.contains(t))
            } }
            sawMask = sawMask || (!maskedBins.isEmpty && !maskedFrames.isEmpty)
        }
        #expect(sawMask)
    }

    @Test func utteranceMeanFillUsesTheMatrixMean() {
        var m = Matrix(rows: 4, cols: 3, data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        var rng = SplitMix64(seed: 3)
        SpecAugment(frequencyMasks: 1, maxFrequencyWidth: 3, timeMasks: 0, fill: .utteranceMean).apply(to: &m, using: &rng)
        let changed = m.data.enumerated().filter { $0.element != Float($0.offset + 1) }
        #expect(changed.allSatisfy { $0.element == 6.5 })
    }

    @Test func savedGeneratorStateReproducesTheSameMasks() throws {
        let aug = SpecAugment(frequencyMasks: 2, maxFrequencyWidth: 8, timeMasks: 2, maxTimeWidth: 20, maxTimeProportion: 0.3)
        var rng = SplitMix64(seed: 42)
        var warm = features(frames: 100, bins: 20)
        aug.apply(to: &warm, using: &rng)
        let saved = rng.stateTensor
        var a = features(frames: 100, bins: 20), b = a
        aug.apply(to: &a, using: &rng)
        var resumed = try SplitMix64(stateTensor: saved)
        aug.apply(to: &b, using: &resumed)
        #expect(a == b)
        #expect(resumed == rng)
        #expect(throws: TrainingError.self) { try SplitMix64(stateTensor: Tensor(shape: [4], data: [1, 2, 3, 70000])) }
    }

    @Test func splitMix64MatchesPublishedSequence() {
        // First outputs for seed 1234567 from the reference C implementation (Vigna, prng.di.unimi.it).
        var rng = SplitMix64(seed: 1_234_567)
        #expect(rng.next() == 6_457_827_717_110_365_317)
        #expect(rng.next() == 3_203_168_211_198_807_973)
    }

    @Test func noiseIsMixedAtTheTargetSNR() {
        var rng = SplitMix64(seed: 9)
        let clean = (0..<16000).map { Float(sin(Double($0) * 0.05)) * 0.3 }
        let noise = (0..<5000).map { _ in Float.random(in: -1...1, using: &rng) }
        for snr: Float in [0, 10, 25] {
            var mixed = clean
            mixNoise(into: &mixed, noise: noise, snrDB: snr, using: &rng)
            var ps = 0.0, pn = 0.0
            for i in 0..<clean.count {
                ps += Double(clean[i]) * Double(clean[i])
                let d = Double(mixed[i] - clean[i]); pn += d * d
            }
            // Float rounding of the mixture perturbs the recovered noise by ~1e-7 relative: 1e-3 dB is ample.
            #expect(abs(10 * log10(ps / pn) - Double(snr)) < 1e-3)
        }
    }

    @Test(arguments: [0.9, 1.1])
    func speedPerturbationShiftsAToneByTheFactor(factor: Double) throws {
        let rate = 16000.0, hz = 440.0
        let x = (0..<8000).map { Float(sin(2 * Double.pi * hz * Double($0) / rate)) }
        let y = try speedPerturb(x, factor: factor)
        #expect(y.count == Int((8000 / factor).rounded(.up)))
        // Away from the edges (where the sinc filter sees the zeros beyond the signal) the output is the tone
        // at hz * factor. libsamplerate's passband ripple is ~1e-4 (medium quality); allow 2e-3.
        var maxError = 0.0
        for j in 100..<(y.count - 100) {
            maxError = max(maxError, abs(Double(y[j]) - sin(2 * Double.pi * hz * factor * Double(j) / rate)))
        }
        #expect(maxError < 2e-3, "max error \(maxError)")
    }

    @Test func speedingUpFiltersContentAboveTheNewNyquist() throws {
        // At factor 1.25 a 7 kHz tone would land at 8.75 kHz, above 8 kHz: it must be removed, not aliased.
        let x = (0..<8000).map { Float(sin(2 * Double.pi * 7000 * Double($0) / 16000)) }
        let y = try speedPerturb(x, factor: 1.25)
        let rms = (y[100..<(y.count - 100)].map { Double($0) * Double($0) }.reduce(0, +) / Double(y.count - 200)).squareRoot()
        #expect(rms < 0.01, "rms \(rms)")
    }

    @Test func invalidSpeedFactorIsReported() {
        #expect(throws: TrainingError.self) { try speedPerturb([1, 2, 3], factor: 0) }
        #expect(throws: TrainingError.self) { try speedPerturb([1, 2, 3], factor: .nan) }
    }

    /// Linear interpolation is exact on a spectrum linear in the bin, so every output bin must equal
    /// the line at f / factor, and the top bin's value past the end.
    @Test(arguments: [Float(0.85), 1.0, 1.2])
    func frequencyWarpReadsBinFOverFactor(factor: Float) {
        let bins = 40, frames = 3
        let x = Matrix(rows: frames, cols: bins, data: (0..<(frames * bins)).map { Float($0 / bins) * 100 + 0.5 * Float($0 % bins) - 3 })
        let y = FrequencyWarp(factor: factor).apply(to: x)
        for t in 0..<frames {
            for f in 0..<bins {
                let source = min(Double(f) / Double(factor), Double(bins - 1))
                let expected = Double(t) * 100 + 0.5 * source - 3
                #expect(abs(Double(y[t, f]) - expected) < 1e-4, "frame \(t) bin \(f): \(y[t, f]) against \(expected)")
            }
        }
    }

    /// A formant-like peak moves up by the factor: a factor above 1 is a shorter vocal tract.
    @Test func frequencyWarpMovesAPeakByTheFactor() {
        let bins = 80
        let peak = (0..<bins).map { f in Float(exp(-pow(Double(f) - 30, 2) / 8)) }
        let y = FrequencyWarp(factor: 1.2).apply(to: Matrix(rows: 1, cols: bins, data: peak))
        let centroid = (0..<bins).map { Double($0) * Double(y[0, $0]) }.reduce(0, +) / y.data.map(Double.init).reduce(0, +)
        #expect(abs(centroid - 36) < 0.1, "centroid \(centroid)")
    }

    /// The equaliser adds one curve to every frame; in power terms it multiplies each mel bin by
    /// 10^(dB/10), so adding it to the log-mels of a scaled spectrum equals the log-mels of the scaled
    /// spectrum. Checked against the curve's definition written out here.
    @Test func spectralShapeAddsOneSmoothBoundedCurveToEveryFrame() {
        let bins = 80, frames = 4
        var rng = SplitMix64(seed: 9)
        var check = SplitMix64(seed: 9)
        let shape = SpectralShape.random(bins: bins, decibels: 6, using: &rng)
        let a = (1...3).map { k in Double.random(in: -6.0...6.0, using: &check) / Double(k) }
        for f in 0..<bins {
            let x = Double.pi * Double(f) / Double(bins - 1)
            let db: Double = a[0] * cos(x) + a[1] * cos(2 * x) + a[2] * cos(3 * x)
            let expected: Double = db * log(10.0) / 10
            let got = Double(shape.gains[f])
            #expect(abs(got - expected) < 1e-5, "bin \(f)")
            let bound: Double = 6 * (1 + 0.5 + 1.0 / 3)
            #expect(abs(db) <= bound + 1e-9)
        }
        let x = Matrix(rows: frames, cols: bins, data: (0..<(frames * bins)).map { Float($0 % 7) - 2 })
        let y = shape.apply(to: x)
        for t in 0..<frames {
            for f in 0..<bins {
                let expected: Float = x[t, f] + shape.gains[f]
                #expect(y[t, f] == expected)
            }
        }
        // Zero decibels is the identity.
        #expect(SpectralShape.random(bins: bins, decibels: 0, using: &rng).apply(to: x) == x)
    }

    /// 0.3 s of near-silence (white noise 60 dB down), 0.5 s of a 300 Hz tone, 0.4 s of near-silence,
    /// at 16 kHz: the speech is samples 4800 ..< 12800.
    static func toneBetweenSilences() -> [Float] {
        var rng = SplitMix64(seed: 3)
        return (0..<19_200).map { i in
            let floor = Float.random(in: -1...1, using: &rng) * 0.0005
            return (4800..<12800).contains(i) ? 0.5 * Float(sin(2 * Double.pi * 300 * Double(i) / 16_000)) + floor : floor
        }
    }

    @Test func silenceIsTrimmedToTheSpeechPlusTheMargins() throws {
        let x = Self.toneBetweenSilences()
        let bounds = try #require(speechBounds(x, sampleRate: 16_000))
        // Within one 10 ms frame of the truth.
        #expect(abs(bounds.lowerBound - 4800) <= 160 && abs(bounds.upperBound - 12_800) <= 160, "\(bounds)")
        let tight = trimSilence(x, sampleRate: 16_000, leading: 0, trailing: 0)
        #expect(tight == Array(x[bounds]))
        let margins = trimSilence(x, sampleRate: 16_000, leading: 0.05, trailing: 0.02)
        #expect(margins == Array(x[(bounds.lowerBound - 800)..<(bounds.upperBound + 320)]))
        // Margins wider than the silence keep the whole edge, never more.
        #expect(trimSilence(x, sampleRate: 16_000, leading: 1, trailing: 1) == x)
    }

    @Test func soundWithoutQuietEdgesIsLeftAlone() {
        var rng = SplitMix64(seed: 5)
        let noise = (0..<16_000).map { _ in Float.random(in: -0.3...0.3, using: &rng) }
        #expect(speechBounds(noise, sampleRate: 16_000) == nil)
        #expect(trimSilence(noise, sampleRate: 16_000, leading: 0, trailing: 0) == noise)
        let silent = [Float](repeating: 0, count: 8000)
        #expect(trimSilence(silent, sampleRate: 16_000, leading: 0, trailing: 0) == silent)
        #expect(trimSilence([], sampleRate: 16_000, leading: 0, trailing: 0) == [])
        // Loud at both ends with a pause between (and a partial last frame): nothing is an edge.
        let pause = Self.toneBetweenSilences()
        let loudEnds = Array(pause[4800..<12_800]) + Array(pause[0..<4800]) + Array(pause[4800..<12_850])
        #expect(trimSilence(loudEnds, sampleRate: 16_000, leading: 0, trailing: 0) == loudEnds)
    }

    @Test func aCutThatWouldLeaveTooLittleForTheLabelsIsNotMade() {
        let x = Self.toneBetweenSilences()
        // The speech is 8000 samples: a minimum above what the cut leaves keeps the whole utterance.
        #expect(trimSilence(x, sampleRate: 16_000, leading: 0, trailing: 0, minimumSamples: 9000) == x)
        #expect(trimSilence(x, sampleRate: 16_000, leading: 0, trailing: 0, minimumSamples: 7000).count < 8400)
    }
}
