import Decoding
import Recognizer

extension Recognizer {
    /// Offline recognition of a final's segment: the reference of the sessions' exactness contract
    /// (docs/endpointing.md). A fresh stream hears the segment whole and is then flushed, or, for an
    /// utterance that endpointing ended in silence, finished at its released frames.
    public func offlineReference(_ samples: ArraySlice<Float>, endedBy reason: EndpointReason?) -> Transcript {
        let stream = makeStream()
        stream.accept(Array(samples))
        return reason == .silence ? stream.finishReleased() : stream.finish()
    }
}
