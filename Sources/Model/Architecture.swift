/// The encoder's architecture as stored in the model file's "architecture" metadata: the layer list
/// plus what is needed to interpret it in time (input features per frame, frame duration).
///
/// `subsampling` is derived from the layers' strides; it is stored so that a reader without the layer
/// semantics can still time the outputs, and checked on load.
public struct EncoderArchitecture: Codable, Sendable, Equatable {
    public var layers: [LayerSpec]
    /// Features per input frame (80 log-mel bins by default).
    public var inputDim: Int
    /// Input frames per output frame: the product of the conv strides.
    public var subsampling: Int
    /// Duration of one input frame (the frontend's hop), for reporting look-ahead in milliseconds.
    /// It must equal `1000 * hopLength / sampleRate` of the model's frontend: `ModelDescription` sets it
    /// from the frontend when built from a `FrontendConfig` (or when a file omits it) and refuses a file
    /// whose stored value disagrees.
    public var frameDurationMs: Double

    /// Sizes beyond any speech model, refused before any arithmetic on them so a corrupt or hostile
    /// file gets an error instead of an overflow trap or a huge allocation.
    public enum Limits {
        /// Channels, features or dimension of any layer (and `input_dim`).
        public static let channels = 1...16384
        public static let kernel = 1...256
        public static let stride = 1...16
        /// Input frames per output frame over the whole stack.
        public static let subsampling = 1...4096
        /// Input channels times kernel of a full (not depthwise) convolution: what it reads per output
        /// frame (Jasper's widest, 1 024 x 33, is half of it).
        public static let convolutionWindow = 65_536
    }

    enum CodingKeys: String, CodingKey {
        case layers, inputDim = "input_dim", subsampling, frameDurationMs = "frame_duration_ms"
    }

    public init(layers: [LayerSpec], inputDim: Int, frameDurationMs: Double = 10) {
        self.layers = layers
        self.inputDim = inputDim
        self.subsampling = Self.context(of: layers).rate
        self.frameDurationMs = frameDurationMs
    }

    public init(from decoder: Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        layers = try c.decode([LayerSpec].self, forKey: .layers)
        inputDim = try c.decode(Int.self, forKey: .inputDim)
        // Optional on input (derivable); `validate` rejects a stored value that disagrees.
        subsampling = try c.decodeIfPresent(Int.self, forKey: .subsampling) ?? Self.context(of: layers).rate
        frameDurationMs = try c.decodeIfPresent(Double.self, forKey: .frameDurationMs) ?? 10
    }

    /// Channels per output frame (the vocabulary size for a CTC model); `inputDim` for no layers.
    public var outputDim: Int { Self.outputDim(layers, input: inputDim) }

    /// Future input frames an output frame depends on beyond its own position `t * subsampling`:
    /// the sum over convs of `rightContext x` the input frames per frame at that conv's input.
    public var lookAheadFrames: Int { Self.context(of: layers).right }
    public var lookAheadMs: Double { Double(lookAheadFrames) * frameDurationMs }
    /// Past input frames an output frame depends on (the same sum over `leftContext`).
    public var leftContextFrames: Int { Self.context(of: layers).left }
    /// Input frames that influence one output frame: past context, the frame itself, look-ahead.
    public var receptiveFieldFrames: Int { leftContextFrames + 1 + lookAheadFrames }

