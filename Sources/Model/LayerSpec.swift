/// The encoder's architecture as data: a list of layers read from the model file's metadata,
/// so that the encoder is built from its description rather than hard-coded.
///
/// Parameter naming and layouts (PyTorch's, so that models trained elsewhere can be imported):
/// - conv1d:    "<name>.weight" [outChannels, inChannels / groups, kernel], "<name>.bias" [outChannels]
/// - dense:     "<name>.weight" [outFeatures, inFeatures],                  "<name>.bias" [outFeatures]
/// - layerNorm: "<name>.weight" [dim],                                      "<name>.bias" [dim]
/// All activations are `Matrix` values, time x channels, row-major.
public indirect enum LayerSpec: Sendable, Equatable, Codable {
    /// 1-D convolution over time. Output frame `t` sees input frames
    /// `t*stride - leftContext ... t*stride + rightContext`, where `leftContext = kernel - 1 - rightContext`;
    /// frames outside the input are zeros. An input of `T` frames gives `ceil(T / stride)` output frames.
    case conv1d(Conv1DSpec)
    /// A per-frame affine map `y = W x + b`.
    case dense(DenseSpec)
    /// Normalisation over the channels of each frame (streaming-friendly: no statistics across time).
    case layerNorm(LayerNormSpec)
    case relu
    /// `y = x + body(x)`; the body must keep the frame rate and channel count.
    case residual(name: String, body: [LayerSpec])

    private enum Kind: String, Codable { case conv1d, dense, layerNorm = "layernorm", relu, residual }
    private enum Keys: String, CodingKey { case type, name, body }

    public init(from decoder: Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let typeName = try c.decode(String.self, forKey: .type)
        guard let kind = Kind(rawValue: typeName) else {
            throw DecodingError.dataCorruptedError(forKey: .type, in: c,
                debugDescription: "unknown layer type '\(typeName)' (known: conv1d, dense, layernorm, relu, residual)")
        }
        switch kind {
        case .conv1d: self = .conv1d(try Conv1DSpec(from: decoder))
        case .dense: self = .dense(try DenseSpec(from: decoder))
        case .layerNorm: self = .layerNorm(try LayerNormSpec(from: decoder))
        case .relu: self = .relu
        case .residual:
            self = .residual(name: try c.decode(String.self, forKey: .name), body: try c.decode([LayerSpec].self, forKey: .body))
        }
    }

    public func encode(to encoder: Swift.Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case .conv1d(let s): try c.encode(Kind.conv1d, forKey: .type); try s.encode(to: encoder)
        case .dense(let s): try c.encode(Kind.dense, forKey: .type); try s.encode(to: encoder)
        case .layerNorm(let s): try c.encode(Kind.layerNorm, forKey: .type); try s.encode(to: encoder)
        case .relu: try c.encode(Kind.relu, forKey: .type)
        case .residual(let name, let body):
            try c.encode(Kind.residual, forKey: .type)
            try c.encode(name, forKey: .name)
            try c.encode(body, forKey: .body)
        }
    }
}

public struct Conv1DSpec: Sendable, Equatable, Codable {
    public var name: String
    public var inChannels: Int
    public var outChannels: Int
    public var kernel: Int
    public var stride: Int
    /// Future input frames each output sees (look-ahead); the rest of the kernel looks back.
    public var rightContext: Int
    /// 1 (full convolution) or `inChannels == outChannels` (depthwise).
    public var groups: Int
    public var bias: Bool

    public var leftContext: Int { kernel - 1 - rightContext }

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1,
                rightContext: Int = 0, groups: Int = 1, bias: Bool = true) {
        self.name = name; self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.rightContext = rightContext
        self.groups = groups; self.bias = bias
    }
}

public struct DenseSpec: Sendable, Equatable, Codable {
    public var name: String
    public var inFeatures: Int
    public var outFeatures: Int
    public var bias: Bool

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true) {
        self.name = name; self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.bias = bias
    }
}

public struct LayerNormSpec: Sendable, Equatable, Codable {
    public var name: String
    public var dim: Int
    public var epsilon: Float

    public init(name: String, dim: Int, epsilon: Float = 1e-5) {
        self.name = name; self.dim = dim; self.epsilon = epsilon
    }
}

/// One parameter tensor a layer needs, as named and shaped in `LayerSpec`'s documentation: the single
/// place that spells the naming scheme (the architecture's shape checks, the layer builder and
/// Training's initialisation and gradients all read it from here).
public struct ParameterSpec: Sendable, Equatable {
    /// "<layer name>.weight" or "<layer name>.bias".
    public var name: String
    public var shape: [Int]
    /// Inputs feeding each output of the layer (inChannels / groups x kernel for a convolution,
    /// inFeatures for a dense layer), which scales its initialisation; nil for layer-norm parameters,
    /// which start as the identity instead.
    public var fanIn: Int?

    public init(name: String, shape: [Int], fanIn: Int?) {
        self.name = name; self.shape = shape; self.fanIn = fanIn
    }

    /// Scalars in the tensor.
    public var count: Int { shape.reduce(1, *) }
}

extension LayerSpec {
    /// This layer's parameters, weight before bias; none for relu, the body's for a residual.
    public var parameters: [ParameterSpec] {
        switch self {
        case .conv1d(let s):
            let fanIn = s.inChannels / max(s.groups, 1) * s.kernel
            var out = [ParameterSpec(name: "\(s.name).weight", shape: [s.outChannels, s.inChannels / max(s.groups, 1), s.kernel], fanIn: fanIn)]
            if s.bias { out.append(ParameterSpec(name: "\(s.name).bias", shape: [s.outChannels], fanIn: fanIn)) }
            return out
        case .dense(let s):
            var out = [ParameterSpec(name: "\(s.name).weight", shape: [s.outFeatures, s.inFeatures], fanIn: s.inFeatures)]
            if s.bias { out.append(ParameterSpec(name: "\(s.name).bias", shape: [s.outFeatures], fanIn: s.inFeatures)) }
            return out
        case .layerNorm(let s):
            return [ParameterSpec(name: "\(s.name).weight", shape: [s.dim], fanIn: nil),
                    ParameterSpec(name: "\(s.name).bias", shape: [s.dim], fanIn: nil)]
        case .relu:
            return []
        case .residual(_, let body):
            return LayerSpec.parameters(of: body)
        }
    }

    /// Every parameter `layers` need, in layer order.
    public static func parameters(of layers: [LayerSpec]) -> [ParameterSpec] {
        layers.flatMap(\.parameters)
    }
}
