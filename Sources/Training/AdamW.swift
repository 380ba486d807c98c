import Foundation
import Tensors

/// A learning-rate schedule: linear warm-up from 0 to `peak` over `warmupSteps`, then a decay.
///
/// Steps count from 1 (the first optimiser update uses `learningRate(step: 1)`), as in AdamW's bias
/// correction, so a warm-up of `w` steps reaches `peak` exactly on step `w`.
public struct LRSchedule: Sendable, Equatable, Codable {
    /// What happens after the warm-up.
    public enum Decay: Sendable, Equatable, Codable {
        /// Stay at `peak`.
        case constant
        /// Half-cosine from `peak` at the end of warm-up to `floor` at `totalSteps`, then `floor`.
        case cosine(totalSteps: Int, floor: Float)
        /// `peak * sqrt(warmupSteps / step)` (the Transformer schedule); continuous at the end of warm-up.
        case inverseSqrt
    }

    public var peak: Float
    public var warmupSteps: Int
    public var decay: Decay

    public init(peak: Float, warmupSteps: Int = 0, decay: Decay = .constant) {
        self.peak = peak; self.warmupSteps = max(0, warmupSteps); self.decay = decay
    }

    public func learningRate(step: Int) -> Float {
        let s = Double(max(step, 1)), w = Double(warmupSteps), p = Double(peak)
        if s <= w { return Float(p * s / w) }
        switch decay {
        case .constant:
            return peak
        case let .cosine(totalSteps, floor):
            let span = Double(totalSteps) - w
            guard span > 0 else { return floor }
            let progress = min(1, (s - w) / span)
            return Float(Double(floor) + (p - Double(floor)) * 0.5 * (1 + cos(Double.pi * progress)))
        case .inverseSqrt:
            return w > 0 ? Float(p * (w / s).squareRoot()) : Float(p / s.squareRoot())
        }
    }
}

/// Hyper-parameters of `AdamW`.
public struct AdamWConfig: Sendable, Equatable, Codable {
    public var schedule: LRSchedule
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Decoupled weight decay (Loshchilov & Hutter): `p -= lr * weightDecay * p` before the Adam step.
    public var weightDecay: Float
    /// Clip the global L2 norm of the trainable gradients to this value; nil disables clipping.
    public var maxGradNorm: Float?

    public init(schedule: LRSchedule, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0.01, maxGradNorm: Float? = 1.0) {
        self.schedule = schedule; self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        self.weightDecay = weightDecay; self.maxGradNorm = maxGradNorm
    }
}

/// Global L2 norm of all `gradients` (summed in `Double`, in name order so the result is reproducible).
public func globalNorm(_ gradients: [String: Tensor]) -> Float {
    var sumSquares = 0.0
    for name in gradients.keys.sorted() { for x in gradients[name]!.data { sumSquares += Double(x) * Double(x) } }
    return Float(sumSquares.squareRoot())
}

/// Scales `gradients` so their global norm is at most `maxNorm` (PyTorch's `clip_grad_norm_`:
/// factor `min(1, maxNorm / (norm + 1e-6))`); returns the norm before clipping.
@discardableResult
public func clipByGlobalNorm(_ gradients: inout [String: Tensor], maxNorm: Float) -> Float {
    let norm = globalNorm(gradients)
    let scale = Float(min(1, Double(maxNorm) / (Double(norm) + 1e-6)))
    if scale < 1 {
        for name in gradients.keys { gradients[name]!.data = gradients[name]!.data.map { $0 * scale } }
    }
    return norm
}

/// What one optimiser step did, for logging.
public struct AdamWStepReport: Sendable, Equatable {
    /// The step number just taken (1 for the first update).
    public var step: Int
    public var learningRate: Float
    /// Global L2 norm of the trainable gradients before clipping.
    public var gradNorm: Float
    /// Factor the gradients were multiplied by (1 when not clipped).
    public var clipScale: Float
}

