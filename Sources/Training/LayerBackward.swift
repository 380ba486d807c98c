import CBLAS
import Model
import Tensors

/// What one layer's backward pass produced: the gradient for its input (nil when not asked for, e.g. at
/// the lowest trainable layer) and the gradients of its parameters by name (empty when not asked for).
public struct LayerGradients: Sendable {
    public var gradInput: Matrix?
    public var parameters: [String: Tensor]

    public init(gradInput: Matrix?, parameters: [String: Tensor]) {
        self.gradInput = gradInput; self.parameters = parameters
    }
}

// Backward passes for each layer type, with the forward semantics of `LayerSpec` and Model's layer
// kernels: activations are [frames, channels] row-major, weights in PyTorch's layouts. Each function
// takes the layer's forward input (the training tape keeps it) and d loss / d output.

/// `C[m, n] = op(A) op(B)` row-major, overwriting C.
@inline(__always)
func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
          c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
}

/// Column sums of a [rows, cols] matrix: the bias gradient of a per-frame affine map.
func columnSums(_ m: Matrix) -> [Float] {
    var s = [Float](repeating: 0, count: m.cols)
    m.data.withUnsafeBufferPointer { d in
        s.withUnsafeMutableBufferPointer { o in
            for r in 0..<m.rows {
                let row = d.baseAddress! + r * m.cols
                for c in 0..<m.cols { o[c] += row[c] }
            }
        }
    }
    return s
}

