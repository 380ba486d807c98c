#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Log-space arithmetic shared by the CTC decoders and the CTC loss. One implementation so that the
// decoder's and the trainer's probabilities agree to the last bit, and so the stability tricks
// (subtract the maximum, log1p) live in one place. `@inlinable` because they sit in per-frame,
// per-hypothesis inner loops of other modules.

/// `log(exp(a) + exp(b))` without overflow; exact when either side is `-infinity` (probability 0).
@inlinable @inline(__always)
public func logAddExp(_ a: Double, _ b: Double) -> Double {
    if a == -.infinity { return b }
    if b == -.infinity { return a }
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b))
}

/// `log(sum_i exp(row[i]))`, computed in `Double` after subtracting the maximum.
///
/// Not finite when the row holds a NaN or `+infinity`, or is empty or all `-infinity` (no probability
/// mass): callers use that to recognise a frame they cannot normalise.
@inlinable
public func logSumExp<T: BinaryFloatingPoint>(_ row: UnsafeBufferPointer<T>) -> Double {
    var m = -Double.infinity
    for v in row { m = max(m, Double(v)) }
    var s = 0.0
    // A NaN anywhere, or m = +-infinity, makes s NaN (inf - inf), which the caller sees as non-finite.
    for v in row { s += exp(Double(v) - m) }
    return m + log(s)
}

/// Writes the log-softmax of `row` into `out` (both `row.count` long), in `Double`. Idempotent on
/// log posteriors. Returns false, leaving `out` unspecified, when the row cannot be normalised
/// (a NaN or `+infinity` in it, or no finite entry): see `logSumExp`.
@inlinable @discardableResult
public func logSoftmax<T: BinaryFloatingPoint>(_ row: UnsafeBufferPointer<T>,
                                               into out: UnsafeMutableBufferPointer<Double>) -> Bool {
    let lse = logSumExp(row)
    guard lse.isFinite else { return false }
    for i in 0..<row.count { out[i] = Double(row[i]) - lse }
    return true
}
