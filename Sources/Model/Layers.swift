import CBLAS
import Tensors

// The encoder's layers with their parameters. Every `forward` here is public and pure (input in, new
// output out, nothing remembered) so that Training can call them layer by layer and keep the inputs
// for its backward passes. The `run` kernels underneath work on raw row-major buffers and are shared
// by the offline forward and `StreamingEncoder`, so both compute identical arithmetic.

/// A 1-D convolution over time with its weights (see `Conv1DSpec` for the context/stride semantics).
public struct Conv1DLayer: Sendable {
    public let spec: Conv1DSpec
    /// [outChannels, inChannels / groups, kernel], row-major (PyTorch's layout).
    public let weight: [Float]
    /// [outChannels], or nil when `spec.bias` is false.
    public let bias: [Float]?
    /// Depthwise only: the weight transposed to [kernel, channels] so the inner loop runs over
    /// contiguous channels and vectorises.
    let taps: [Float]

    public var isDepthwise: Bool { spec.groups != 1 }

    /// Wraps parameters whose shapes the caller has checked (`ModelFile` and `Encoder` check them).
    public init(spec: Conv1DSpec, weight: [Float], bias: [Float]?) {
        let perGroupIn = spec.inChannels / spec.groups
        precondition(weight.count == spec.outChannels * perGroupIn * spec.kernel, "conv1d '\(spec.name)' weight size")
        precondition(bias == nil || bias!.count == spec.outChannels, "conv1d '\(spec.name)' bias size")
        self.spec = spec
        self.weight = weight
        self.bias = bias
        if spec.groups != 1 {
            var t = [Float](repeating: 0, count: spec.kernel * spec.outChannels)
            for c in 0..<spec.outChannels {
                for j in 0..<spec.kernel { t[j * spec.outChannels + c] = weight[c * spec.kernel + j] }
            }
            taps = t
        } else {
            taps = []
        }
    }

    /// `ceil(T / stride)`: the output frames an input of `inputFrames` frames gives.
    public func outputFrames(forInput inputFrames: Int) -> Int { (inputFrames + spec.stride - 1) / spec.stride }

    /// Rows of the zero-padded input that `outputs` output frames read: output `i` reads padded rows
    /// `i*stride ..< i*stride + kernel`, padded row 0 being input frame `-leftContext`.
    func paddedRows(outputs: Int) -> Int { outputs == 0 ? 0 : (outputs - 1) * spec.stride + spec.kernel }

    /// The input with `leftContext` zero frames in front and enough zero frames behind for every
    /// output frame: [paddedRows, inChannels]. Row `r` is input frame `r - leftContext`.
    public func paddedInput(_ input: Matrix) -> Matrix {
        precondition(input.cols == spec.inChannels || input.rows == 0, "conv1d '\(spec.name)' expects \(spec.inChannels) channels, got \(input.cols)")
        let n = outputFrames(forInput: input.rows)
        let p = paddedRows(outputs: n)
        var padded = Matrix(rows: p, cols: spec.inChannels)
        let copyRows = min(input.rows, p - spec.leftContext)
        if copyRows > 0 {
            let c = spec.inChannels
            padded.data.replaceSubrange((spec.leftContext * c)..<((spec.leftContext + copyRows) * c),
                                        with: input.data[0..<(copyRows * c)])
        }
        return padded
    }

    /// The im2col matrix [outputFrames, inChannels * kernel]: row `t`, column `c * kernel + j` holds
    /// input frame `t*stride - leftContext + j`, channel `c` (zero outside the input). Then a full
    /// convolution is `im2col x weightᵀ + bias`, and the weight gradient is `dYᵀ x im2col`.
    public func im2col(_ input: Matrix) -> Matrix {
        let padded = paddedInput(input)
        let n = outputFrames(forInput: input.rows)
        var cols = Matrix(rows: n, cols: spec.inChannels * spec.kernel)
        padded.data.withUnsafeBufferPointer { p in
            cols.data.withUnsafeMutableBufferPointer { c in
                im2col(padded: p.baseAddress!, outputs: n, into: c.baseAddress!)
            }
        }
        return cols
    }

    /// Whole-sequence forward: [T, inChannels] -> [ceil(T / stride), outChannels].
    public func forward(_ input: Matrix) -> Matrix {
        let n = outputFrames(forInput: input.rows)
        var out = Matrix(rows: n, cols: spec.outChannels)
        guard n > 0 else { return out }
        let padded = paddedInput(input)
        var scratch: [Float] = []
        padded.data.withUnsafeBufferPointer { p in
            out.data.withUnsafeMutableBufferPointer { o in
                run(padded: p.baseAddress!, outputs: n, into: o.baseAddress!, scratch: &scratch)
            }
        }
        return out
    }

