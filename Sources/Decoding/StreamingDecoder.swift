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