/// The AdamW optimiser over named parameters; owns the first and second moment estimates and the step count.
///
/// Weight decay is applied only to tensors of rank >= 2 (convolution and dense weights). Biases and
/// LayerNorm gains/offsets (rank 1) are not decayed: pulling a LayerNorm gain towards 0 or a bias towards 0
/// is not a useful prior, and it is the convention of BERT/GPT training code, so imported models behave as
/// they were trained.
///
/// The update matches PyTorch's `torch.optim.AdamW` (decay first, then bias-corrected Adam with epsilon
/// added to `sqrt(v_hat)`), with gradients clipped by global norm as `clip_grad_norm_` does
/// (`scale = min(1, maxNorm / (norm + 1e-6))`).
public struct AdamW: Sendable {
    public var config: AdamWConfig
    /// Updates taken so far.
    public private(set) var step: Int = 0
    // Moments per parameter name, same layout as the parameter.
    private var m: [String: [Float]] = [:]
    private var v: [String: [Float]] = [:]

    public init(config: AdamWConfig) { self.config = config }

    /// Whether `name`'s tensor gets weight decay: see the type's documentation.
    public static func decays(_ tensor: Tensor) -> Bool { tensor.shape.count >= 2 }

    /// One update of every parameter in `trainable` (all of `grads`' names when nil). Parameters that are
    /// not trainable, or have no gradient, are left untouched and their moments are not created.
    @discardableResult
    public mutating func update(parameters: inout [String: Tensor], gradients: [String: Tensor],
                                trainable: Set<String>? = nil) throws(TrainingError) -> AdamWStepReport {
        // Sorted so the norm's summation order (and so the result) does not depend on dictionary order.
        let names = gradients.keys.filter { trainable?.contains($0) ?? true }.sorted()
        for name in names {
            guard let p = parameters[name] else { throw .missingParameter(name) }
            let g = gradients[name]!
            guard p.shape == g.shape else { throw .parameterShape(name: name, expected: p.shape, found: g.shape) }
            // The update loop below indexes the moments unchecked: a restored moment of another size
            // would be read and written past its end.
            if let mm = m[name], mm.count != g.count { throw Self.sizeMismatch(name, moments: mm.count, parameter: p) }
        }
        var sumSquares = 0.0
        for name in names { for x in gradients[name]!.data { sumSquares += Double(x) * Double(x) } }
        let norm = sumSquares.squareRoot()
        // Clipping cannot rescue it (a NaN norm compares false, an infinite one scales by 0 to NaN), and
        // one applied update would make every parameter and moment NaN for good.
        guard norm.isFinite else { throw .nonFiniteGradient }
        var clipScale = 1.0
        if let maxNorm = config.maxGradNorm { clipScale = min(1, Double(maxNorm) / (norm + 1e-6)) }

        step += 1
        let lr = config.schedule.learningRate(step: step)
        let b1 = config.beta1, b2 = config.beta2, eps = config.epsilon
        // Bias corrections in Double: 1 - beta2^t is ~1e-3 early on and loses digits in Float.
        let c1 = Float(1 - pow(Double(b1), Double(step)))
        let c2 = Float(1 - pow(Double(b2), Double(step)))
        let stepSize = lr / c1
        let c2Root = c2.squareRoot()
        let scale = Float(clipScale)
        for name in names {
            let g = gradients[name]!.data
            var p = parameters[name]!
            var mm = m[name] ?? [Float](repeating: 0, count: g.count)
            var vv = v[name] ?? [Float](repeating: 0, count: g.count)
            let decay: Float = AdamW.decays(p) ? 1 - lr * config.weightDecay : 1
            p.data.withUnsafeMutableBufferPointer { pp in
                mm.withUnsafeMutableBufferPointer { mp in
                    vv.withUnsafeMutableBufferPointer { vp in
                        g.withUnsafeBufferPointer { gp in
                            for i in 0..<gp.count {
                                let gi = gp[i] * scale
                                mp[i] = b1 * mp[i] + (1 - b1) * gi
                                vp[i] = b2 * vp[i] + (1 - b2) * gi * gi
                                let denom = vp[i].squareRoot() / c2Root + eps
                                pp[i] = pp[i] * decay - stepSize * mp[i] / denom
                            }
                        }
                    }
                }
            }
            parameters[name] = p
            m[name] = mm
            v[name] = vv
        }
        return AdamWStepReport(step: step, learningRate: lr, gradNorm: Float(norm), clipScale: scale)
    }

