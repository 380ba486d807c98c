import Decoding

// STAND-IN until the Recognizer module's streaming session with endpointing lands on main: the same
// shapes as its contract, so the server builds and tests now. Delete this file when merging it.

/// Why an utterance ended.
public enum EndpointReason: String, Sendable, Equatable, Codable {
    case silence, maxLength, endOfStream
}

/// What a streaming session reports as audio flows in.
public enum RecognitionEvent: Sendable, Equatable {
    case partial(utterance: Int, text: String, start: Double)
    case final(utterance: Int, transcript: Transcript, start: Double, end: Double, segment: Range<Int>)
    case endpoint(utterance: Int, reason: EndpointReason, at: Double)
}
