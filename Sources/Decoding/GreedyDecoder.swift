import Tensors

/// Best-path CTC decoding: the most likely token per frame, repeats collapsed, blanks dropped.
///
/// Owns the running emission list (one entry per collapsed token with its frame span and peak
/// posterior) and the previous frame's token, which is all the state best-path decoding needs, so
/// streaming over any chunking equals offline decoding.
public struct GreedyDecoder: StreamingCTCDecoder {
    public let vocabulary: Vocabulary
    /// Seconds per encoder frame (Earshot: 0.04).
    public let frameDuration: Double

    private var previous: Int
    private var frame = 0
    private var emitted: [EmittedToken] = []

    public init(vocabulary: Vocabulary = .earshot, frameDuration: Double = 0.04) {
        self.vocabulary = vocabulary
        self.frameDuration = frameDuration
        self.previous = vocabulary.blank
    }

    public mutating func accept(_ logits: Matrix) {
        precondition(logits.cols == vocabulary.count, "logits have \(logits.cols) columns, vocabulary has \(vocabulary.count) tokens")
        let v = logits.cols
        logits.data.withUnsafeBufferPointer { all in
            for r in 0..<logits.rows {
                let row = UnsafeBufferPointer(rebasing: all[(r * v)..<((r + 1) * v)])
                let lse = logSumExp(row)
                // A frame with NaN or +infinity logits (or no finite one) says nothing: it is skipped
                // as the beam search skips it, so the previous token stays open across it and the
                // frame clock still advances (later times stay right).
                guard lse.isFinite else { frame += 1; continue }
                var best = 0
                var bestValue = row[0]
                for i in 1..<v where row[i] > bestValue { best = i; bestValue = row[i] }
                let posterior = exp(Double(bestValue) - lse)
                if best != vocabulary.blank {
                    if best == previous, !emitted.isEmpty {
                        emitted[emitted.count - 1].endFrame = frame
                        emitted[emitted.count - 1].peakPosterior = max(emitted[emitted.count - 1].peakPosterior, posterior)
                    } else {
                        emitted.append(EmittedToken(token: best, startFrame: frame, endFrame: frame, peakPosterior: posterior))
                    }
                }
                previous = best
                frame += 1
            }
        }
    }

    public func partial() -> Transcript {
        assembleTranscript(emitted, vocabulary: vocabulary, frameDuration: frameDuration)
    }

    public mutating func finalize() -> Transcript {
        let result = partial()
        reset()
        return result
    }

    public mutating func reset() {
        previous = vocabulary.blank
        frame = 0
        emitted.removeAll(keepingCapacity: true)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
