import Foundation
import Tensors

/// The CTC loss of one utterance and its gradient with respect to the logits.
public struct CTCLossResult: Sendable {
    /// `-log p(labels | logits)`; 0 when `impossible`.
    public var loss: Float
    /// d loss / d logits, frames x vocabulary, row-major: `softmax - occupancy`. All zeros when `impossible`.
    public var gradLogits: Matrix
    /// True when no alignment of the labels fits the frames (too few frames for the labels and the blanks
    /// that repeated labels need), or the probability underflowed to zero. The loss and gradient are then
    /// zeroed (PyTorch's `zero_infinity`) so one bad utterance cannot poison a batch; callers should count
    /// and report these rather than train on them silently.
    public var impossible: Bool
}

/// Connectionist temporal classification loss (Graves et al., 2006) for one utterance.
///
/// `logits` are frames x vocabulary (unnormalised; a log-softmax is taken per frame). `labels` are token ids
/// without blanks. The forward-backward recursions run in log space in `Double`: the path probabilities of a
/// few thousand frames are far below `Double`'s smallest normal number, so only log space is stable, and
/// `Double` keeps the log-sum-exp accumulations (thousands of terms of magnitude ~1e3-1e4) accurate to well
/// below the `Float` resolution of the results.
///
/// The gradient is taken with respect to the logits, not the log-probabilities:
/// `d loss / d z[t,k] = softmax(z[t])[k] - (1/p) * sum over paths through k at t`.
public func ctcLoss(logits: Matrix, labels: [Int], blank: Int = 0) throws(TrainingError) -> CTCLossResult {
    let frames = logits.rows, vocabulary = logits.cols
    guard blank >= 0 && blank < vocabulary else { throw .invalidBlank(blank: blank, vocabulary: vocabulary) }
    for (i, l) in labels.enumerated() where l < 0 || l >= vocabulary || l == blank {
        throw .invalidLabel(label: l, position: i, vocabulary: vocabulary, blank: blank)
    }
    let core = ctcCore(logits: logits.data.map(Double.init), frames: frames, vocabulary: vocabulary,
                       labels: labels, blank: blank)
    guard let logLikelihood = core.logLikelihood else {
        return CTCLossResult(loss: 0, gradLogits: Matrix(rows: frames, cols: vocabulary), impossible: true)
    }
    return CTCLossResult(loss: Float(-logLikelihood),
                         gradLogits: Matrix(rows: frames, cols: vocabulary, data: core.grad.map(Float.init)),
                         impossible: false)
}

/// Fewest frames that can carry `labels`: one per label plus one blank between each pair of equal neighbours.
public func ctcMinimumFrames(labels: [Int]) -> Int {
    var n = labels.count
    for i in labels.indices.dropFirst() where labels[i] == labels[i - 1] { n += 1 }
    return n
}

/// The CTC computation entirely in `Double`, so tests can check it against finite differences tightly.
/// Returns `logLikelihood == nil` when the alignment is impossible (then `grad` is all zeros).
/// `logits` and `grad` are frames x vocabulary, row-major.
func ctcCore(logits: [Double], frames: Int, vocabulary: Int, labels: [Int], blank: Int)
    -> (logLikelihood: Double?, grad: [Double]) {
    let T = frames, V = vocabulary
    var grad = [Double](repeating: 0, count: T * V)
    if T == 0 { return (labels.isEmpty ? 0 : nil, grad) }
    if T < ctcMinimumFrames(labels: labels) { return (nil, grad) }

    // Extended label sequence: blank, l1, blank, l2, ..., lL, blank.
    let S = 2 * labels.count + 1
    var ext = [Int](repeating: blank, count: S)
    for (i, l) in labels.enumerated() { ext[2 * i + 1] = l }
    // A skip from s-2 to s is allowed when s is a label that differs from the label two back.
    var canSkip = [Bool](repeating: false, count: S)
    for s in 2..<max(S, 2) where ext[s] != blank && ext[s] != ext[s - 2] { canSkip[s] = true }

    // Per-frame log-softmax (frames x vocabulary).
    var logProbs = [Double](repeating: 0, count: T * V)
    logits.withUnsafeBufferPointer { x in
        logProbs.withUnsafeMutableBufferPointer { out in
            for t in 0..<T {
                let row = UnsafeBufferPointer(rebasing: x[(t * V)..<((t + 1) * V)])
                // Non-finite logits: NaN log-probabilities make the likelihood non-finite, so the utterance is
                // reported impossible (zero loss and gradient) instead of poisoning the batch.
                if !logSoftmax(row, into: UnsafeMutableBufferPointer(rebasing: out[(t * V)..<((t + 1) * V)])) {
                    for k in 0..<V { out[t * V + k] = .nan }
                }
            }
        }
    }

    // alpha[t*S + s]: log probability of all prefixes of length t+1 that end in state s (emission at t included).
    var alpha = [Double](repeating: -.infinity, count: T * S)
    alpha[0] = logProbs[ext[0]]
    if S > 1 { alpha[1] = logProbs[ext[1]] }
    for t in 1..<T {
        let prev = (t - 1) * S, cur = t * S, lp = t * V
        // States that cannot still reach the end in the remaining frames, or were not reachable yet, stay -inf;
        // restricting s to the reachable band keeps the work proportional to the band, not T x S.
        let lo = max(0, S - 2 * (T - t)), hi = min(S, 2 * (t + 1))
        for s in lo..<hi {
            var a = alpha[prev + s]
            if s > 0 { a = logAddExp(a, alpha[prev + s - 1]) }
            if canSkip[s] { a = logAddExp(a, alpha[prev + s - 2]) }
            alpha[cur + s] = a == -.infinity ? a : a + logProbs[lp + ext[s]]
        }
    }
    let last = (T - 1) * S
    let logLikelihood = S > 1 ? logAddExp(alpha[last + S - 1], alpha[last + S - 2]) : alpha[last]
    guard logLikelihood.isFinite else { return (nil, grad) }

    // beta runs backwards in two rows; beta[s] at frame t is the log probability of the suffixes after t
    // given state s at t (emission at t excluded), so alpha + beta is the log occupancy of (t, s).
    var beta = [Double](repeating: -.infinity, count: S)
    var next = [Double](repeating: -.infinity, count: S)
    beta[S - 1] = 0
    if S > 1 { beta[S - 2] = 0 }
    var occupancy = [Double](repeating: -.infinity, count: V)
    for t in stride(from: T - 1, through: 0, by: -1) {
        if t < T - 1 {
            // beta_t(s) = logsum over successors s' in {s, s+1, s+2 (if skip)} of beta_{t+1}(s') + lp_{t+1}(s').
            let lp = (t + 1) * V
            for s in 0..<S {
                let e = next[s] == -.infinity ? -.infinity : next[s] + logProbs[lp + ext[s]]
                next[s] = e // reuse `next` as the emission-included row
            }
            for s in 0..<S {
                var b = next[s]
                if s + 1 < S { b = logAddExp(b, next[s + 1]) }
                if s + 2 < S && canSkip[s + 2] { b = logAddExp(b, next[s + 2]) }
                beta[s] = b
            }
        }
        for k in 0..<V { occupancy[k] = -.infinity }
        let cur = t * S
        for s in 0..<S { occupancy[ext[s]] = logAddExp(occupancy[ext[s]], alpha[cur + s] + beta[s]) }
        let row = t * V
        for k in 0..<V {
            grad[row + k] = exp(logProbs[row + k]) - exp(occupancy[k] - logLikelihood)
        }
        swap(&beta, &next)
    }
    return (logLikelihood, grad)
}