    private func im2col(padded: UnsafePointer<Float>, outputs n: Int, into cols: UnsafeMutablePointer<Float>) {
        let inC = spec.inChannels, k = spec.kernel, s = spec.stride
        for i in 0..<n {
            let src = padded + i * s * inC
            let row = cols + i * inC * k
            for j in 0..<k {
                let frame = src + j * inC
                for c in 0..<inC { row[c * k + j] = frame[c] }
            }
        }
    }

    /// The kernel: `n` output frames from a padded buffer (see `paddedRows`) into `out`
    /// [n, outChannels]. `scratch` holds the im2col matrix between calls so streaming does not allocate.
    func run(padded: UnsafePointer<Float>, outputs n: Int, into out: UnsafeMutablePointer<Float>, scratch: inout [Float]) {
        guard n > 0 else { return }
        let inC = spec.inChannels, outC = spec.outChannels, k = spec.kernel, s = spec.stride
        for i in 0..<n {
            let o = out + i * outC
            if let bias { bias.withUnsafeBufferPointer { b in for c in 0..<outC { o[c] = b[c] } } }
            else { for c in 0..<outC { o[c] = 0 } }
        }
        if isDepthwise {
            taps.withUnsafeBufferPointer { tp in
                for i in 0..<n {
                    let o = out + i * outC
                    for j in 0..<k {
                        let x = padded + (i * s + j) * inC
                        let w = tp.baseAddress! + j * outC
                        for c in 0..<outC { o[c] += w[c] * x[c] }
                    }
                }
            }
            return
        }
        let depth = inC * k
        weight.withUnsafeBufferPointer { w in
            if k == 1 && s == 1 {
                // Pointwise: the input rows already are the im2col matrix.
                sgemmABt(m: n, n: outC, k: depth, a: padded, lda: inC, b: w.baseAddress!, c: out)
            } else {
                if scratch.count < n * depth { scratch = [Float](repeating: 0, count: n * depth) }
                scratch.withUnsafeMutableBufferPointer { sc in
                    im2col(padded: padded, outputs: n, into: sc.baseAddress!)
                    sgemmABt(m: n, n: outC, k: depth, a: sc.baseAddress!, lda: depth, b: w.baseAddress!, c: out)
                }
            }
        }
    }
}

/// `C[m, n] += A[m, k] * B[n, k]ᵀ`, all row-major: the shape of every product in the encoder
/// (activations times a PyTorch-layout weight).
@inline(__always)
func sgemmABt(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                1, a, Int32(lda), b, Int32(k), 1, c, Int32(n))
}

/// A per-frame affine map `y = W x + b` with its weights.
public struct DenseLayer: Sendable {
    public let spec: DenseSpec
    /// [outFeatures, inFeatures], row-major.
    public let weight: [Float]
    /// [outFeatures], or nil when `spec.bias` is false.
    public let bias: [Float]?

    public init(spec: DenseSpec, weight: [Float], bias: [Float]?) {
        precondition(weight.count == spec.inFeatures * spec.outFeatures, "dense '\(spec.name)' weight size")
        precondition(bias == nil || bias!.count == spec.outFeatures, "dense '\(spec.name)' bias size")
        self.spec = spec; self.weight = weight; self.bias = bias
    }

    /// [T, inFeatures] -> [T, outFeatures].
    public func forward(_ input: Matrix) -> Matrix {
        precondition(input.cols == spec.inFeatures || input.rows == 0, "dense '\(spec.name)' expects \(spec.inFeatures) features, got \(input.cols)")
        var out = Matrix(rows: input.rows, cols: spec.outFeatures)
        input.data.withUnsafeBufferPointer { x in
            out.data.withUnsafeMutableBufferPointer { o in run(x.baseAddress!, rows: input.rows, into: o.baseAddress!) }
        }
        return out
    }

    func run(_ x: UnsafePointer<Float>, rows n: Int, into out: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        let outF = spec.outFeatures
        for i in 0..<n {
            let o = out + i * outF
            if let bias { bias.withUnsafeBufferPointer { b in for c in 0..<outF { o[c] = b[c] } } }
            else { for c in 0..<outF { o[c] = 0 } }
        }
        weight.withUnsafeBufferPointer { w in
            sgemmABt(m: n, n: outF, k: spec.inFeatures, a: x, lda: spec.inFeatures, b: w.baseAddress!, c: out)
        }
    }
}

/// Normalisation over each frame's channels, `y = (x - mean) / sqrt(var + eps) * weight + bias`, with
/// the biased variance as PyTorch's `LayerNorm` computes it.
public struct LayerNormLayer: Sendable {
    public let spec: LayerNormSpec
    /// [dim]
    public let weight: [Float]
    /// [dim]
    public let bias: [Float]

    public init(spec: LayerNormSpec, weight: [Float], bias: [Float]) {
        precondition(weight.count == spec.dim && bias.count == spec.dim, "layernorm '\(spec.name)' parameter size")
        self.spec = spec; self.weight = weight; self.bias = bias
    }

