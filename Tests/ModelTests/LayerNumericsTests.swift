import Foundation
import Testing
import Tensors
@testable import Model

/// The layers written directly from `LayerSpec`'s documentation in NumPy (float64): output frame t of
/// a conv reads input frames t*stride - leftContext + j for j < kernel, zeros outside the input.
private let referenceScript = #"""
import json, sys
import numpy as np
d = sys.argv[1]
def load(name, shape): return np.fromfile(f"{d}/{name}.bin", dtype="<f4").astype(np.float64).reshape(shape)
def conv(x, w, b, stride, right, groups):
    T = x.shape[0]; cout, _, K = w.shape
    left = K - 1 - right
    n = -(-T // stride)
    y = np.zeros((n, cout))
    for t in range(n):
        for j in range(K):
            u = t * stride - left + j
            if 0 <= u < T:
                y[t] += (w[:, :, j] @ x[u]) if groups == 1 else w[:, 0, j] * x[u]
    return y + b
def dense(x, w, b): return x @ w.T + b
def layernorm(x, g, b, eps):
    m = x.mean(axis=1, keepdims=True); v = ((x - m) ** 2).mean(axis=1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b
for i, c in enumerate(json.load(open(f"{d}/cases.json"))):
    p = f"case{i}_"
    T, C = c["T"], c["cin"]
    x = load(p + "x", (T, C))
    if c["kind"] == "conv":
        g = c["groups"]
        y = conv(x, load(p + "w", (c["cout"], C // g, c["k"])), load(p + "b", (c["cout"],)), c["stride"], c["right"], g)
    elif c["kind"] == "dense":
        y = dense(x, load(p + "w", (c["cout"], C)), load(p + "b", (c["cout"],)))
    elif c["kind"] == "layernorm":
        y = layernorm(x, load(p + "w", (C,)), load(p + "b", (C,)), c["eps"])
    elif c["kind"] == "residual":
        h = conv(x, load(p + "dw", (C, 1, c["k"])), load(p + "db", (C,)), 1, c["right"], C)
        h = np.maximum(h, 0)
        y = x + dense(h, load(p + "w", (C, C)), load(p + "b", (C,)))
    y.astype("<f4").tofile(f"{d}/{p}y.bin")
"""#

/// Swift's result and the shape the reference must produce, per case.
private struct Case {
    var json: [String: Any]
    var arrays: [String: [Float]]
    var swiftOutput: Matrix
}

/// Runs every case through the NumPy reference; returns the largest absolute difference per case.
private func compareWithNumPy(_ cases: [Case]) throws -> [Float] {
    let dir = try TempDir(); defer { dir.cleanup() }
    for (i, c) in cases.enumerated() {
        for (name, values) in c.arrays { try writeFloats(values, to: dir.file("case\(i)_\(name).bin")) }
    }
    try JSONSerialization.data(withJSONObject: cases.map(\.json)).write(to: URL(fileURLWithPath: dir.file("cases.json")))
    _ = try Python.run(referenceScript, [dir.path])
    return try cases.enumerated().map { i, c in
        let y = try readFloats(dir.file("case\(i)_y.bin"))
        #expect(y.count == c.swiftOutput.data.count, "case \(i) \(c.json): reference has \(y.count) values, Swift \(c.swiftOutput.data.count)")
        guard y.count == c.swiftOutput.data.count else { return .infinity }
        return Matrix(rows: c.swiftOutput.rows, cols: c.swiftOutput.cols, data: y).maxAbsDifference(c.swiftOutput)
    }
}

/// Tolerance 1e-4: values are O(1) and each output sums at most ~100 float32 products, so float32
/// rounding is ~1e-6; an indexing or padding mistake moves outputs by O(0.1).
private let tolerance: Float = 1e-4

@Suite struct LayerNumericsTests {
    @Test func conv1dMatchesNumPyForStridesKernelsContextsAndGroups() throws {
        var rng = SeededRandom(seed: 10)
        var cases: [Case] = []
        // (kernel, stride, rightContext, depthwise, T): odd and even T so the last strided window is
        // sometimes partial, T < kernel, and stride > kernel.
        let configs: [(Int, Int, Int, Bool, Int)] = [
            (3, 2, 0, false, 9), (3, 2, 1, false, 10), (3, 2, 2, false, 7), (5, 2, 0, false, 11), (5, 2, 1, false, 12),
            (5, 2, 2, false, 2), (5, 1, 2, false, 8), (1, 1, 0, false, 6), (3, 2, 1, true, 9), (5, 2, 2, true, 10),
            (5, 1, 1, true, 7), (3, 1, 0, true, 1), (1, 2, 0, false, 7), (2, 3, 1, false, 10),
        ]
        for (k, s, r, depthwise, t) in configs {
            let cin = depthwise ? 6 : 5, cout = depthwise ? 6 : 4
            let spec = Conv1DSpec(name: "c", inChannels: cin, outChannels: cout, kernel: k, stride: s, rightContext: r,
                                  groups: depthwise ? cin : 1)
            let x = rng.matrix(t, cin)
            let w = rng.floats(cout * (depthwise ? 1 : cin) * k, scale: 0.5)
            let b = rng.floats(cout)
            let y = Conv1DLayer(spec: spec, weight: w, bias: b).forward(x)
            #expect(y.rows == (t + s - 1) / s && y.cols == cout)
            cases.append(Case(json: ["kind": "conv", "T": t, "cin": cin, "cout": cout, "k": k, "stride": s, "right": r,
                                     "groups": depthwise ? cin : 1],
                              arrays: ["x": x.data, "w": w, "b": b], swiftOutput: y))
        }
        let diffs = try compareWithNumPy(cases)
        for (c, d) in zip(cases, diffs) { #expect(d < tolerance, "conv \(c.json): max difference \(d)") }
    }

    @Test func im2colTimesWeightEqualsConvolution() {
        var rng = SeededRandom(seed: 11)
        let spec = Conv1DSpec(name: "c", inChannels: 3, outChannels: 2, kernel: 3, stride: 2, rightContext: 1)
        let layer = Conv1DLayer(spec: spec, weight: rng.floats(18), bias: [0, 0])
        let x = rng.matrix(7, 3)
        let cols = layer.im2col(x)
        var y = Matrix(rows: cols.rows, cols: 2)
        for t in 0..<cols.rows { for o in 0..<2 { for i in 0..<9 { y[t, o] += cols[t, i] * layer.weight[o * 9 + i] } } }
        #expect(y.maxAbsDifference(layer.forward(x)) < 1e-5)
    }

    @Test func denseLayerNormAndResidualMatchNumPy() throws {
        var rng = SeededRandom(seed: 12)
        var cases: [Case] = []
        let x = rng.matrix(9, 7, scale: 2)
        let w = rng.floats(5 * 7, scale: 0.5), b = rng.floats(5)
        cases.append(Case(json: ["kind": "dense", "T": 9, "cin": 7, "cout": 5], arrays: ["x": x.data, "w": w, "b": b],
                          swiftOutput: DenseLayer(spec: DenseSpec(name: "d", inFeatures: 7, outFeatures: 5), weight: w, bias: b).forward(x)))

        // An offset mean tests the variance's numerical care.
        let xn = Matrix(rows: 6, cols: 16, data: rng.floats(96, scale: 3).map { $0 + 20 })
        let g = rng.floats(16).map { 1 + $0 }, gb = rng.floats(16)
        cases.append(Case(json: ["kind": "layernorm", "T": 6, "cin": 16, "eps": 1e-5], arrays: ["x": xn.data, "w": g, "b": gb],
                          swiftOutput: LayerNormLayer(spec: LayerNormSpec(name: "n", dim: 16), weight: g, bias: gb).forward(xn)))

        let c = 6
        let xr = rng.matrix(11, c)
        let dw = rng.floats(c * 5, scale: 0.5), db = rng.floats(c), rw = rng.floats(c * c, scale: 0.4), rb = rng.floats(c)
        let residual = ResidualLayer(name: "r", body: [
            .conv1d(Conv1DLayer(spec: Conv1DSpec(name: "r.dw", inChannels: c, outChannels: c, kernel: 5, rightContext: 2, groups: c), weight: dw, bias: db)),
            .relu,
            .dense(DenseLayer(spec: DenseSpec(name: "r.d", inFeatures: c, outFeatures: c), weight: rw, bias: rb)),
        ])
        cases.append(Case(json: ["kind": "residual", "T": 11, "cin": c, "k": 5, "right": 2],
                          arrays: ["x": xr.data, "dw": dw, "db": db, "w": rw, "b": rb], swiftOutput: residual.forward(xr)))

        let diffs = try compareWithNumPy(cases)
        for (c, d) in zip(cases, diffs) { #expect(d < tolerance, "\(c.json): max difference \(d)") }
    }

    @Test func reluClampsNegativesOnly() {
        let y = ReLU.forward(Matrix(rows: 1, cols: 4, data: [-1, 0, 2, -0.5]))
        #expect(y.data == [0, 0, 2, 0])
    }

    /// A subnormal std is positive and finite, but 1/std is infinite: every feature would become inf.
    @Test func aSubnormalStdIsRefused() {
        let arch = EncoderArchitecture(layers: [.dense(DenseSpec(name: "d", inFeatures: 2, outFeatures: 2, bias: false))], inputDim: 2)
        let params: [String: Tensor] = ["d.weight": Tensor(shape: [2, 2], data: [1, 0, 0, 1]),
                                        "frontend.mean": Tensor(shape: [2], data: [0, 0]),
                                        "frontend.std": Tensor(shape: [2], data: [1, 1e-39])]
        #expect(throws: ModelError.nonFiniteParameter(file: "<memory>", name: "frontend.std", index: 1)) {
            _ = try Encoder(architecture: arch, parameters: params)
        }
    }

    @Test func encoderAppliesCMVNBeforeTheFirstLayer() throws {
        let arch = EncoderArchitecture(layers: [.dense(DenseSpec(name: "d", inFeatures: 2, outFeatures: 2, bias: false))], inputDim: 2)
        let params: [String: Tensor] = ["d.weight": Tensor(shape: [2, 2], data: [1, 0, 0, 1]),
                                        "frontend.mean": Tensor(shape: [2], data: [1, -2]),
                                        "frontend.std": Tensor(shape: [2], data: [2, 0.5])]
        let y = try Encoder(architecture: arch, parameters: params).forward(Matrix(rows: 1, cols: 2, data: [3, -1]))
        #expect(y.data == [1, 2])
    }
}
