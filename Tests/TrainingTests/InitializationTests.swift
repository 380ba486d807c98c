import Testing
import Model
import Tensors
import Training

@Suite struct InitializationTests {
    @Test func initialParametersBuildTheBaseEncoderWithPyTorchDefaultBounds() throws {
        let specs = BaseArchitecture.layers(channels: 16, blocks: 2, hidden: 24)
        var rng = SplitMix64(seed: 1)
        let params = initialParameters(specs, using: &rng)
        // Model's own shape checks accept every tensor.
        _ = try Encoder(layers: specs, inputDim: 80, parameters: params)
        #expect(Set(params.keys) == Set(EncoderArchitecture(layers: specs, inputDim: 80).parameterShapes.map(\.name)))
        let conv = try #require(params["front.conv1.weight"]) // fanIn = 80 x 5
        #expect(conv.data.allSatisfy { abs($0) <= 1 / Float(400).squareRoot() })
        #expect(conv.data.contains { abs($0) > 0.8 / Float(400).squareRoot() })
        let depthwise = try #require(params["blocks.0.depthwise.weight"]) // fanIn = 1 x 9
        #expect(depthwise.data.allSatisfy { abs($0) <= 1 / 3 })
        #expect(params["front.norm1.weight"]!.data.allSatisfy { $0 == 1 })
        #expect(params["front.norm1.bias"]!.data.allSatisfy { $0 == 0 })
        var again = SplitMix64(seed: 1)
        #expect(initialParameters(specs, using: &again) == params, "a seed gives the same model")
    }
}
