import Decoding
import Recognizer

/// What the server needs from a recogniser: fresh sessions at a known sample rate, and a summary for
/// `hello`/`status`. The daemon passes `RecognizerEngine` (the real `Recognizer`); tests pass fakes so
/// protocol and socket behaviour can be checked deterministically and fast.
public protocol TranscriptionEngine: Sendable {
    /// The rate `TranscriptionSession.accept` expects; the server resamples client audio to it.
    var sampleRate: Int { get }
    var summary: ModelSummary { get }
    /// A new, independent session (one per `start`).
    func makeSession() -> any TranscriptionSession
}

/// One audio stream through recognition with endpointing: it cuts utterances and reports partials,
/// finals and endpoints. Used by one owner at a time (the server gives each its own serial queue).
public protocol TranscriptionSession: AnyObject {
    /// Pushes mono samples at the engine's sample rate; returns the events they completed.
    func accept(_ samples: [Float]) -> [RecognitionEvent]
    /// Ends the stream: the remaining final(s) and endpoint(s).
    func finish() -> [RecognitionEvent]
    /// Asks the session to recognise with `engine`'s model from its next utterance boundary on (the
    /// utterance in flight finishes with the current one). Returns false when it cannot (another kind
    /// of engine, another sample rate): it then keeps its model until it ends.
    func adopt(_ engine: any TranscriptionEngine) -> Bool
}

extension TranscriptionSession {
    /// Sessions that cannot switch models keep the one they started with.
    public func adopt(_ engine: any TranscriptionEngine) -> Bool { false }
}

extension EndpointReason {
    /// The `reason` field of an `endpoint` event.
    public var wireName: String {
        switch self {
        case .silence: return "silence"
        case .maxLength: return "max_length"
        case .endOfStream: return "end_of_stream"
        }
    }
}
