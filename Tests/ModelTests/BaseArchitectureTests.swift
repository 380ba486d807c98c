import Foundation
import Testing
import Tensors
@testable import Model

@Suite struct BaseArchitectureTests {
    @Test func defaultEncoderHasExpectedSizeSubsamplingAndLookAhead() throws {
        let arch = BaseArchitecture.architecture()  // C=256, B=10, K=9, H=512, 29 tokens
        try arch.validate()
        let c = 256, b = 10, k = 9, h = 512, v = 29
        let expected = (80 * c * 5 + c) + 2 * c + (c * c * 3 + c) + 2 * c + b * ((c * k + c) + (c * c + c) + 2 * c) + (c * h + h) + (h * v + v)
        #expect(arch.parameterCount == expected)
        #expect(arch.subsampling == 4)
        #expect(arch.outputDim == 29)
        // 1 (conv1) + 1 x 2 (conv2) + 4 blocks x 1 x 4 = 19 frames of 10 ms.
        #expect(arch.lookAheadFrames == 19)
        #expect(arch.lookAheadMs == 190)
        var blocksWithLookAhead = 0
        for case .residual(_, let body) in arch.layers {
            if case .conv1d(let s) = body[0], s.rightContext > 0 { blocksWithLookAhead += 1 }
        }
        #expect(blocksWithLookAhead == 4)
    }

    /// Subsampling 2 keeps the parameters and halves the frame: conv2 steps by one frame instead of
    /// two, so its two future frames of 20 ms are the same 20 ms, and each look-ahead block adds 20 ms.
    @Test func subsamplingTwoHalvesTheFrameAndTheBlocksLookAhead() throws {
        let four = BaseArchitecture.architecture(channels: 32, blocks: 6, hidden: 40, lookAheadBlocks: 6)
        let two = BaseArchitecture.architecture(channels: 32, blocks: 6, hidden: 40, lookAheadBlocks: 6, subsampling: 2)
        try two.validate()
        #expect(two.subsampling == 2 && four.subsampling == 4)
        #expect(two.parameterCount == four.parameterCount)
        #expect(four.lookAheadMs == 30 + 6 * 40)
        #expect(two.lookAheadMs == 30 + 6 * 20)
    }

    @Test(arguments: [2, 4]) func smallBaseEncoderStreamsLikeItRunsOffline(subsampling: Int) throws {
        var rng = SeededRandom(seed: 40)
        let arch = BaseArchitecture.architecture(inputDim: 10, channels: 16, blocks: 3, kernel: 5, hidden: 24, vocabularySize: 7,
                                                 lookAheadBlocks: 2, subsampling: subsampling)
        let encoder = try Encoder(architecture: arch, parameters: randomParameters(arch, rng: &rng))
        let input = rng.matrix(101, 10, scale: 2)
        let offline = encoder.forward(input)
        #expect(offline.rows == (101 + subsampling - 1) / subsampling && offline.cols == 7)
        var state = encoder.makeStream()
        var streamed = Matrix(rows: 0, cols: 7)
        for start in stride(from: 0, to: 101, by: 10) { streamed.append(rowsOf: state.accept(input.rows(start..<min(start + 10, 101)))) }
        streamed.append(rowsOf: state.finish())
        #expect(streamed.maxAbsDifference(offline) < 1e-4)
    }
}

/// Forward speed of base encoders on 10 s of random input, one BLAS thread. Prints figures, asserts only
/// that outputs are finite (tests never assert on wall time). Run in release:
/// `EARSHOT_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter EncoderBenchmark`
@Suite(.enabled(if: ProcessInfo.processInfo.environment["EARSHOT_BENCH"] != nil)) struct EncoderBenchmark {
    @Test func baseEncoderForwardSpeed() throws {
        BLASThreads.set(1)
        let frames = 1000  // 10 s of 10 ms frames
        for (c, b, h) in [(256, 10, 512), (320, 12, 640), (384, 10, 512)] {
            var rng = SeededRandom(seed: 50)
            let arch = BaseArchitecture.architecture(channels: c, blocks: b, hidden: h)
            let encoder = try Encoder(architecture: arch, parameters: randomParameters(arch, rng: &rng))
            let input = rng.matrix(frames, 80, scale: 2)
            var out = encoder.forward(input)  // warm-up
            let clock = ContinuousClock()
            var best = Duration.seconds(1000)
            for _ in 0..<5 {
                let t = clock.measure { out = encoder.forward(input) }
                best = min(best, t)
            }
            #expect(out.data.allSatisfy { $0.isFinite })
            // Streaming in 100 ms chunks (10 frames), the live path.
            var state = encoder.makeStream()
            var streamed = 0
            let st = clock.measure {
                for start in stride(from: 0, to: frames, by: 10) { streamed += state.accept(input.rows(start..<(start + 10))).rows }
                streamed += state.finish().rows
            }
            #expect(streamed == out.rows)
            let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) * 1e-18
            let sSec = Double(st.components.seconds) + Double(st.components.attoseconds) * 1e-18
            print(String(format: "base encoder C=%d B=%d K=9 H=%d: %d params, look-ahead %.0f ms; offline 10 s in %.1f ms = %.0fx real time; streaming (100 ms chunks) %.1f ms = %.0fx real time; BLAS threads %d",
                         c, b, h, arch.parameterCount, arch.lookAheadMs, seconds * 1000, 10 / seconds, sSec * 1000, 10 / sSec, BLASThreads.current))
        }
    }
}
