import Foundation
import Testing
import Tensors
@testable import Training

/// Deterministic pseudo-random matrix so failures reproduce.
func randomMatrix(rows: Int, cols: Int, seed: UInt64, scale: Float = 1) -> Matrix {
    var rng = SplitMix64(seed: seed)
    return Matrix(rows: rows, cols: cols, data: (0..<(rows * cols)).map { _ in Float.random(in: -scale...scale, using: &rng) })
}

/// -log of the sum, over every path of length T over V symbols that collapses to `labels`, of its probability.
func bruteForceCTC(logits: Matrix, labels: [Int], blank: Int) -> Double {
    let T = logits.rows, V = logits.cols
    var probs = [Double](repeating: 0, count: T * V)
    for t in 0..<T {
        let row = (0..<V).map { Double(logits[t, $0]) }
        let z = row.map { exp($0) }.reduce(0, +)
        for k in 0..<V { probs[t * V + k] = exp(row[k]) / z }
    }
    var total = 0.0
    var path = [Int](repeating: 0, count: T)
    let count = Int(pow(Double(V), Double(T)))
    for index in 0..<count {
        var n = index
        for t in 0..<T { path[t] = n % V; n /= V }
        var collapsed: [Int] = []
        var previous = -1
        for s in path {
            if s != previous && s != blank { collapsed.append(s) }
            previous = s
        }
        guard collapsed == labels else { continue }
        var p = 1.0
        for t in 0..<T { p *= probs[t * V + path[t]] }
        total += p
    }
    return -log(total)
}

@Suite struct CTCLossTests {
    @Test(arguments: [
        (6, 4, [Int]()), (6, 4, [1]), (6, 4, [1, 2]), (6, 4, [1, 1]), (6, 4, [2, 2, 2]),
        (5, 3, [1, 2, 1]), (6, 4, [3, 1, 3]), (4, 2, [1, 1]), (1, 3, [2]), (6, 3, [1, 2, 2]),
    ])
    func lossEqualsBruteForceSumOverAllAlignments(frames: Int, vocabulary: Int, labels: [Int]) throws {
        for seed in UInt64(1)...3 {
            let logits = randomMatrix(rows: frames, cols: vocabulary, seed: seed &* 7919 &+ UInt64(labels.count), scale: 2)
            let result = try ctcLoss(logits: logits, labels: labels)
            let reference = bruteForceCTC(logits: logits, labels: labels, blank: 0)
            #expect(!result.impossible)
            // The loss is computed in Double and rounded to Float once: |error| <= ulp(loss) ~ 1e-6 for loss < 16.
            #expect(abs(Double(result.loss) - reference) < 1e-5, "T=\(frames) V=\(vocabulary) labels=\(labels): \(result.loss) vs \(reference)")
        }
    }

    @Test func nonZeroBlankIdMatchesBruteForce() throws {
        let logits = randomMatrix(rows: 5, cols: 4, seed: 99, scale: 2)
        let labels = [0, 2, 2]
        let result = try ctcLoss(logits: logits, labels: labels, blank: 3)
        #expect(abs(Double(result.loss) - bruteForceCTC(logits: logits, labels: labels, blank: 3)) < 1e-5)
    }

    @Test(arguments: [[1, 2, 1], [2, 2], [Int](), [1, 1, 3, 3]])
    func gradientMatchesCentralFiniteDifferences(labels: [Int]) throws {
        let T = 7, V = 4
        let logits = randomMatrix(rows: T, cols: V, seed: 5 + UInt64(labels.count), scale: 1.5).data.map(Double.init)
        let (logLikelihood, grad) = ctcCore(logits: logits, frames: T, vocabulary: V, labels: labels, blank: 0)
        #expect(logLikelihood != nil)
        // Everything in Double: eps = 1e-5 leaves truncation error O(eps^2 * f''') ~ 1e-10 and rounding
        // error ~ 1e-16 / 1e-5 = 1e-11, so 1e-7 is a loose bound that still catches any real mistake.
        let eps = 1e-5
        for i in 0..<(T * V) {
            var plus = logits, minus = logits
            plus[i] += eps; minus[i] -= eps
            let lp = try #require(ctcCore(logits: plus, frames: T, vocabulary: V, labels: labels, blank: 0).logLikelihood)
            let lm = try #require(ctcCore(logits: minus, frames: T, vocabulary: V, labels: labels, blank: 0).logLikelihood)
            let numeric = -(lp - lm) / (2 * eps)
            #expect(abs(numeric - grad[i]) < 1e-7, "element \(i): analytic \(grad[i]) numeric \(numeric)")
        }
    }

    @Test func floatGradientAgreesWithDoubleCoreAndSumsToZeroPerFrame() throws {
        let logits = randomMatrix(rows: 9, cols: 5, seed: 3)
        let result = try ctcLoss(logits: logits, labels: [4, 1, 1, 2])
        let core = ctcCore(logits: logits.data.map(Double.init), frames: 9, vocabulary: 5, labels: [4, 1, 1, 2], blank: 0)
        for i in 0..<result.gradLogits.data.count {
            #expect(abs(Double(result.gradLogits.data[i]) - core.grad[i]) < 1e-6)
        }
        // Softmax and occupancy each sum to one over the vocabulary.
        for t in 0..<9 { #expect(abs(result.gradLogits.row(t).reduce(0, +)) < 1e-5) }
    }

    @Test func longInputGivesFiniteLossAndGradient() throws {
        let T = 2000, V = 30
        let logits = randomMatrix(rows: T, cols: V, seed: 11, scale: 4)
        var rng = SplitMix64(seed: 12)
        let labels = (0..<400).map { _ in Int.random(in: 1..<V, using: &rng) }
        let result = try ctcLoss(logits: logits, labels: labels)
        #expect(!result.impossible)
        #expect(result.loss.isFinite && result.loss > 1000, "loss \(result.loss)")
        #expect(result.gradLogits.data.allSatisfy { $0.isFinite && abs($0) <= 1 })
        for t in [0, 999, 1999] { #expect(abs(result.gradLogits.row(t).reduce(0, +)) < 1e-4) }
    }

    @Test func tooFewFramesIsFlaggedImpossibleWithZeroLossAndGradient() throws {
        let logits = randomMatrix(rows: 3, cols: 4, seed: 1)
        // [1, 1, 2] needs 4 frames (a blank between the repeated 1s).
        let result = try ctcLoss(logits: logits, labels: [1, 1, 2])
        #expect(result.impossible)
        #expect(result.loss == 0)
        #expect(result.gradLogits.data.allSatisfy { $0 == 0 })
        #expect(ctcMinimumFrames(labels: [1, 1, 2]) == 4)
        // Exactly enough frames is feasible.
        #expect(try !ctcLoss(logits: randomMatrix(rows: 4, cols: 4, seed: 1), labels: [1, 1, 2]).impossible)
    }

    @Test func labelEqualToBlankOrOutsideVocabularyIsRejected() {
        #expect(throws: TrainingError.invalidLabel(label: 0, position: 1, vocabulary: 4, blank: 0)) {
            try ctcLoss(logits: randomMatrix(rows: 5, cols: 4, seed: 1), labels: [1, 0])
        }
        #expect(throws: TrainingError.self) { try ctcLoss(logits: randomMatrix(rows: 5, cols: 4, seed: 1), labels: [4]) }
    }
}
