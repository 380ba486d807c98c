import Foundation
import Testing
import Features
import Tensors

/// Streaming must give exactly (bit for bit) the frames of the whole-signal computation, whatever the
/// chunking: the frontend's per-sample state (pre-emphasis, dither) runs in sample order and each frame is
/// computed by the same code from the same samples.
@Suite struct StreamingTests {
    static let configs: [(String, FrontendConfig, FeatureNormalization?)] = {
        var dithered = FrontendConfig.nemo(normalization: .global)
        dithered.dither = 1e-3
        let stats = FeatureNormalization(mean: (0..<80).map { -8 + Float($0) * 0.05 }, std: (0..<80).map { 1.5 + Float($0) * 0.01 })
        let odd = FrontendConfig(windowLength: 301, hopLength: 97, fftSize: 511, melBins: 33, fMin: 50, fMax: 7500,
                                 preemphasis: 0.95, window: .bartlett, periodicWindow: false, power: 1.5, center: true)
        let hopBeyondWindow = FrontendConfig(windowLength: 200, hopLength: 320, fftSize: 256, melBins: 20, center: false)
        var kaldiDithered = FrontendConfig.kaldi(sampleScale: 32768)
        kaldiDithered.dither = 1
        return [
            ("base", FrontendConfig(), nil),
            ("nemo-centred", .nemo(normalization: .none), nil),
            ("nemo-dither-global", dithered, stats),
            ("kaldi-dither", kaldiDithered, nil),
            ("odd-sizes-centred", odd, nil),
            ("hop-beyond-window", hopBeyondWindow, nil),
        ]
    }()

    @Test(arguments: 0..<configs.count)
    func streamingEqualsOfflineForAnyChunking(configIndex: Int) throws {
        let (name, config, stats) = Self.configs[configIndex]
        let signal = testSignal(seconds: 3.1, seed: 7)
        let offline = try LogMelFrontend(config: config, normalization: stats, ditherSeed: 42).compute(signal)
        #expect(offline.rows == config.frameCount(samples: signal.count))

        var random = TestRandom(seed: UInt64(configIndex) + 100)
        let stream = try LogMelFrontend(config: config, normalization: stats, ditherSeed: 42)
        for round in 0..<3 {
            // round 0: sizes mostly tiny (0 and 1 included); 1: mixed; 2: large chunks.
            var streamed = Matrix(rows: 0, cols: config.melBins)
            var position = 0
            while position < signal.count {
                let size: Int = switch (round, random.int(0...9)) {
                case (0, 0...2): 0
                case (0, 3...5): 1
                case (0, _): random.int(2...40)
                case (1, 0): 0
                case (1, 1): 1
                case (1, 2...5): random.int(2...300)
                case (1, _): random.int(300...5000)
                default: random.int(1000...40000)
                }
                let end = min(signal.count, position + size)
                signal[position..<end].withUnsafeBufferPointer { stream.accept($0) }
                position = end
                if random.int(0...3) == 0 { streamed.append(rowsOf: stream.pullFrames()) }
            }
            stream.accept([])
            stream.finish()
            streamed.append(rowsOf: stream.pullFrames())
            #expect(streamed.rows == offline.rows, "\(name) round \(round): \(streamed.rows) frames streamed, \(offline.rows) offline")
            let identical = streamed == offline  // not expanded by #expect: the matrices are large
            #expect(identical, "\(name) round \(round): streamed frames differ, max |diff| \(streamed.rows == offline.rows ? streamed.maxAbsDifference(offline) : .infinity)")
            stream.reset()
        }
    }

    @Test func perFeatureOfflineStreamingEqualsComputeAndWaitsForFinish() throws {
        let config = FrontendConfig.nemo(normalization: .perFeature)
        let signal = testSignal(seconds: 1.5, seed: 3)
        let whole = try LogMelFrontend(config: config, mode: .offline).compute(signal)
        let frontend = try LogMelFrontend(config: config, mode: .offline)
        var random = TestRandom(seed: 5)
        var position = 0
        while position < signal.count {
            let end = min(signal.count, position + random.int(0...3000))
            frontend.accept(Array(signal[position..<end]))
            position = end
            #expect(frontend.pullFrames().rows == 0, "per-utterance normalisation cannot release frames before finish")
        }
        frontend.finish()
        let identical = frontend.pullFrames() == whole
        #expect(identical, "per-feature normalised frames streamed offline differ from compute")
    }

    @Test func framesAreReleasedAsSoonAsTheirWindowIsComplete() throws {
        // Non-centred: after N samples exactly frameCount(N) frames are out. Centred: every frame whose
        // window (ending windowLength/2 past its centre) is complete.
        for center in [false, true] {
            var config = FrontendConfig()
            config.center = center
            let frontend = try LogMelFrontend(config: config)
            let signal = testSignal(seconds: 0.5)
            var released = 0
            for n in stride(from: 0, to: signal.count, by: 37) {
                let end = min(signal.count, n + 37)
                frontend.accept(Array(signal[n..<end]))
                released += frontend.pullFrames().rows
                let expected = center
                    ? (end >= config.windowLength / 2 ? (end - config.windowLength / 2) / config.hopLength + 1 : 0)
                    : config.frameCount(samples: end)
                #expect(released == max(0, expected), "center \(center), \(end) samples: \(released) frames released, expected \(expected)")
            }
        }
    }

