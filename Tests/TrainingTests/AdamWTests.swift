import Foundation
import Testing
import Tensors
@testable import Training

@Suite struct AdamWTests {
    /// A NaN or infinite gradient is refused before anything changes: clipping cannot fix it (a NaN norm
    /// compares false and left the scale at 1; an infinite one scaled by 0, giving inf x 0 = NaN), and one
    /// applied update made every parameter and moment NaN for good. The next finite update is step 1.
    @Test(arguments: [Float.nan, .infinity])
    func nonFiniteGradientsChangeNothing(badValue: Float) throws {
        let start: [String: Tensor] = ["l.weight": Tensor(shape: [2, 1], data: [1, -2]), "l.bias": Tensor(shape: [1], data: [0.5])]
        var params = start
        var opt = AdamW(config: AdamWConfig(schedule: LRSchedule(peak: 0.01), weightDecay: 0.1, maxGradNorm: 1))
        var reference = opt
        let good: [String: Tensor] = ["l.weight": Tensor(shape: [2, 1], data: [0.5, -3]), "l.bias": Tensor(shape: [1], data: [0.1])]
        var bad = good
        bad["l.bias"] = Tensor(shape: [1], data: [badValue])
        #expect(throws: TrainingError.nonFiniteGradient) { try opt.update(parameters: &params, gradients: bad) }
        #expect(params == start && opt.step == 0 && opt.state(parameters: params) == reference.state(parameters: params))
        var expected = start
        try reference.update(parameters: &expected, gradients: good)
        #expect(try opt.update(parameters: &params, gradients: good).step == 1)
        #expect(params == expected)
    }

    @Test func firstStepMatchesHandComputation() throws {
        // Step 1: m_hat = g and v_hat = g^2, so the Adam step is lr * g / (|g| + eps) ~ lr * sign(g).
        var params: [String: Tensor] = [
            "l.weight": Tensor(shape: [2, 1], data: [1, -2]),
            "l.bias": Tensor(shape: [1], data: [0.5]),
        ]
        let grads: [String: Tensor] = [
            "l.weight": Tensor(shape: [2, 1], data: [0.5, -3]),
            "l.bias": Tensor(shape: [1], data: [0.1]),
        ]
        var opt = AdamW(config: AdamWConfig(schedule: LRSchedule(peak: 0.01), weightDecay: 0.1, maxGradNorm: nil))
        let report = try opt.update(parameters: &params, gradients: grads)
        #expect(report.step == 1 && report.learningRate == 0.01 && report.clipScale == 1)
        // weight: p * (1 - lr * wd) - lr * g / (|g| + 1e-8); bias: no decay.
        #expect(abs(params["l.weight"]!.data[0] - (1 * 0.999 - 0.01)) < 1e-6)
        #expect(abs(params["l.weight"]!.data[1] - (-2 * 0.999 + 0.01)) < 1e-6)
        #expect(abs(params["l.bias"]!.data[0] - 0.49) < 1e-6)
    }

