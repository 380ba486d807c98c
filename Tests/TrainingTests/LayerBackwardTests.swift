import Foundation
import Testing
import Model
import Tensors
@testable import Training

/// Checks one leaf layer's backward (input and every parameter) against central finite differences of
/// the Double reference forward under the loss `sum(R * y)`.
///
/// Tolerance: the reference is in Double, so with eps = 1e-4 the FD truncation error is O(eps^2) ~ 1e-8
/// (zero for the linear layers) and its rounding error ~ 1e-16 / 1e-4 = 1e-12. What remains is the Float
/// arithmetic of the backward itself: sums of ~50 products of O(1) terms, relative error ~ 1e-6. 1e-4 on
/// |analytic - numeric| / (1 + |numeric|) leaves a margin of ~100 and still catches any indexing mistake
/// (those give O(1) errors).
func checkLayerBackward(_ layer: LayerSpec, frames: Int, inChannels: Int, seed: UInt64) throws {
    let params = randomParameters([layer], seed: seed)
    let input = randomMatrix(rows: frames, cols: inChannels, seed: seed + 1)
    let doubleParams = params.mapValues { $0.data.map(Double.init) }
    let output = referenceForward(layer, doubleParams, toRows(input))
    let gradOut = randomMatrix(rows: output.count, cols: output.first?.count ?? 0, seed: seed + 2)

    let grads: LayerGradients
    switch layer {
    case .conv1d(let s): grads = conv1dBackward(spec: s, weight: params["\(s.name).weight"]!.data, input: input, gradOutput: gradOut)
    case .dense(let s): grads = denseBackward(spec: s, weight: params["\(s.name).weight"]!.data, input: input, gradOutput: gradOut)
    case .layerNorm(let s): grads = layerNormBackward(spec: s, weight: params["\(s.name).weight"]!.data, input: input, gradOutput: gradOut)
    case .relu: grads = LayerGradients(gradInput: reluBackward(input: input, gradOutput: gradOut), parameters: [:])
    case .residual: Issue.record("residual is checked through the encoder"); return
    }

    let eps = 1e-4, tolerance = 1e-4
    let x = input.data.map(Double.init)
    let numericInput = finiteDifferences(x, eps: eps) { xs in
        dot(referenceForward(layer, doubleParams, (0..<frames).map { Array(xs[($0 * inChannels)..<(($0 + 1) * inChannels)]) }), gradOut)
    }
    let gradInput = try #require(grads.gradInput)
    #expect(gradInput.rows == frames && gradInput.cols == inChannels)
    let inputError = maxGradientError(gradInput.data, numericInput)
    #expect(inputError < tolerance, "\(layer): input gradient error \(inputError)")

    #expect(Set(grads.parameters.keys) == Set(params.keys))
    for (name, p) in params {
        let numeric = finiteDifferences(doubleParams[name]!, eps: eps) { values in
            var changed = doubleParams
            changed[name] = values
            return dot(referenceForward(layer, changed, toRows(input)), gradOut)
        }
        let g = try #require(grads.parameters[name])
        #expect(g.shape == p.shape)
        let error = maxGradientError(g.data, numeric)
        #expect(error < tolerance, "\(name): gradient error \(error)")
    }
}

@Suite struct LayerBackwardTests {
    @Test(arguments: [
        (Conv1DSpec(name: "c", inChannels: 3, outChannels: 4, kernel: 3), 7),
        (Conv1DSpec(name: "c", inChannels: 3, outChannels: 4, kernel: 5, stride: 2, rightContext: 1), 9),
        (Conv1DSpec(name: "c", inChannels: 2, outChannels: 3, kernel: 4, stride: 3, rightContext: 2), 10),
        (Conv1DSpec(name: "c", inChannels: 3, outChannels: 2, kernel: 3, stride: 2, rightContext: 2, bias: false), 8),
        (Conv1DSpec(name: "c", inChannels: 4, outChannels: 3, kernel: 1), 5),
        (Conv1DSpec(name: "c", inChannels: 2, outChannels: 2, kernel: 5, stride: 2, rightContext: 1), 2),
    ])
    func fullConvolutionBackwardMatchesFiniteDifferences(spec: Conv1DSpec, frames: Int) throws {
        try checkLayerBackward(.conv1d(spec), frames: frames, inChannels: spec.inChannels, seed: UInt64(spec.kernel * 10 + spec.stride))
    }

    @Test(arguments: [
        (Conv1DSpec(name: "dw", inChannels: 4, outChannels: 4, kernel: 5, rightContext: 2, groups: 4), 9),
        (Conv1DSpec(name: "dw", inChannels: 3, outChannels: 3, kernel: 3, stride: 2, rightContext: 1, groups: 3), 7),
        (Conv1DSpec(name: "dw", inChannels: 3, outChannels: 3, kernel: 4, stride: 1, rightContext: 0, groups: 3, bias: false), 6),
    ])
    func depthwiseConvolutionBackwardMatchesFiniteDifferences(spec: Conv1DSpec, frames: Int) throws {
        try checkLayerBackward(.conv1d(spec), frames: frames, inChannels: spec.inChannels, seed: UInt64(spec.kernel * 10 + spec.stride) + 100)
    }

    @Test func denseBackwardMatchesFiniteDifferences() throws {
        try checkLayerBackward(.dense(DenseSpec(name: "d", inFeatures: 5, outFeatures: 3)), frames: 6, inChannels: 5, seed: 7)
        try checkLayerBackward(.dense(DenseSpec(name: "d", inFeatures: 2, outFeatures: 4, bias: false)), frames: 3, inChannels: 2, seed: 8)
    }

    @Test func layerNormBackwardMatchesFiniteDifferences() throws {
        try checkLayerBackward(.layerNorm(LayerNormSpec(name: "ln", dim: 6)), frames: 5, inChannels: 6, seed: 9)
    }

    @Test func reluBackwardMatchesFiniteDifferences() throws {
        // Random inputs are never within eps = 1e-4 of the kink at 0 for this seed (checked by the FD itself).
        try checkLayerBackward(.relu, frames: 6, inChannels: 4, seed: 10)
    }

    @Test func skippedGradientsAreNotComputed() {
        let spec = Conv1DSpec(name: "c", inChannels: 2, outChannels: 3, kernel: 3, stride: 2, rightContext: 1)
        let params = randomParameters([.conv1d(spec)], seed: 1)
        let g = conv1dBackward(spec: spec, weight: params["c.weight"]!.data, input: randomMatrix(rows: 6, cols: 2, seed: 2),
                               gradOutput: randomMatrix(rows: 3, cols: 3, seed: 3), computeInputGradient: false)
        #expect(g.gradInput == nil)
        #expect(g.parameters.count == 2)
        let h = conv1dBackward(spec: spec, weight: params["c.weight"]!.data, input: randomMatrix(rows: 6, cols: 2, seed: 2),
                               gradOutput: randomMatrix(rows: 3, cols: 3, seed: 3), computeParameterGradients: false)
        #expect(h.gradInput != nil && h.parameters.isEmpty)
    }
}