    /// Every parameter the layers need, in layer order, with its shape (naming as in `LayerSpec`).
    public var parameterShapes: [(name: String, shape: [Int])] { LayerSpec.parameters(of: layers).map { ($0.name, $0.shape) } }
    /// Number of scalar parameters the layers need.
    public var parameterCount: Int { parameterShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// Checks that the layers chain: channel counts agree, residual bodies keep shape and frame rate,
    /// groups is 1 or depthwise, contexts fit the kernel, names are unique, `subsampling` matches.
    public func validate(file: String = "<memory>") throws(ModelError) {
        func fail(_ reason: String) -> ModelError { .inconsistentArchitecture(file: file, reason: reason) }
        func inRange(_ value: Int, _ range: ClosedRange<Int>) -> Bool { range.contains(value) }
        let channelLimit = "\(Limits.channels.lowerBound)...\(Limits.channels.upperBound)"
        guard inRange(inputDim, Limits.channels) else { throw fail("input_dim is \(inputDim); it must be in \(channelLimit)") }
        guard frameDurationMs > 0, frameDurationMs.isFinite else { throw fail("frame_duration_ms is \(frameDurationMs); it must be positive") }
        guard !layers.isEmpty else { throw fail("the layer list is empty") }
        var names = Set<String>()
        func check(_ layers: [LayerSpec], input: Int, path: String) throws(ModelError) -> (channels: Int, rate: Int) {
            var channels = input
            var rate = 1
            for (i, layer) in layers.enumerated() {
                let at = "\(path)layer \(i)"
                func claim(_ name: String) throws(ModelError) {
                    guard !name.isEmpty else { throw fail("\(at) has an empty name") }
                    guard names.insert(name).inserted else { throw fail("\(at): name '\(name)' is used twice, so their parameters would collide") }
                }
                switch layer {
                case .conv1d(let s):
                    try claim(s.name)
                    guard s.inChannels == channels else { throw fail("\(at) conv1d '\(s.name)' takes \(s.inChannels) channels but receives \(channels)") }
                    guard inRange(s.outChannels, Limits.channels) else {
                        throw fail("\(at) conv1d '\(s.name)' has \(s.outChannels) output channels; it must have \(channelLimit)")
                    }
                    guard inRange(s.kernel, Limits.kernel) else {
                        throw fail("\(at) conv1d '\(s.name)' has kernel \(s.kernel); it must be in \(Limits.kernel.lowerBound)...\(Limits.kernel.upperBound)")
                    }
                    guard inRange(s.stride, Limits.stride) else {
                        throw fail("\(at) conv1d '\(s.name)' has stride \(s.stride); it must be in \(Limits.stride.lowerBound)...\(Limits.stride.upperBound)")
                    }
                    guard s.rightContext >= 0, s.rightContext < s.kernel else {
                        throw fail("\(at) conv1d '\(s.name)' has rightContext \(s.rightContext); it must be in 0...\(s.kernel - 1) (kernel - 1)")
                    }
                    guard s.groups == 1 || (s.groups == s.inChannels && s.inChannels == s.outChannels) else {
                        throw fail("\(at) conv1d '\(s.name)' has groups \(s.groups); only 1 or depthwise (groups == in == out channels) are supported")
                    }
                    // The im2col buffer holds in x kernel values per output frame (each within its own
                    // limit, their product up to 4 M: gigabytes for one block of frames).
                    guard s.groups != 1 || s.inChannels * s.kernel <= Limits.convolutionWindow else {
                        throw fail("\(at) conv1d '\(s.name)' sees \(s.inChannels) channels x kernel \(s.kernel) per frame; at most \(Limits.convolutionWindow) is supported")
                    }
                    channels = s.outChannels
                    rate *= s.stride  // both bounded above: cannot overflow
                    guard rate <= Limits.subsampling.upperBound else {
                        throw fail("\(at) conv1d '\(s.name)' brings the subsampling to \(rate); at most \(Limits.subsampling.upperBound) is supported")
                    }
                case .dense(let s):
                    try claim(s.name)
                    guard s.inFeatures == channels else { throw fail("\(at) dense '\(s.name)' takes \(s.inFeatures) features but receives \(channels)") }
                    guard inRange(s.outFeatures, Limits.channels) else {
                        throw fail("\(at) dense '\(s.name)' has \(s.outFeatures) outputs; it must have \(channelLimit)")
                    }
                    channels = s.outFeatures
                case .layerNorm(let s):
                    try claim(s.name)
                    guard s.dim == channels else { throw fail("\(at) layernorm '\(s.name)' has dim \(s.dim) but receives \(channels) channels") }
                    guard s.epsilon > 0, s.epsilon.isFinite else { throw fail("\(at) layernorm '\(s.name)' has epsilon \(s.epsilon); it must be positive") }
                case .relu:
                    break
                case .residual(let name, let body):
                    try claim(name)
                    let inner = try check(body, input: channels, path: "\(at) (residual '\(name)') ")
                    guard inner.channels == channels else {
                        throw fail("\(at) residual '\(name)' body turns \(channels) channels into \(inner.channels); it must keep them")
                    }
                    guard inner.rate == 1 else {
                        throw fail("\(at) residual '\(name)' body subsamples by \(inner.rate); it must keep the frame rate")
                    }
                }
            }
            return (channels, rate)
        }
        let result = try check(layers, input: inputDim, path: "")
        guard result.rate == subsampling else {
            throw fail("subsampling is stored as \(subsampling) but the layer strides multiply to \(result.rate)")
        }
    }

    static func outputDim(_ layers: [LayerSpec], input: Int) -> Int {
        var channels = input
        for layer in layers {
            switch layer {
            case .conv1d(let s): channels = s.outChannels
            case .dense(let s): channels = s.outFeatures
            case .layerNorm, .relu: break
            case .residual(_, let body): channels = outputDim(body, input: channels)
            }
        }
        return channels
    }

    /// Input frames per frame after `layers` (`rate`), and the look-back/look-ahead in input frames.
    /// Saturating (never traps): it also runs on decoded, not yet validated layers, to fill in a missing
    /// `subsampling`; `validate` then refuses any value out of range.
    static func context(of layers: [LayerSpec], rate start: Int = 1) -> (rate: Int, left: Int, right: Int) {
        func add(_ a: Int, _ b: Int) -> Int { let r = a.addingReportingOverflow(b); return r.overflow ? (b < 0 ? .min : .max) : r.partialValue }
        func sub(_ a: Int, _ b: Int) -> Int { let r = a.subtractingReportingOverflow(b); return r.overflow ? (b > 0 ? .min : .max) : r.partialValue }
        func mul(_ a: Int, _ b: Int) -> Int {
            let r = a.multipliedReportingOverflow(by: b)
            return r.overflow ? ((a < 0) != (b < 0) ? .min : .max) : r.partialValue
        }
        var rate = start, left = 0, right = 0
        for layer in layers {
            switch layer {
            case .conv1d(let s):
                left = add(left, mul(sub(sub(s.kernel, 1), s.rightContext), rate))
                right = add(right, mul(s.rightContext, rate))
                rate = mul(rate, s.stride)
            case .residual(_, let body):
                let inner = context(of: body, rate: rate)
                left = add(left, inner.left); right = add(right, inner.right); rate = inner.rate
            case .dense, .layerNorm, .relu:
                break
            }
        }
        return (rate, left, right)
    }
}