    @Test func finishIsIdempotentAndResetStartsANewUtterance() throws {
        let signal = testSignal(seconds: 0.4)
        let frontend = try LogMelFrontend(config: .nemo(normalization: .none))
        let whole = frontend.compute(signal)
        frontend.reset()
        frontend.accept(signal)
        frontend.finish()
        frontend.finish()
        #expect(frontend.isFinished && frontend.samplesAccepted == signal.count)
        #expect(frontend.pullFrames().rows == whole.rows)
        #expect(frontend.pullFrames().rows == 0, "frames are handed out once")
        frontend.reset()
        #expect(!frontend.isFinished && frontend.samplesAccepted == 0 && frontend.framesComputed == 0)
        frontend.finish()
        #expect(frontend.pullFrames().rows == 0, "an empty utterance has no frames, centred or not")
    }

    @Test func acceptAfterFinishIsAProgrammingError() async {
        await #expect(processExitsWith: .failure) {
            let frontend = try LogMelFrontend(config: FrontendConfig())
            frontend.finish()
            frontend.accept([0])
        }
    }

    @Test func frameCountFollowsTheDocumentedRule() throws {
        let sizes = [0, 1, 2, 159, 160, 161, 255, 256, 257, 399, 400, 401, 559, 560, 561, 16000, 16001]
        for center in [false, true] {
            for fft in [512, 511] {
                var config = FrontendConfig()
                config.center = center
                config.fftSize = fft
                let frontend = try LogMelFrontend(config: config)
                for n in sizes {
                    let expected: Int
                    if center {
                        expected = n == 0 ? 0 : 1 + (n + 2 * (fft / 2) - fft) / 160
                    } else {
                        expected = n >= 400 ? 1 + (n - 400) / 160 : 0
                    }
                    #expect(LogMelFrontend.frameCount(samples: n, config: config) == expected, "center \(center) fft \(fft) n \(n)")
                    #expect(frontend.compute(testSignal(seconds: Double(n) / 16000)).rows == expected, "center \(center) fft \(fft) n \(n)")
                }
            }
        }
        #expect(try LogMelFrontend(config: FrontendConfig()).framesPerSecond == 100)
    }

    @Test func ditherDependsOnlyOnTheSeed() throws {
        var config = FrontendConfig()
        config.dither = 1e-3
        let signal = testSignal(seconds: 0.5)
        let a = try LogMelFrontend(config: config, ditherSeed: 1)
        let first = a.compute(signal)
        #expect(a.compute(signal) == first, "compute resets, so it re-seeds the dither")
        #expect(try LogMelFrontend(config: config, ditherSeed: 1).compute(signal) == first)
        let other = try LogMelFrontend(config: config, ditherSeed: 2).compute(signal)
        #expect(other != first)
        // Past the leading digital silence (where dither is all there is) it only perturbs the signal:
        // on average by little, though bins with almost no signal energy may move more.
        let x: [Float] = first.rows(8..<first.rows).data, y: [Float] = other.rows(8..<other.rows).data
        var total = 0.0
        for i in 0..<x.count { total += Double(abs(x[i] - y[i])) }
        let meanDifference = total / Double(x.count)
        #expect(meanDifference < 0.05, "dither 1e-3 must not swamp a signal of amplitude ~0.3: mean |diff| \(meanDifference)")
    }

    @Test func ditherAddsGaussianNoiseOfTheConfiguredLevel() throws {
        // On digital silence the dithered frames are white noise of variance d^2, so a filter's expected
        // output is d^2 * sum(window^2) * sum(filter weights) (E|X_k|^2 = d^2 sum w^2 for every bin).
        // Averaged over 2000 frames the estimate is within a few percent.
        let d: Float = 0.01
        let config = FrontendConfig(melBins: 10, preemphasis: nil, window: .hann, melNormalization: .none,
                                    logGuard: 1e-30, dither: d)
        let features = try LogMelFrontend(config: config, ditherSeed: 9).compute([Float](repeating: 0, count: 160 * 2000 + 240))
        let window = WindowFunction.hann.coefficients(length: 400, periodic: true)
        let energy = window.reduce(0.0) { $0 + Double($1 * $1) }
        let filters = try MelFilterbank(config: config)
        for m in 0..<10 {
            var mean = 0.0
            for t in 0..<features.rows { mean += exp(Double(features[t, m])) }
            mean /= Double(features.rows)
            let expected = Double(d * d) * energy * filters.weights.row(m).reduce(0.0) { $0 + Double($1) }
            #expect(abs(mean / expected - 1) < 0.1, "filter \(m): mean power \(mean), expected \(expected)")
        }
    }

    @Test func frontendsCanBeCreatedAndRunConcurrently() async throws {
        // Plan creation and destruction go through the FFTW planner lock; execution is per instance.
        let signal = testSignal(seconds: 1)
        let expected = try LogMelFrontend(config: .nemo(normalization: .none)).compute(signal)
        let results = try await withThrowingTaskGroup(of: Matrix.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var last = Matrix(rows: 0, cols: 0)
                    for _ in 0..<5 { last = try LogMelFrontend(config: .nemo(normalization: .none)).compute(signal) }
                    return last
                }
            }
            return try await group.reduce(into: [Matrix]()) { $0.append($1) }
        }
        #expect(results.count == 8)
        for r in results { let identical = r == expected; #expect(identical) }
    }
}