    /// The optimiser state as checkpoint tensors: "adamw.m.<name>", "adamw.v.<name>" (parameter shapes) and
    /// "adamw.step" (shape [2]: step mod 2^24 and step / 2^24, so it is exact in `Float`).
    public func state(shapes: [String: [Int]]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, data) in m { out["adamw.m.\(name)"] = Tensor(shape: shapes[name] ?? [data.count], data: data) }
        for (name, data) in v { out["adamw.v.\(name)"] = Tensor(shape: shapes[name] ?? [data.count], data: data) }
        out["adamw.step"] = Tensor(shape: [2], data: [Float(step % (1 << 24)), Float(step >> 24)])
        return out
    }

    /// The optimiser state, shaped like `parameters`.
    public func state(parameters: [String: Tensor]) -> [String: Tensor] {
        state(shapes: parameters.mapValues(\.shape))
    }

    /// Checks restored moments against the parameters they belong to: every moment names a parameter
    /// and holds exactly its number of elements. Call it after `init(config:state:)` on a checkpoint.
    public func validateState(for parameters: [String: Tensor]) throws(TrainingError) {
        for name in m.keys.sorted() {
            guard let p = parameters[name] else {
                throw .optimizerState("'adamw.m.\(name)' and 'adamw.v.\(name)' belong to no parameter of the model")
            }
            if m[name]!.count != p.data.count { throw Self.sizeMismatch(name, moments: m[name]!.count, parameter: p) }
            // A non-finite moment (a run saved as it diverged, a corrupted file) turns the parameter into
            // NaN at the first step: refused here, not discovered 20 skipped batches later.
            if !m[name]!.allSatisfy(\.isFinite) || !(v[name]?.allSatisfy { $0.isFinite && $0 >= 0 } ?? true) {
                throw .optimizerState("the moments of '\(name)' hold a value that is not a finite number (the run was saved as it diverged, or the file is damaged): start again from one of the run's snapshots as model.init_from, with another --output")
            }
        }
    }

    static func sizeMismatch(_ name: String, moments: Int, parameter p: Tensor) -> TrainingError {
        .optimizerState("moments of '\(name)' hold \(moments) values but the parameter has \(p.data.count) (shape \(p.shape)); the checkpoint does not belong to this model")
    }

    /// Restores `state(...)` output exactly. Tensors whose names do not start with "adamw." are ignored, so a
    /// whole checkpoint dictionary can be passed.
    public init(config: AdamWConfig, state: [String: Tensor]) throws(TrainingError) {
        self.config = config
        guard let s = state["adamw.step"] else { throw .optimizerState("'adamw.step' is missing") }
        guard s.shape == [2], s.data.allSatisfy({ $0 >= 0 && $0 == $0.rounded() && $0 < 16_777_216 }) else {
            throw .optimizerState("'adamw.step' must hold two integers below 2^24, found \(s.data)")
        }
        step = Int(s.data[0]) + (Int(s.data[1]) << 24)
        for (key, t) in state {
            if key.hasPrefix("adamw.m.") { m[String(key.dropFirst(8))] = t.data }
            else if key.hasPrefix("adamw.v.") { v[String(key.dropFirst(8))] = t.data }
        }
        for name in m.keys where v[name]?.count != m[name]!.count {
            throw .optimizerState("moments of '\(name)' are incomplete: first and second moments must both be present with equal sizes")
        }
        for name in v.keys where m[name] == nil {
            throw .optimizerState("'adamw.m.\(name)' is missing while 'adamw.v.\(name)' is present")
        }
    }
}
