import Foundation
import Testing
import Model
import Tensors
@testable import Training

/// A small encoder with every layer type: a stride-2 convolution with look-ahead, a residual block holding
/// a depthwise convolution, LayerNorm and ReLU, a pointwise convolution, and a dense output layer (logits).
let smallEncoder: [LayerSpec] = [
    .conv1d(Conv1DSpec(name: "sub", inChannels: 4, outChannels: 6, kernel: 3, stride: 2, rightContext: 1)),
    .relu,
    .residual(name: "block", body: [
        .conv1d(Conv1DSpec(name: "block.dw", inChannels: 6, outChannels: 6, kernel: 3, rightContext: 1, groups: 6)),
        .layerNorm(LayerNormSpec(name: "block.ln", dim: 6)),
        .relu,
        .conv1d(Conv1DSpec(name: "block.pw", inChannels: 6, outChannels: 6, kernel: 1)),
    ]),
    .layerNorm(LayerNormSpec(name: "final.ln", dim: 6)),
    .dense(DenseSpec(name: "head", inFeatures: 6, outFeatures: 5)),
]

func reshapeRows(_ flat: [Double], cols: Int) -> [[Double]] {
    (0..<(flat.count / cols)).map { Array(flat[($0 * cols)..<(($0 + 1) * cols)]) }
}