/// Backward of a 1-D convolution (full or depthwise).
///
/// Full (groups 1): with `X` the im2col matrix [outFrames, inChannels * kernel] (column `c * kernel + j`
/// = input frame `t*stride - leftContext + j`, channel `c`), the forward is `Y = X Wᵀ + b`, so
/// `dW = dYᵀ X` and `dX = dY W`, and the input gradient is `dX` scattered back (col2im) onto the frames it
/// was gathered from, dropping the zero padding. Depthwise: the same scatter/gather per channel, in plain
/// loops over contiguous channels.
public func conv1dBackward(spec: Conv1DSpec, weight: [Float], input: Matrix, gradOutput: Matrix,
                           computeInputGradient: Bool = true, computeParameterGradients: Bool = true) -> LayerGradients {
    let T = input.rows, inC = spec.inChannels, outC = spec.outChannels, k = spec.kernel, s = spec.stride
    let left = spec.leftContext
    let n = (T + s - 1) / s
    precondition(input.cols == inC || T == 0, "conv1d '\(spec.name)' input has \(input.cols) channels, needs \(inC)")
    precondition(gradOutput.rows == n && (gradOutput.cols == outC || n == 0),
                 "conv1d '\(spec.name)' output gradient is \(gradOutput.rows)x\(gradOutput.cols), needs \(n)x\(outC)")
    let depthwise = spec.groups != 1
    let paddedRows = n == 0 ? 0 : (n - 1) * s + k
    // Padded input [paddedRows, inC]: row r is input frame r - left, zeros outside the input.
    var padded = [Float](repeating: 0, count: paddedRows * inC)
    if computeParameterGradients {
        let rows = min(T, paddedRows - left)
        if rows > 0 { padded.replaceSubrange((left * inC)..<((left + rows) * inC), with: input.data[0..<(rows * inC)]) }
    }
    var gradPadded = [Float](repeating: 0, count: computeInputGradient ? paddedRows * inC : 0)
    var params: [String: Tensor] = [:]

    if depthwise {
        // taps[j, c] = weight[c, 0, j]
        var taps = [Float](repeating: 0, count: k * outC)
        for c in 0..<outC { for j in 0..<k { taps[j * outC + c] = weight[c * k + j] } }
        var gradTaps = [Float](repeating: 0, count: computeParameterGradients ? k * outC : 0)
        gradOutput.data.withUnsafeBufferPointer { gy in
            taps.withUnsafeBufferPointer { w in
                padded.withUnsafeBufferPointer { x in
                    gradPadded.withUnsafeMutableBufferPointer { gx in
                        gradTaps.withUnsafeMutableBufferPointer { gw in
                            for i in 0..<n {
                                let g = gy.baseAddress! + i * outC
                                for j in 0..<k {
                                    let r = (i * s + j) * inC
                                    if computeInputGradient {
                                        let wj = w.baseAddress! + j * outC, dst = gx.baseAddress! + r
                                        for c in 0..<outC { dst[c] += wj[c] * g[c] }
                                    }
                                    if computeParameterGradients {
                                        let src = x.baseAddress! + r, dw = gw.baseAddress! + j * outC
                                        for c in 0..<outC { dw[c] += g[c] * src[c] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if computeParameterGradients {
            var gradWeight = [Float](repeating: 0, count: outC * k)
            for c in 0..<outC { for j in 0..<k { gradWeight[c * k + j] = gradTaps[j * outC + c] } }
            params["\(spec.name).weight"] = Tensor(shape: [outC, 1, k], data: gradWeight)
        }
    } else {
        let depth = inC * k
        if n > 0 {
            gradOutput.data.withUnsafeBufferPointer { gy in
                if computeParameterGradients {
                    // im2col [n, depth]
                    var cols = [Float](repeating: 0, count: n * depth)
                    padded.withUnsafeBufferPointer { x in
                        for i in 0..<n {
                            let row = i * depth
                            for j in 0..<k {
                                let frame = (i * s + j) * inC
                                for c in 0..<inC { cols[row + c * k + j] = x[frame + c] }
                            }
                        }
                    }
                    var gradWeight = [Float](repeating: 0, count: outC * depth)
                    cols.withUnsafeBufferPointer { x in
                        gradWeight.withUnsafeMutableBufferPointer { gw in
                            gemm(transA: true, transB: false, m: outC, n: depth, k: n, a: gy.baseAddress!, lda: outC,
                                 b: x.baseAddress!, ldb: depth, c: gw.baseAddress!, ldc: depth)
                        }
                    }
                    params["\(spec.name).weight"] = Tensor(shape: [outC, inC, k], data: gradWeight)
                }
                if computeInputGradient {
                    var gradCols = [Float](repeating: 0, count: n * depth)
                    weight.withUnsafeBufferPointer { w in
                        gradCols.withUnsafeMutableBufferPointer { gc in
                            gemm(transA: false, transB: false, m: n, n: depth, k: outC, a: gy.baseAddress!, lda: outC,
                                 b: w.baseAddress!, ldb: depth, c: gc.baseAddress!, ldc: depth)
                        }
                    }
                    // col2im: overlapping windows (kernel > stride) add up.
                    gradCols.withUnsafeBufferPointer { gc in
                        gradPadded.withUnsafeMutableBufferPointer { gx in
                            for i in 0..<n {
                                let row = gc.baseAddress! + i * depth
                                for j in 0..<k {
                                    let dst = gx.baseAddress! + (i * s + j) * inC
                                    for c in 0..<inC { dst[c] += row[c * k + j] }
                                }
                            }
                        }
                    }
                }
            }
        } else if computeParameterGradients {
            params["\(spec.name).weight"] = Tensor(zeros: [outC, inC, k])
        }
    }
    if computeParameterGradients && spec.bias {
        params["\(spec.name).bias"] = Tensor(shape: [outC], data: n > 0 ? columnSums(gradOutput) : [Float](repeating: 0, count: outC))
    }
    var gradInput: Matrix? = nil
    if computeInputGradient {
        var g = Matrix(rows: T, cols: inC)
        let rows = min(T, paddedRows - left)
        if rows > 0 { g.data.replaceSubrange(0..<(rows * inC), with: gradPadded[(left * inC)..<((left + rows) * inC)]) }
        gradInput = g
    }
    return LayerGradients(gradInput: gradInput, parameters: params)
}

/// Backward of `y = W x + b` per frame: `dW = dYᵀ X`, `db = sum_t dY`, `dX = dY W`.
public func denseBackward(spec: DenseSpec, weight: [Float], input: Matrix, gradOutput: Matrix,
                          computeInputGradient: Bool = true, computeParameterGradients: Bool = true) -> LayerGradients {
    let T = input.rows, inF = spec.inFeatures, outF = spec.outFeatures
    precondition(gradOutput.rows == T && (gradOutput.cols == outF || T == 0), "dense '\(spec.name)' output gradient shape")
    var params: [String: Tensor] = [:]
    var gradInput: Matrix? = nil
    gradOutput.data.withUnsafeBufferPointer { gy in
        if computeParameterGradients {
            var gw = [Float](repeating: 0, count: outF * inF)
            if T > 0 {
                input.data.withUnsafeBufferPointer { x in
                    gw.withUnsafeMutableBufferPointer { g in
                        gemm(transA: true, transB: false, m: outF, n: inF, k: T, a: gy.baseAddress!, lda: outF,
                             b: x.baseAddress!, ldb: inF, c: g.baseAddress!, ldc: inF)
                    }
                }
            }
            params["\(spec.name).weight"] = Tensor(shape: [outF, inF], data: gw)
            if spec.bias { params["\(spec.name).bias"] = Tensor(shape: [outF], data: T > 0 ? columnSums(gradOutput) : [Float](repeating: 0, count: outF)) }
        }
        if computeInputGradient {
            var gx = Matrix(rows: T, cols: inF)
            if T > 0 {
                weight.withUnsafeBufferPointer { w in
                    gx.data.withUnsafeMutableBufferPointer { g in
                        gemm(transA: false, transB: false, m: T, n: inF, k: outF, a: gy.baseAddress!, lda: outF,
                             b: w.baseAddress!, ldb: inF, c: g.baseAddress!, ldc: inF)
                    }
                }
            }
            gradInput = gx
        }
    }
    return LayerGradients(gradInput: gradInput, parameters: params)
}

/// Backward of LayerNorm over channels. With `xhat = (x - mean) * rstd` and `g = dY * weight`:
/// `dX = rstd * (g - mean(g) - xhat * mean(g * xhat))`, `dWeight = sum_t dY * xhat`, `dBias = sum_t dY`.
/// Mean and rstd are recomputed from the input exactly as the forward does (two passes, biased variance),
/// which is cheaper than storing them and keeps the tape to one matrix per layer.
public func layerNormBackward(spec: LayerNormSpec, weight: [Float], input: Matrix, gradOutput: Matrix,
                              computeInputGradient: Bool = true, computeParameterGradients: Bool = true) -> LayerGradients {
    let T = input.rows, d = spec.dim
    precondition(gradOutput.rows == T && (gradOutput.cols == d || T == 0), "layernorm '\(spec.name)' output gradient shape")
    var gw = [Float](repeating: 0, count: d), gb = [Float](repeating: 0, count: d)
    var gx = Matrix(rows: computeInputGradient ? T : 0, cols: d)
    var xhat = [Float](repeating: 0, count: d)
    let invD = 1 / Float(d)
    input.data.withUnsafeBufferPointer { xs in
        gradOutput.data.withUnsafeBufferPointer { gys in
            gx.data.withUnsafeMutableBufferPointer { gxs in
                weight.withUnsafeBufferPointer { w in
                    for t in 0..<T {
                        let x = xs.baseAddress! + t * d, gy = gys.baseAddress! + t * d
                        var sum: Float = 0
                        for c in 0..<d { sum += x[c] }
                        let mean = sum * invD
                        var sq: Float = 0
                        for c in 0..<d { let v = x[c] - mean; sq += v * v }
                        let rstd = 1 / (sq * invD + spec.epsilon).squareRoot()
                        for c in 0..<d { xhat[c] = (x[c] - mean) * rstd }
                        if computeParameterGradients {
                            for c in 0..<d { gw[c] += gy[c] * xhat[c]; gb[c] += gy[c] }
                        }
                        if computeInputGradient {
                            var meanG: Float = 0, meanGX: Float = 0
                            for c in 0..<d { let g = gy[c] * w[c]; meanG += g; meanGX += g * xhat[c] }
                            meanG *= invD; meanGX *= invD
                            let out = gxs.baseAddress! + t * d
                            for c in 0..<d { out[c] = rstd * (gy[c] * w[c] - meanG - xhat[c] * meanGX) }
                        }
                    }
                }
            }
        }
    }
    var params: [String: Tensor] = [:]
    if computeParameterGradients {
        params["\(spec.name).weight"] = Tensor(shape: [d], data: gw)
        params["\(spec.name).bias"] = Tensor(shape: [d], data: gb)
    }
    return LayerGradients(gradInput: computeInputGradient ? gx : nil, parameters: params)
}

/// Backward of `max(0, x)`: the gradient passes where the input was positive.
public func reluBackward(input: Matrix, gradOutput: Matrix) -> Matrix {
    precondition(input.rows == gradOutput.rows && input.cols == gradOutput.cols, "relu gradient shape")
    var g = gradOutput
    g.data.withUnsafeMutableBufferPointer { gp in
        input.data.withUnsafeBufferPointer { xp in
            for i in 0..<gp.count { gp[i] = xp[i] > 0 ? gp[i] : 0 }
        }
    }
    return g
}