    /// [T, dim] -> [T, dim].
    public func forward(_ input: Matrix) -> Matrix {
        precondition(input.cols == spec.dim || input.rows == 0, "layernorm '\(spec.name)' expects \(spec.dim) channels, got \(input.cols)")
        var out = input
        out.data.withUnsafeMutableBufferPointer { run(inPlace: $0.baseAddress!, rows: input.rows) }
        return out
    }

    func run(inPlace x: UnsafeMutablePointer<Float>, rows n: Int) {
        let d = spec.dim
        let invD = 1 / Float(d)
        weight.withUnsafeBufferPointer { g in
            bias.withUnsafeBufferPointer { b in
                for i in 0..<n {
                    let row = x + i * d
                    var sum: Float = 0
                    for c in 0..<d { sum += row[c] }
                    let mean = sum * invD
                    // Two passes: subtracting the mean first keeps the variance accurate when
                    // |mean| >> std, which E[x^2] - mean^2 would not.
                    var sq: Float = 0
                    for c in 0..<d { let v = row[c] - mean; sq += v * v }
                    let scale = 1 / (sq * invD + spec.epsilon).squareRoot()
                    for c in 0..<d { row[c] = (row[c] - mean) * scale * g[c] + b[c] }
                }
            }
        }
    }
}

/// `y = max(0, x)`, element-wise.
public enum ReLU {
    public static func forward(_ input: Matrix) -> Matrix {
        var out = input
        out.data.withUnsafeMutableBufferPointer { run(inPlace: $0.baseAddress!, count: $0.count) }
        return out
    }

    static func run(inPlace x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = max(x[i], 0) }
    }
}

/// `y = x + body(x)`, the body keeping frame rate and channel count.
public struct ResidualLayer: Sendable {
    public let name: String
    public let body: [Layer]

    public init(name: String, body: [Layer]) { self.name = name; self.body = body }

    public func forward(_ input: Matrix) -> Matrix {
        var y = Layer.forward(body, input)
        precondition(y.rows == input.rows && (y.cols == input.cols || y.rows == 0), "residual '\(name)' body changed the shape")
        for i in 0..<y.data.count { y.data[i] += input.data[i] }
        return y
    }
}

/// One encoder layer with its parameters, built from a `LayerSpec`.
public indirect enum Layer: Sendable {
    case conv1d(Conv1DLayer)
    case dense(DenseLayer)
    case layerNorm(LayerNormLayer)
    case relu
    case residual(ResidualLayer)

    /// Builds the layer, taking its parameters from `parameters` by the names in `LayerSpec`'s docs.
    /// Checks presence and shape; `file` names the source in errors.
    public init(spec: LayerSpec, parameters: [String: Tensor], file: String = "<memory>") throws(ModelError) {
        func param(_ p: ParameterSpec) throws(ModelError) -> [Float] {
            guard let t = parameters[p.name] else { throw .missingParameter(file: file, name: p.name, expectedShape: p.shape) }
            guard t.shape == p.shape else { throw .wrongShape(file: file, name: p.name, expected: p.shape, found: t.shape) }
            return t.data
        }
        let needed = spec.parameters  // weight, then bias when there is one
        switch spec {
        case .conv1d(let s):
            self = .conv1d(Conv1DLayer(spec: s, weight: try param(needed[0]), bias: s.bias ? try param(needed[1]) : nil))
        case .dense(let s):
            self = .dense(DenseLayer(spec: s, weight: try param(needed[0]), bias: s.bias ? try param(needed[1]) : nil))
        case .layerNorm(let s):
            self = .layerNorm(LayerNormLayer(spec: s, weight: try param(needed[0]), bias: try param(needed[1])))
        case .relu:
            self = .relu
        case .residual(let name, let body):
            var layers: [Layer] = []
            for b in body { layers.append(try Layer(spec: b, parameters: parameters, file: file)) }
            self = .residual(ResidualLayer(name: name, body: layers))
        }
    }

    /// The description this layer was built from.
    public var spec: LayerSpec {
        switch self {
        case .conv1d(let l): return .conv1d(l.spec)
        case .dense(let l): return .dense(l.spec)
        case .layerNorm(let l): return .layerNorm(l.spec)
        case .relu: return .relu
        case .residual(let r): return .residual(name: r.name, body: r.body.map(\.spec))
        }
    }

    public func forward(_ input: Matrix) -> Matrix {
        switch self {
        case .conv1d(let l): return l.forward(input)
        case .dense(let l): return l.forward(input)
        case .layerNorm(let l): return l.forward(input)
        case .relu: return ReLU.forward(input)
        case .residual(let l): return l.forward(input)
        }
    }

    /// Runs `layers` in order.
    public static func forward(_ layers: [Layer], _ input: Matrix) -> Matrix {
        var x = input
        for l in layers { x = l.forward(x) }
        return x
    }
}
