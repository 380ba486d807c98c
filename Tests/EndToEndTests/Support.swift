import Decoding
import Foundation

/// Streaming and offline recognition (and the CLI, which runs OpenBLAS on one thread, and the library
/// in a test process, which may use more) compute the same float32 logits with differently blocked
/// matrix products, so they agree to rounding, not bit for bit: Model's streaming contract is 1e-4
/// per logit (measured here: at most 1e-5 on logits up to 22). A word's confidence is
/// exp(mean log peak posterior), and a log posterior moves by at most twice the largest logit change,
/// so confidences agree within 2e-4. Text and word times (whole frames) must be identical.
let confidenceTolerance = 2e-4

/// Whether two transcripts are the same up to `confidenceTolerance`, and if not, why.
func transcriptMismatch(_ a: Transcript, _ b: Transcript) -> String? {
    guard a.text == b.text else { return "text '\(a.text)' != '\(b.text)'" }
    guard a.words.count == b.words.count else { return "\(a.words.count) words != \(b.words.count)" }
    for (x, y) in zip(a.words, b.words) {
        if x.text != y.text || x.start != y.start || x.end != y.end { return "word \(x) != \(y)" }
        if abs(x.confidence - y.confidence) > confidenceTolerance { return "confidence of \(x) != \(y)" }
    }
    return nil
}
