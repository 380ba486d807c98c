import Tensors

/// The incremental interface every CTC decoder offers: push encoder frames as they come, read the
/// current best at any time, finish the utterance.
///
/// Offline decoding is `accept(all)` then `finalize()`; any chunking of the same frames gives the same
/// result because decoders keep all their state per frame.
public protocol StreamingCTCDecoder: Sendable {
    /// Consumes `logits` (frames x vocabulary; raw logits or log posteriors, both are normalised with a
    /// log-softmax per frame).
    mutating func accept(_ logits: Matrix)
    /// The current best transcript; cheap, does not change the decoder.
    func partial() -> Transcript
    /// Ends the utterance, returns its transcript and resets the decoder for the next one.
    mutating func finalize() -> Transcript
    /// Drops all state; frame times restart at zero.
    mutating func reset()
}

extension StreamingCTCDecoder {
    /// Decodes a whole utterance in one go.
    public mutating func decode(_ logits: Matrix) -> Transcript {
        reset()
        accept(logits)
        return finalize()
    }
}

/// Writes the log-softmax of `row` into `out` (both `count` long). Idempotent on log posteriors.
@inline(__always)
func logSoftmax(_ row: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Double>) {
    var m = -Double.infinity
    for v in row { m = max(m, Double(v)) }
    var s = 0.0
    for i in 0..<row.count { s += exp(Double(row[i]) - m) }
    let lse = m + log(s)
    for i in 0..<row.count { out[i] = Double(row[i]) - lse }
}

@inline(__always)
func logAddExp(_ a: Double, _ b: Double) -> Double {
    if a == -.infinity { return b }
    if b == -.infinity { return a }
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b))
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
