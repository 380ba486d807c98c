import Tensors

/// Global mean/variance normalisation (CMVN) of the input features, `(x - mean) / std` per channel,
/// with statistics stored in the model file as "frontend.mean" and "frontend.std" [inputDim].
public struct InputNormalization: Sendable, Equatable {
    public let mean: [Float]
    public let std: [Float]
    let invStd: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count, "normalisation mean and std sizes differ")
        self.mean = mean; self.std = std
        invStd = std.map { 1 / $0 }
    }

    public func apply(_ input: Matrix) -> Matrix {
        var out = input
        out.data.withUnsafeMutableBufferPointer { run(inPlace: $0.baseAddress!, rows: input.rows) }
        return out
    }

    func run(inPlace x: UnsafeMutablePointer<Float>, rows n: Int) {
        let d = mean.count
        mean.withUnsafeBufferPointer { m in
            invStd.withUnsafeBufferPointer { s in
                for i in 0..<n {
                    let row = x + i * d
                    for c in 0..<d { row[c] = (row[c] - m[c]) * s[c] }
                }
            }
        }
    }

    public static let meanName = "frontend.mean"
    public static let stdName = "frontend.std"
}

/// The CTC encoder ready to run: the architecture, its layers with their parameters, and the optional
/// feature normalisation. Input: frontend frames [T, inputDim] (raw log-mel; the encoder applies the
/// model's CMVN when the model has one). Output: logits [ceil-subsampled T, vocabulary].
public struct Encoder: Sendable {
    public let architecture: EncoderArchitecture
    public let layers: [Layer]
    public let normalization: InputNormalization?

    /// Builds the encoder from an architecture and a parameter set (extra tensors are ignored).
    /// Checks the architecture chains and that every parameter exists with the right shape.
    public init(architecture: EncoderArchitecture, parameters: [String: Tensor], file: String = "<memory>") throws(ModelError) {
        try architecture.validate(file: file)
        var layers: [Layer] = []
        for spec in architecture.layers { layers.append(try Layer(spec: spec, parameters: parameters, file: file)) }
        self.architecture = architecture
        self.layers = layers
        self.normalization = try Self.normalization(parameters, dim: architecture.inputDim, file: file)
    }

    public init(layers: [LayerSpec], inputDim: Int, parameters: [String: Tensor]) throws(ModelError) {
        try self.init(architecture: EncoderArchitecture(layers: layers, inputDim: inputDim), parameters: parameters)
    }

    /// Also checks the model's vocabulary, so that a recogniser built on this encoder can hand it to a
    /// decoder (whose invariants would otherwise trap) for models that never went through `validate`.
    public init(model: ModelFile, file: String = "<memory>") throws(ModelError) {
        try self.init(architecture: model.description.architecture, parameters: model.parameters, file: file)
        try model.description.checkVocabularyIsDecodable(file: file)
    }

    static func normalization(_ parameters: [String: Tensor], dim: Int, file: String) throws(ModelError) -> InputNormalization? {
        let mean = parameters[InputNormalization.meanName], std = parameters[InputNormalization.stdName]
        if mean == nil && std == nil { return nil }
        guard let mean else { throw .missingParameter(file: file, name: InputNormalization.meanName, expectedShape: [dim]) }
        guard let std else { throw .missingParameter(file: file, name: InputNormalization.stdName, expectedShape: [dim]) }
        guard mean.shape == [dim] else { throw .wrongShape(file: file, name: InputNormalization.meanName, expected: [dim], found: mean.shape) }
        guard std.shape == [dim] else { throw .wrongShape(file: file, name: InputNormalization.stdName, expected: [dim], found: std.shape) }
        // 1/std must be finite too: a subnormal std passes `> 0` and turns every feature into infinity.
        if let bad = std.data.firstIndex(where: { !($0 > 0) || !$0.isFinite || !(1 / $0).isFinite }) {
            throw .nonFiniteParameter(file: file, name: InputNormalization.stdName, index: bad)
        }
        return InputNormalization(mean: mean.data, std: std.data)
    }

    public var inputDim: Int { architecture.inputDim }
    public var outputDim: Int { architecture.outputDim }
    public var subsampling: Int { architecture.subsampling }
    public var lookAheadFrames: Int { architecture.lookAheadFrames }
    public var lookAheadMs: Double { architecture.lookAheadMs }

    /// The input after CMVN (the input itself when the model has none): what the first layer sees.
    public func normalized(_ input: Matrix) -> Matrix { normalization?.apply(input) ?? input }

    /// Whole-utterance forward: [T, inputDim] -> [ceil(T / subsampling), outputDim] logits.
    public func forward(_ input: Matrix) -> Matrix {
        precondition(input.cols == inputDim || input.rows == 0, "encoder expects \(inputDim) features per frame, got \(input.cols)")
        return Layer.forward(layers, normalized(input))
    }

    /// A fresh streaming state for one stream.
    public func makeStream() -> StreamingEncoder { StreamingEncoder(encoder: self) }
}
