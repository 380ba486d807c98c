import Foundation
import Testing
import Model
import Tensors
@testable import Training

/// Throughput figures, not a test: runs only with EARSHOT_BENCH set and prints timings.
///   swift build -c release --build-tests && EARSHOT_BENCH=1 swift test -c release --skip-build --filter TrainingBenchmark
@Suite struct TrainingBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["EARSHOT_BENCH"] != nil, "set EARSHOT_BENCH=1 to run"))
    func baseArchitectureForwardBackward() throws {
        let specs = BaseArchitecture.layers()
        var params: [String: Tensor] = [:]
        var rng = SplitMix64(seed: 1)
        for (name, shape) in EncoderArchitecture(layers: specs, inputDim: 80).parameterShapes {
            let fanIn = Float(shape.dropFirst().reduce(1, *))
            params[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in
                shape.count == 1 ? (name.hasSuffix(".weight") ? 1 : 0) : Float.random(in: -1...1, using: &rng) / fanIn.squareRoot()
            })
        }
        let frames = 1000 // 10 s of 10 ms frames
        let features = randomMatrix(rows: frames, cols: 80, seed: 2)
        let labels = (0..<120).map { _ in Int.random(in: 1..<29, using: &rng) }
        func time(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        let all = try TrainableEncoder(specs: specs, parameters: params)
        let top = try TrainableEncoder(specs: specs, parameters: params, trainable: ["head.hidden.weight", "head.hidden.bias", "head.output.weight", "head.output.bias"])
        BLASThreads.set(1)
        _ = try all.ctcLossAndGradients(features: features, labels: labels)
        let fwd = time { _ = all.forward(features) }
        let full = try time { _ = try all.ctcLossAndGradients(features: features, labels: labels) }
        let heads = try time { _ = try top.ctcLossAndGradients(features: features, labels: labels) }
        let logits = all.forward(features)
        let ctc = try time { _ = try ctcLoss(logits: logits, labels: labels) }
        let batch = (0..<4).map { _ in TrainingExample(features: features, labels: labels) }
        let one = try time { _ = try all.batchLossAndGradients(batch, threads: 1) }
        let two = try time { _ = try all.batchLossAndGradients(batch, threads: 2) }
        print("""
        base architecture, \(frames) frames (10 s), 1 BLAS thread:
          forward \(fwd * 1000) ms; forward+CTC+backward (all parameters) \(full * 1000) ms; \
        head layers only \(heads * 1000) ms; CTC alone (250 x 29, 120 labels) \(ctc * 1000) ms
          batch of 4: 1 worker \(one * 1000) ms, 2 workers \(two * 1000) ms (speed-up \(one / two))
        """)
    }
}
