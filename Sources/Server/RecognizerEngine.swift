import Foundation
import Recognizer

/// The real engine: a loaded `Recognizer` and the endpointing configuration every session gets. Each
/// `start` makes a fresh `StreamingSession` over the shared (immutable, Sendable) recogniser.
public struct RecognizerEngine: TranscriptionEngine {
    public let recognizer: Recognizer
    public let endpointConfig: EndpointConfig
    /// Where the model was loaded from, reported in `hello`/`status`.
    public let modelPath: String?

    public init(recognizer: Recognizer, endpointConfig: EndpointConfig = .init(), modelPath: String? = nil) {
        self.recognizer = recognizer
        self.endpointConfig = endpointConfig
        self.modelPath = modelPath
    }

    public var sampleRate: Int { recognizer.sampleRate }

    public var summary: ModelSummary {
        let name = modelPath.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent } ?? "model"
        return ModelSummary(name: name, path: modelPath, sampleRate: recognizer.sampleRate,
                            parameters: recognizer.model.parameterCount,
                            vocabularySize: recognizer.vocabulary.tokens.count, sha256: recognizer.model.sha256)
    }

    public func makeSession() -> any TranscriptionSession {
        StreamingSession(recognizer: recognizer, config: endpointConfig)
    }
}

/// `StreamingSession` already has the shape the server needs, and switches recognisers at an utterance
/// boundary itself.
extension StreamingSession: TranscriptionSession {
    public func adopt(_ engine: any TranscriptionEngine) -> Bool {
        guard let next = engine as? RecognizerEngine else { return false }
        do {
            try replaceRecognizer(next.recognizer)
            return true
        } catch {
            return false
        }
    }
}