/// Every parameter's gradient in `result` against central differences (eps 1e-4) of the Double `loss`.
func expectGradientsMatchFiniteDifferences(_ result: UtteranceGradients, _ doubleParams: [String: [Double]],
                                           _ loss: ([String: [Double]]) -> Double) throws {
    for name in doubleParams.keys.sorted() {
        let numeric = finiteDifferences(doubleParams[name]!, eps: 1e-4) { v in
            var p = doubleParams; p[name] = v
            return loss(p)
        }
        let error = maxGradientError(try #require(result.gradients[name]).data, numeric)
        #expect(error < 1e-4, "\(name): gradient error \(error)")
    }
}

@Suite struct EncoderBackwardTests {
    let params = randomParameters(smallEncoder, seed: 21)
    let input = randomMatrix(rows: 13, cols: 4, seed: 22, scale: 1)

    @Test func modelForwardMatchesTheDoubleReference() throws {
        let encoder = try TrainableEncoder(specs: smallEncoder, parameters: params)
        let y = encoder.forward(input)
        let ref = referenceForward(smallEncoder, params.mapValues { $0.data.map(Double.init) }, toRows(input))
        #expect(y.rows == 7 && y.cols == 5)
        // Float forward through 7 layers of O(1) activations: rounding ~1e-6; 1e-4 catches any semantic difference.
        var worst = 0.0
        for t in 0..<y.rows { for c in 0..<y.cols { worst = max(worst, abs(Double(y[t, c]) - ref[t][c])) } }
        #expect(worst < 1e-4, "max difference \(worst)")
    }

    @Test func encoderBackwardMatchesFiniteDifferencesForAGenericLoss() throws {
        let encoder = try TrainableEncoder(specs: smallEncoder, parameters: params)
        let weights = randomMatrix(rows: 7, cols: 5, seed: 23)
        let result = try encoder.lossAndGradients(input: input) { y in
            OutputLoss(loss: Float(dot(toRows(y), weights)), gradOutput: weights)
        }
        let doubleParams = params.mapValues { $0.data.map(Double.init) }
        #expect(Set(result.gradients.keys) == Set(params.keys))
        // Double reference, eps = 1e-4: FD error ~1e-8; the Float backward through 7 layers ~1e-5 relative.
        for name in params.keys.sorted() {
            let numeric = finiteDifferences(doubleParams[name]!, eps: 1e-4) { v in
                var p = doubleParams; p[name] = v
                return dot(referenceForward(smallEncoder, p, toRows(input)), weights)
            }
            let error = maxGradientError(try #require(result.gradients[name]).data, numeric)
            #expect(error < 1e-4, "\(name): gradient error \(error)")
        }
    }

    @Test func encoderPlusCTCGradientMatchesFiniteDifferences() throws {
        let labels = [1, 3, 3]
        let encoder = try TrainableEncoder(specs: smallEncoder, parameters: params)
        let result = try encoder.ctcLossAndGradients(features: input, labels: labels)
        #expect(!result.impossible && result.outputFrames == 7)
        let doubleParams = params.mapValues { $0.data.map(Double.init) }
        func loss(_ p: [String: [Double]]) -> Double {
            let logits = referenceForward(smallEncoder, p, toRows(input))
            return -ctcCore(logits: logits.flatMap { $0 }, frames: logits.count, vocabulary: 5, labels: labels, blank: 0).logLikelihood!
        }
        #expect(abs(Double(result.loss) - loss(doubleParams)) < 1e-4)
        // Double reference forward + Double CTC: FD error ~1e-8 at eps = 1e-4. Float forward/backward and the
        // Float gradient at the logits give ~1e-5 relative; 1e-4 still exposes any real error (O(1)).
        try expectGradientsMatchFiniteDifferences(result, doubleParams, loss)
    }

    @Test func floatFiniteDifferencesThroughModelForwardAgree() throws {
        // The same check using only Model's Float forward and the Float CTC loss, as a trainer would see them.
        // eps = 1e-3: the Float rounding of the loss (~1e-6 absolute at ~10, plus the forward's own rounding
        // ~1e-6) gives ~1e-3 in the quotient; curvature adds O(eps^2). (eps = 1e-2 is too coarse here: a bias
        // step that large pushes some activations across a ReLU kink.) Tolerance 1e-2 on |a - n| / (1 + |n|).
        let labels = [2, 4]
        let base = try TrainableEncoder(specs: smallEncoder, parameters: params).ctcLossAndGradients(features: input, labels: labels)
        var rng = SplitMix64(seed: 5)
        for name in params.keys.sorted() {
            for _ in 0..<3 {
                let i = Int.random(in: 0..<params[name]!.count, using: &rng)
                func lossWith(_ delta: Float) throws -> Double {
                    var p = params; p[name]!.data[i] += delta
                    return Double(try TrainableEncoder(specs: smallEncoder, parameters: p).ctcLossAndGradients(features: input, labels: labels).loss)
                }
                let numeric = (try lossWith(1e-3) - lossWith(-1e-3)) / 2e-3
                let analytic = Double(base.gradients[name]!.data[i])
                #expect(abs(analytic - numeric) / (1 + abs(numeric)) < 1e-2, "\(name)[\(i)]: \(analytic) vs \(numeric)")
            }
        }
    }

    @Test func frozenParametersGetNoGradientAndTrainableOnesAreUnchanged() throws {
        let full = try TrainableEncoder(specs: smallEncoder, parameters: params).ctcLossAndGradients(features: input, labels: [1, 2])
        let top: Set<String> = ["final.ln.weight", "final.ln.bias", "head.weight"]
        let encoder = try TrainableEncoder(specs: smallEncoder, parameters: params, trainable: top)
        #expect(encoder.lowestTrainableLayer == 3)
        let partial = try encoder.ctcLossAndGradients(features: input, labels: [1, 2])
        #expect(Set(partial.gradients.keys) == top)
        #expect(partial.loss == full.loss)
        for name in top { #expect(partial.gradients[name] == full.gradients[name]) }

        let inner = try TrainableEncoder(specs: smallEncoder, parameters: params, trainable: ["block.ln.bias"])
        #expect(inner.lowestTrainableLayer == 2)
        let innerResult = try inner.ctcLossAndGradients(features: input, labels: [1, 2])
        #expect(Array(innerResult.gradients.keys) == ["block.ln.bias"])
        let a = innerResult.gradients["block.ln.bias"]!.data, b = full.gradients["block.ln.bias"]!.data
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-6 * (1 + abs(y))) }
    }

    @Test func impossibleUtteranceIsFlaggedWithoutGradients() throws {
        let encoder = try TrainableEncoder(specs: smallEncoder, parameters: params)
        // 13 frames -> 7 output frames, too few for 8 labels.
        let r = try encoder.ctcLossAndGradients(features: input, labels: [1, 2, 3, 4, 1, 2, 3, 4])
        #expect(r.impossible && r.loss == 0 && r.gradients.isEmpty && r.outputFrames == 7)
    }

    @Test func wrongInputChannelsAndMissingParametersAreReported() throws {
        let encoder = try TrainableEncoder(specs: smallEncoder, parameters: params)
        #expect(throws: TrainingError.inputShape(expectedChannels: 4, found: 3)) {
            try encoder.ctcLossAndGradients(features: randomMatrix(rows: 5, cols: 3, seed: 1), labels: [1])
        }
        var missing = params
        missing["head.weight"] = nil
        #expect(throws: TrainingError.self) { try TrainableEncoder(specs: smallEncoder, parameters: missing) }
    }

    @Test func batchOnTwoThreadsEqualsTheSumOfUtterancesAndIsDeterministic() throws {
        let encoder = try TrainableEncoder(specs: smallEncoder, parameters: params)
        let batch = (0..<5).map { i in
            TrainingExample(features: randomMatrix(rows: 9 + 3 * i, cols: 4, seed: 100 + UInt64(i)),
                            labels: i == 3 ? [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4] : [1 + i % 4, 2])
        }
        let twoThreads = try encoder.batchLossAndGradients(batch, threads: 2)
        #expect(twoThreads.impossible == [3])
        #expect(twoThreads.utterances == 4)
        var lossSum = 0.0
        var sum: [String: Tensor] = [:]
        for (i, ex) in batch.enumerated() where i != 3 {
            let r = try encoder.ctcLossAndGradients(features: ex.features, labels: ex.labels)
            lossSum += Double(r.loss)
            accumulate(&sum, r.gradients)
        }
        #expect(abs(twoThreads.lossSum - lossSum) < 1e-4)
        // Summation order differs from the sequential sum: Float rounding ~1e-7 relative per addition.
        for (name, g) in sum {
            for (a, b) in zip(twoThreads.gradients[name]!.data, g.data) { #expect(abs(a - b) <= 1e-5 * (1 + abs(b))) }
        }
        for _ in 0..<3 {
            let again = try encoder.batchLossAndGradients(batch, threads: 2)
            #expect(again.gradients == twoThreads.gradients && again.lossSum == twoThreads.lossSum, "bit-identical on every run")
        }
        let mean = twoThreads.meanGradients()
        #expect(abs(mean["head.bias"]!.data[0] * 4 - twoThreads.gradients["head.bias"]!.data[0]) < 1e-6)
    }
}

@Suite struct TrainableEncoderFromModelTests {
    @Test func wrappingAnEncoderAppliesItsFeatureNormalisationFirst() throws {
        var params = randomParameters(smallEncoder, seed: 31)
        params["frontend.mean"] = Tensor(shape: [4], data: [0.5, -1, 2, 0])
        params["frontend.std"] = Tensor(shape: [4], data: [2, 0.5, 1, 4])
        let encoder = try Encoder(layers: smallEncoder, inputDim: 4, parameters: params)
        let wrapped = TrainableEncoder(encoder: encoder)
        let raw = randomMatrix(rows: 11, cols: 4, seed: 32, scale: 3)
        #expect(wrapped.forward(raw) == encoder.forward(raw))
        let direct = try TrainableEncoder(specs: smallEncoder, parameters: params)
        let a = try wrapped.ctcLossAndGradients(features: raw, labels: [1, 2])
        let b = try direct.ctcLossAndGradients(features: encoder.normalized(raw), labels: [1, 2])
        #expect(a.loss == b.loss && a.gradients == b.gradients)
        #expect(a.gradients["frontend.mean"] == nil, "CMVN statistics are not trained")
    }
}

/// smallEncoder's subsampling and block, a second block and a two-layer head, so the head can also read
/// the first block's output.
let twoBlockEncoder: [LayerSpec] = Array(smallEncoder[0...2]) + [
    .residual(name: "b1", body: [
        .conv1d(Conv1DSpec(name: "b1.pw", inChannels: 6, outChannels: 6, kernel: 1)),
        .layerNorm(LayerNormSpec(name: "b1.ln", dim: 6)),
        .relu,
    ]),
    .dense(DenseSpec(name: "head.hidden", inFeatures: 6, outFeatures: 7)),
    .relu,
    .dense(DenseSpec(name: "head.output", inFeatures: 7, outFeatures: 5)),
]

@Suite struct IntermediateCTCTests {
    let params = randomParameters(twoBlockEncoder, seed: 41)
    let input = randomMatrix(rows: 15, cols: 4, seed: 42, scale: 1)

    @Test func theTapIsAfterTheChosenBlockAndTheHeadIsWhatFollowsTheLast() throws {
        let middle = try IntermediateCTC.resolve(layers: twoBlockEncoder, afterBlock: 0, weight: 0.3).get()
        #expect(middle == IntermediateCTC(tapLayer: 2, headStart: 4, weight: 0.3))
        let base = BaseArchitecture.layers(channels: 8, blocks: 12, hidden: 8, subsampling: 2)
        // 6 front layers, then blocks.0 ... blocks.11: block 6's output is layer 11's.
        #expect(try IntermediateCTC.resolve(layers: base, afterBlock: 0, weight: 0.3).get() == IntermediateCTC(tapLayer: 11, headStart: 18, weight: 0.3))
        #expect(try IntermediateCTC.resolve(layers: base, afterBlock: 9, weight: 0.3).get().tapLayer == 14)
        for weight: Float in [0, 1, -0.2, .nan] {
            #expect(throws: TrainingError.self) { try IntermediateCTC.resolve(layers: base, afterBlock: 0, weight: weight).get() }
        }
        for bad in [-1, 12, 13] {
            #expect(throws: TrainingError.self) { try IntermediateCTC.resolve(layers: base, afterBlock: bad, weight: 0.3).get() }
        }
        #expect(throws: TrainingError.self) { try IntermediateCTC.resolve(layers: smallEncoder.filter { if case .residual = $0 { false } else { true } }, afterBlock: 0, weight: 0.3).get() }
    }

    @Test func mixedObjectiveAndGradientMatchADoubleReference() throws {
        let labels = [1, 3, 3]
        let w = 0.3
        var encoder = try TrainableEncoder(specs: twoBlockEncoder, parameters: params)
        encoder.intermediateCTC = try IntermediateCTC.resolve(layers: twoBlockEncoder, afterBlock: 1, weight: Float(w)).get()
        let result = try encoder.ctcLossAndGradients(features: input, labels: labels)
        #expect(!result.impossible && result.outputFrames == 8)
        // Independently: the full stack's CTC and the CTC of the head placed straight after the first block.
        let sidePath = Array(twoBlockEncoder[0...2]) + Array(twoBlockEncoder[4...])  // the head right after "block"
        func ctc(_ layers: [LayerSpec], _ p: [String: [Double]]) -> Double {
            let logits = referenceForward(layers, p, toRows(input))
            return -ctcCore(logits: logits.flatMap { $0 }, frames: logits.count, vocabulary: 5, labels: labels, blank: 0).logLikelihood!
        }
        func loss(_ p: [String: [Double]]) -> Double { (1 - w) * ctc(twoBlockEncoder, p) + w * ctc(sidePath, p) }
        let doubleParams = params.mapValues { $0.data.map(Double.init) }
        #expect(abs(Double(result.loss) - loss(doubleParams)) < 1e-4)
        #expect(Set(result.gradients.keys) == Set(params.keys))
        // As for the plain CTC check: Double FD error ~1e-8, Float backward ~1e-5 relative.
        try expectGradientsMatchFiniteDifferences(result, doubleParams, loss)
        // And the mix really changes the objective: the plain loss differs.
        let plain = try TrainableEncoder(specs: twoBlockEncoder, parameters: params).ctcLossAndGradients(features: input, labels: labels)
        #expect(abs(Double(plain.loss) - ctc(twoBlockEncoder, doubleParams)) < 1e-4)
        #expect(abs(plain.loss - result.loss) > 1e-3)
    }

    /// With only the top trainable, the gradients are the full run's for those parameters: whether the tap is
    /// below every trainable layer (the side path then trains the head only) or is the lowest trainable one.
    @Test func trainableSubsetsGetTheFullRunsGradients() throws {
        let tap = IntermediateCTC(tapLayer: 2, headStart: 4, weight: 0.3)
        var full = try TrainableEncoder(specs: twoBlockEncoder, parameters: params)
        full.intermediateCTC = tap
        let reference = try full.ctcLossAndGradients(features: input, labels: [2, 1, 2])
        let top = Set(params.keys.filter { $0.hasPrefix("head.") || $0.hasPrefix("b1.") })
        for (trainable, lowest) in [(top, 3), (top.union(["block.ln.bias"]), 2)] {
            var encoder = try TrainableEncoder(specs: twoBlockEncoder, parameters: params, trainable: trainable)
            encoder.intermediateCTC = tap
            #expect(encoder.lowestTrainableLayer == lowest)
            let r = try encoder.ctcLossAndGradients(features: input, labels: [2, 1, 2])
            #expect(Set(r.gradients.keys) == trainable && r.loss == reference.loss)
            for name in trainable {
                for (a, b) in zip(r.gradients[name]!.data, reference.gradients[name]!.data) {
                    #expect(abs(a - b) <= 1e-6 * (1 + abs(b)), "\(name)")
                }
            }
        }
    }

    @Test func batchesUseTheIntermediateObjective() throws {
        var encoder = try TrainableEncoder(specs: twoBlockEncoder, parameters: params)
        encoder.intermediateCTC = IntermediateCTC(tapLayer: 2, headStart: 4, weight: 0.5)
        let batch = [TrainingExample(features: input, labels: [2, 4]), TrainingExample(features: randomMatrix(rows: 11, cols: 4, seed: 43), labels: [1])]
        let b = try encoder.batchLossAndGradients(batch, threads: 2)
        let one = try encoder.ctcLossAndGradients(features: batch[0].features, labels: batch[0].labels)
        let two = try encoder.ctcLossAndGradients(features: batch[1].features, labels: batch[1].labels)
        #expect(abs(b.lossSum - Double(one.loss + two.loss)) < 1e-4)
    }
}