    @Test func severalStepsMatchNumPyReferenceWithScheduleClippingAndFreezing() throws {
        let config = AdamWConfig(schedule: LRSchedule(peak: 0.05, warmupSteps: 2, decay: .cosine(totalSteps: 6, floor: 0.001)),
                                 beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.2, maxGradNorm: 0.7)
        var params: [String: Tensor] = [
            "a.weight": Tensor(shape: [2, 3], data: [0.3, -0.2, 0.9, 1.5, -1.1, 0.05]),
            "a.bias": Tensor(shape: [2], data: [0.1, -0.4]),
            "frozen.weight": Tensor(shape: [1, 2], data: [2, 3]),
        ]
        let initial = params
        var rng = SplitMix64(seed: 4)
        var gradSequence: [[String: Tensor]] = []
        for _ in 0..<5 {
            gradSequence.append(params.mapValues { t in Tensor(shape: t.shape, data: t.data.map { _ in Float.random(in: -1...1, using: &rng) }) })
        }
        var opt = AdamW(config: config)
        var lrs: [Float] = []
        for g in gradSequence {
            lrs.append(try opt.update(parameters: &params, gradients: g, trainable: ["a.weight", "a.bias"]).learningRate)
        }
        #expect(params["frozen.weight"] == initial["frozen.weight"])

        struct Input: Encodable { var w: [Float]; var b: [Float]; var gw: [[Float]]; var gb: [[Float]]; var lrs: [Float] }
        let script = """
        import json, sys, numpy as np
        d = json.load(sys.stdin)
        p = {"w": np.array(d["w"], np.float64), "b": np.array(d["b"], np.float64)}
        m = {k: np.zeros_like(v) for k, v in p.items()}; v = {k: np.zeros_like(x) for k, x in p.items()}
        b1, b2, eps, wd, maxn = 0.8, 0.95, 1e-6, 0.2, 0.7
        for t, lr in enumerate(d["lrs"], start=1):
            g = {"w": np.array(d["gw"][t-1], np.float64), "b": np.array(d["gb"][t-1], np.float64)}
            norm = np.sqrt(sum((x**2).sum() for x in g.values()))
            s = min(1.0, maxn / (norm + 1e-6))
            for k in p:
                gk = g[k] * s
                if k == "w": p[k] = p[k] * (1 - lr * wd)
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                p[k] = p[k] - lr / (1 - b1**t) * m[k] / (np.sqrt(v[k]) / np.sqrt(1 - b2**t) + eps)
        # The schedule: linear warm-up over 2 steps to 0.05, then cosine to 0.001 at step 6.
        import math
        ref_lrs = [0.05 * t / 2 if t <= 2 else 0.001 + (0.05 - 0.001) * 0.5 * (1 + math.cos(math.pi * min(1, (t - 2) / 4))) for t in range(1, 6)]
        print(json.dumps({"w": p["w"].tolist(), "b": p["b"].tolist(), "lrs": ref_lrs}))
        """
        struct Output: Decodable { var w: [Double]; var b: [Double]; var lrs: [Double] }
        let ref = try runPythonReference(script, input: Input(
            w: initial["a.weight"]!.data, b: initial["a.bias"]!.data,
            gw: gradSequence.map { $0["a.weight"]!.data }, gb: gradSequence.map { $0["a.bias"]!.data }, lrs: lrs), as: Output.self)
        for (a, b) in zip(lrs, ref.lrs) { #expect(abs(Double(a) - b) < 1e-7) }
        // Float32 arithmetic over 5 steps of size <= 0.05: rounding error ~ 1e-7 per op; 1e-5 is a safe margin
        // that is still far below one step (a wrong formula shifts values by ~1e-3 or more).
        for (a, b) in zip(params["a.weight"]!.data, ref.w) { #expect(abs(Double(a) - b) < 1e-5, "\(a) vs \(b)") }
        for (a, b) in zip(params["a.bias"]!.data, ref.b) { #expect(abs(Double(a) - b) < 1e-5, "\(a) vs \(b)") }
    }

    @Test func clippingScalesGradientsToTheMaxNorm() {
        var grads: [String: Tensor] = ["x": Tensor(shape: [2], data: [3, 4]), "y": Tensor(shape: [1], data: [12])]
        let before = clipByGlobalNorm(&grads, maxNorm: 2.6)
        #expect(before == 13)
        #expect(abs(globalNorm(grads) - 2.6) < 1e-5)
        #expect(abs(grads["x"]!.data[0] / grads["x"]!.data[1] - 0.75) < 1e-6, "direction is kept")
        var small: [String: Tensor] = ["x": Tensor(shape: [2], data: [0.3, 0.4])]
        clipByGlobalNorm(&small, maxNorm: 1)
        #expect(small["x"]!.data == [0.3, 0.4], "gradients under the limit are untouched")
    }

    @Test func updateWithClippingEqualsUpdateWithPreClippedGradients() throws {
        let params: [String: Tensor] = ["w": Tensor(shape: [2, 2], data: [1, 2, 3, 4])]
        var grads: [String: Tensor] = ["w": Tensor(shape: [2, 2], data: [10, -20, 5, 7])]
        var p1 = params, p2 = params
        var clipping = AdamW(config: AdamWConfig(schedule: LRSchedule(peak: 0.1), maxGradNorm: 1))
        var plain = AdamW(config: AdamWConfig(schedule: LRSchedule(peak: 0.1), maxGradNorm: nil))
        for _ in 0..<3 { try clipping.update(parameters: &p1, gradients: grads) }
        clipByGlobalNorm(&grads, maxNorm: 1)
        for _ in 0..<3 { try plain.update(parameters: &p2, gradients: grads) }
        for (a, b) in zip(p1["w"]!.data, p2["w"]!.data) { #expect(abs(a - b) < 1e-6) }
    }

    @Test func stateRoundTripsExactlyAndResumesIdentically() throws {
        let config = AdamWConfig(schedule: LRSchedule(peak: 0.02, warmupSteps: 3, decay: .inverseSqrt))
        var params: [String: Tensor] = ["a.weight": Tensor(shape: [3, 2], data: [1, 2, 3, 4, 5, 6]), "a.bias": Tensor(shape: [3], data: [0, 0, 1])]
        var rng = SplitMix64(seed: 8)
        func grads() -> [String: Tensor] { params.mapValues { Tensor(shape: $0.shape, data: $0.data.map { _ in Float.random(in: -1...1, using: &rng) }) } }
        var opt = AdamW(config: config)
        for _ in 0..<4 { try opt.update(parameters: &params, gradients: grads()) }
        let saved = opt.state(parameters: params)
        #expect(saved["adamw.m.a.weight"]?.shape == [3, 2])
        var restored = try AdamW(config: config, state: saved.merging(params) { a, _ in a })
        #expect(restored.step == 4)
        #expect(restored.state(parameters: params) == saved)
        let g = grads()
        var pa = params, pb = params
        try opt.update(parameters: &pa, gradients: g)
        try restored.update(parameters: &pb, gradients: g)
        #expect(pa == pb, "bit-identical after resume")
    }

    @Test func largeStepCountsSurviveTheFloatCheckpoint() throws {
        var saved = AdamW(config: AdamWConfig(schedule: LRSchedule(peak: 1))).state(shapes: [:])
        saved["adamw.step"] = Tensor(shape: [2], data: [5, 3])
        #expect(try AdamW(config: AdamWConfig(schedule: LRSchedule(peak: 1)), state: saved).step == 5 + 3 << 24)
        saved["adamw.step"] = Tensor(shape: [1], data: [5])
        #expect(throws: TrainingError.self) { try AdamW(config: AdamWConfig(schedule: LRSchedule(peak: 1)), state: saved) }
    }

    /// A checkpoint whose moments do not fit the parameters (another model's, or doctored) is refused
    /// by name, both when checked after restoring and by `update` itself, whose loop indexes the
    /// moments unchecked and would otherwise run past their end.
    @Test func restoredMomentsOfTheWrongSizeAreRefused() throws {
        let config = AdamWConfig(schedule: LRSchedule(peak: 0.01))
        var params: [String: Tensor] = ["l.weight": Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6]), "l.bias": Tensor(shape: [2], data: [0, 0])]
        let grads = params.mapValues { Tensor(shape: $0.shape, data: $0.data.map { _ in 0.5 }) }
        var original = AdamW(config: config)
        try original.update(parameters: &params, gradients: grads)
        var state = original.state(parameters: params)
        // Intact: accepted.
        try AdamW(config: config, state: state).validateState(for: params)

        state["adamw.m.l.weight"] = Tensor(shape: [2], data: [0.1, 0.2])
        state["adamw.v.l.weight"] = Tensor(shape: [2], data: [0.1, 0.2])
        var shrunk = try AdamW(config: config, state: state)
        #expect(throws: TrainingError.self) { try shrunk.validateState(for: params) }
        do { try shrunk.validateState(for: params) } catch {
            #expect(error.description.contains("'l.weight'") && error.description.contains("2 values") && error.description.contains("6"))
        }
        let before = params
        #expect(throws: TrainingError.self) { try shrunk.update(parameters: &params, gradients: grads) }
        #expect(params == before, "a refused update must leave the parameters alone")

        // Moments for a parameter the model does not have.
        var foreign = original.state(parameters: params)
        foreign["adamw.m.other.weight"] = Tensor(shape: [1], data: [0])
        foreign["adamw.v.other.weight"] = Tensor(shape: [1], data: [0])
        #expect(throws: TrainingError.self) { try AdamW(config: config, state: foreign).validateState(for: params) }
    }

    @Test func scheduleWarmsUpLinearlyThenDecays() {
        let cosine = LRSchedule(peak: 1, warmupSteps: 10, decay: .cosine(totalSteps: 110, floor: 0.1))
        #expect(cosine.learningRate(step: 1) == 0.1)
        #expect(cosine.learningRate(step: 10) == 1)
        #expect(abs(cosine.learningRate(step: 60) - 0.55) < 1e-6)
        #expect(abs(cosine.learningRate(step: 110) - 0.1) < 1e-6)
        #expect(abs(cosine.learningRate(step: 500) - 0.1) < 1e-6)
        let inv = LRSchedule(peak: 1, warmupSteps: 4, decay: .inverseSqrt)
        #expect(inv.learningRate(step: 4) == 1)
        #expect(abs(inv.learningRate(step: 16) - 0.5) < 1e-6)
    }

    @Test func weightDecaySkipsBiasesAndLayerNormParameters() {
        #expect(AdamW.decays(Tensor(zeros: [4, 3])))
        #expect(AdamW.decays(Tensor(zeros: [4, 1, 3])))
        #expect(!AdamW.decays(Tensor(zeros: [4])))
    }
}
