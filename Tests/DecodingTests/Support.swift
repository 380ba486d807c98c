import Foundation
import Tensors
@testable import Decoding

/// Logits whose softmax is exactly the given per-frame distribution: each frame names the
/// probability of some tokens, the rest share what is left equally.
func logits(_ frames: [[Int: Double]], vocabulary: Vocabulary = .earshot) -> Matrix {
    let v = vocabulary.count
    var m = Matrix(rows: frames.count, cols: v)
    for (t, f) in frames.enumerated() {
        let named = f.values.reduce(0, +)
        let rest = max(1 - named, 0) / Double(v - f.count)
        for c in 0..<v {
            let p = f[c] ?? rest
            m[t, c] = Float(log(max(p, 1e-30)))
        }
    }
    return m
}

/// Frames spelling `text` with one frame per character at probability `p`, a blank frame between
/// characters (so doubles survive) and around the utterance.
func spelledFrames(_ text: String, p: Double = 0.9, vocabulary: Vocabulary = .earshot) -> [[Int: Double]] {
    var frames: [[Int: Double]] = [[vocabulary.blank: 0.95]]
    for t in vocabulary.tokenize(text)! {
        frames.append([t: p])
        frames.append([vocabulary.blank: 0.95])
    }
    return frames
}

func randomLogits(rows: Int, cols: Int, scale: Float, using rng: inout SplitMix64) -> Matrix {
    var m = Matrix(rows: rows, cols: cols)
    for i in 0..<m.data.count { m.data[i] = Float.random(in: -scale...scale, using: &rng) }
    return m
}

/// Splits `m` into consecutive chunks of random sizes (0 included).
func randomChunks(_ m: Matrix, using rng: inout SplitMix64) -> [Matrix] {
    var out: [Matrix] = []
    var r = 0
    while r < m.rows {
        let n = min(Int.random(in: 0...7, using: &rng), m.rows - r)
        out.append(m.rows(r..<(r + n)))
        r += n
    }
    return out
}
