import Foundation
import Model
import Tensors
@testable import Training

/// A deliberately naive forward pass in `Double`, written from `LayerSpec`'s documented semantics and
/// independent of Model's kernels. Finite differences through it have no Float rounding noise, so they
/// bound the backward passes tightly; a separate test ties it to Model's Float forward.
/// Activations are [frame][channel].
func referenceForward(_ layers: [LayerSpec], _ params: [String: [Double]], _ input: [[Double]]) -> [[Double]] {
    var x = input
    for layer in layers { x = referenceForward(layer, params, x) }
    return x
}

func referenceForward(_ layer: LayerSpec, _ params: [String: [Double]], _ x: [[Double]]) -> [[Double]] {
    switch layer {
    case .conv1d(let s):
        let T = x.count, n = (T + s.stride - 1) / s.stride
        let w = params["\(s.name).weight"]!, b = s.bias ? params["\(s.name).bias"]! : nil
        let perGroup = s.inChannels / s.groups
        var y = [[Double]](repeating: [Double](repeating: 0, count: s.outChannels), count: n)
        for t in 0..<n {
            for o in 0..<s.outChannels {
                var acc = b?[o] ?? 0
                // Output channel o of group g reads input channels g*perGroup ..< (g+1)*perGroup.
                let group = o / (s.outChannels / s.groups)
                for i in 0..<perGroup {
                    for j in 0..<s.kernel {
                        let frame = t * s.stride - s.leftContext + j
                        guard frame >= 0 && frame < T else { continue }
                        acc += w[(o * perGroup + i) * s.kernel + j] * x[frame][group * perGroup + i]
                    }
                }
                y[t][o] = acc
            }
        }
        return y
    case .dense(let s):
        let w = params["\(s.name).weight"]!, b = s.bias ? params["\(s.name).bias"]! : nil
        return x.map { (row: [Double]) -> [Double] in
            var y = [Double](repeating: 0, count: s.outFeatures)
            for o in 0..<s.outFeatures {
                var acc: Double = b?[o] ?? 0
                for i in 0..<s.inFeatures { acc += w[o * s.inFeatures + i] * row[i] }
                y[o] = acc
            }
            return y
        }
    case .layerNorm(let s):
        let g = params["\(s.name).weight"]!, b = params["\(s.name).bias"]!
        return x.map { row in
            let mean = row.reduce(0, +) / Double(row.count)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(row.count)
            let rstd = 1 / (variance + Double(s.epsilon)).squareRoot()
            return row.indices.map { (row[$0] - mean) * rstd * g[$0] + b[$0] }
        }
    case .relu:
        return x.map { $0.map { max($0, 0) } }
    case .residual(_, let body):
        let y = referenceForward(body, params, x)
        return zip(x, y).map { zip($0, $1).map(+) }
    }
}

/// Every parameter name and shape the layers need, in PyTorch layout.
func parameterShapes(_ layers: [LayerSpec]) -> [String: [Int]] {
    var out: [String: [Int]] = [:]
    for layer in layers {
        switch layer {
        case .conv1d(let s):
            out["\(s.name).weight"] = [s.outChannels, s.inChannels / s.groups, s.kernel]
            if s.bias { out["\(s.name).bias"] = [s.outChannels] }
        case .dense(let s):
            out["\(s.name).weight"] = [s.outFeatures, s.inFeatures]
            if s.bias { out["\(s.name).bias"] = [s.outFeatures] }
        case .layerNorm(let s):
            out["\(s.name).weight"] = [s.dim]; out["\(s.name).bias"] = [s.dim]
        case .relu: break
        case .residual(_, let body): out.merge(parameterShapes(body)) { a, _ in a }
        }
    }
    return out
}

/// Random parameters; LayerNorm gains around 1 so normalised activations keep their scale.
func randomParameters(_ layers: [LayerSpec], seed: UInt64, scale: Float = 0.5) -> [String: Tensor] {
    var rng = SplitMix64(seed: seed)
    var out: [String: Tensor] = [:]
    for (name, shape) in parameterShapes(layers).sorted(by: { $0.key < $1.key }) {
        let count = shape.reduce(1, *)
        let offset: Float = name.hasSuffix(".weight") && shape.count == 1 ? 1 : 0
        out[name] = Tensor(shape: shape, data: (0..<count).map { _ in offset + Float.random(in: -scale...scale, using: &rng) })
    }
    return out
}

func toRows(_ m: Matrix) -> [[Double]] { (0..<m.rows).map { m.row($0).map(Double.init) } }

/// Sum over all elements of `weights` (same shape as y) times y, in Double: a generic scalar loss whose
/// gradient with respect to y is `weights`.
func dot(_ y: [[Double]], _ weights: Matrix) -> Double {
    var s = 0.0
    for t in 0..<y.count { for c in 0..<y[t].count { s += y[t][c] * Double(weights[t, c]) } }
    return s
}

/// Central finite differences of `f` at every coordinate of `x`, in Double with step `eps`.
func finiteDifferences(_ x: [Double], eps: Double, _ f: ([Double]) -> Double) -> [Double] {
    (0..<x.count).map { i in
        var plus = x, minus = x
        plus[i] += eps; minus[i] -= eps
        return (f(plus) - f(minus)) / (2 * eps)
    }
}

/// Largest |analytic - numeric| / (1 + |numeric|): absolute for small gradients, relative for large ones.
func maxGradientError(_ analytic: [Float], _ numeric: [Double]) -> Double {
    precondition(analytic.count == numeric.count)
    var worst = 0.0
    for (a, n) in zip(analytic, numeric) { worst = max(worst, abs(Double(a) - n) / (1 + abs(n))) }
    return worst
}
