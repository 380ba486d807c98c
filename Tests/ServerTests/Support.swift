import Decoding
import Foundation
import Recognizer
import Server
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A deterministic engine for protocol and socket tests: nonzero samples are "speech", and after
/// `silenceForFinal` zero samples the utterance ends with a final whose text is `n<speech samples>`
/// (so each client can check that it got its own result). A partial every `partialEvery` speech samples.
final class FakeEngine: TranscriptionEngine {
    let sampleRate: Int
    let partialEvery: Int
    let silenceForFinal: Int
    let summary: ModelSummary

    init(sampleRate: Int = 16000, partialEvery: Int = 1600, silenceForFinal: Int = 8000, name: String = "fake") {
        self.sampleRate = sampleRate
        self.partialEvery = partialEvery
        self.silenceForFinal = silenceForFinal
        self.summary = ModelSummary(name: name, sampleRate: sampleRate, parameters: 0, vocabularySize: 29)
    }

    func makeSession() -> any TranscriptionSession { FakeSession(engine: self) }
}

final class FakeSession: TranscriptionSession {
    let engine: FakeEngine
    var position = 0
    var utterance = 0
    var inSpeech = false
    var speechSamples = 0
    var zeroRun = 0
    var sincePartial = 0
    var start = 0

    init(engine: FakeEngine) { self.engine = engine }

    func seconds(_ n: Int) -> Double { Double(n) / Double(engine.sampleRate) }

    func accept(_ samples: [Float]) -> [RecognitionEvent] {
        var events: [RecognitionEvent] = []
        for x in samples {
            position += 1
            if abs(x) > 1e-4 {
                if !inSpeech { inSpeech = true; start = position - 1; speechSamples = 0; sincePartial = 0 }
                speechSamples += 1
                zeroRun = 0
                sincePartial += 1
                if sincePartial >= engine.partialEvery {
                    sincePartial = 0
                    events.append(.partial(utterance: utterance, text: "p\(speechSamples)", start: seconds(start)))
                }
            } else if inSpeech {
                zeroRun += 1
                if zeroRun >= engine.silenceForFinal { events += close(.silence) }
            }
        }
        return events
    }

    func finish() -> [RecognitionEvent] { inSpeech ? close(.endOfStream) : [] }

    private func close(_ reason: EndpointReason) -> [RecognitionEvent] {
        let end = seconds(position - zeroRun)
        let word = Word(text: "n\(speechSamples)", start: seconds(start), end: end, confidence: 0.9)
        let events: [RecognitionEvent] = [
            .final(utterance: utterance, transcript: Transcript(words: [word]), start: seconds(start), end: end,
                   segment: start..<position),
            .endpoint(utterance: utterance, reason: reason, at: seconds(position)),
        ]
        inSpeech = false
        utterance += 1
        return events
    }
}

/// A unique, short socket path (Unix socket paths are limited to 107 bytes).
func temporarySocketPath() -> String {
    "/tmp/es-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// A server on a fresh socket, shut down by the caller.
func startServer(engine: any TranscriptionEngine = FakeEngine(), configuration: ServerConfiguration = .init(),
                 hooks: ServerHooks = .init()) async throws -> (EarshotServer, String) {
    let server = EarshotServer(engine: engine, configuration: configuration, hooks: hooks)
    let path = temporarySocketPath()
    try await server.start(path: path)
    return (server, path)
}

/// Connects and consumes the `hello`.
func connect(_ path: String) throws -> SocketClient {
    let client = try SocketClient(path: path)
    guard case .hello? = try client.receive(timeout: 5)?.message else {
        throw TestFailure("no hello from \(path)")
    }
    return client
}

/// Receives until a message matches, returning everything received on the way (the match last).
func receive(_ client: SocketClient, until match: (ServerMessage) -> Bool, timeout: Double = 10) throws -> [ServerMessage] {
    var seen: [ServerMessage] = []
    while true {
        guard let reply = try client.receive(timeout: timeout) else {
            throw TestFailure("connection closed before the expected message; got \(seen.map(\.type))")
        }
        seen.append(reply.message)
        if match(reply.message) { return seen }
    }
}

/// s16le bytes of `speech` samples of a constant nonzero value followed by `silence` zeros.
func utteranceBytes(speech: Int, silence: Int, value: Int16 = 3000) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity((speech + silence) * 2)
    for i in 0..<(speech + silence) {
        let v = i < speech ? value : 0
        let u = UInt16(bitPattern: v)
        bytes.append(UInt8(u & 0xFF)); bytes.append(UInt8(u >> 8))
    }
    return bytes
}

/// Sends `bytes` as audio frames of at most `chunk` bytes.
func sendAudio(_ client: SocketClient, _ bytes: [UInt8], chunk: Int = 3200) throws {
    var offset = 0
    while offset < bytes.count {
        let end = min(offset + chunk, bytes.count)
        try client.send(.audio(Array(bytes[offset..<end])))
        offset = end
    }
}

func finals(_ messages: [ServerMessage]) -> [String] {
    messages.compactMap { if case .final(_, _, let t, _, _) = $0 { return t.text }; return nil }
}

func isStopped(_ m: ServerMessage) -> Bool { if case .stopped = m { return true }; return false }
func isPong(_ m: ServerMessage) -> Bool { if case .pong = m { return true }; return false }
func errorCode(_ m: ServerMessage) -> ErrorCode? { if case .error(let code, _) = m { return code }; return nil }

/// A fake engine that takes its time, so audio piles up on the server faster than it is recognised.
final class SlowEngine: TranscriptionEngine {
    let inner = FakeEngine()
    let delay: UInt32
    init(microsecondsPerCall: UInt32) { delay = microsecondsPerCall }
    var sampleRate: Int { inner.sampleRate }
    var summary: ModelSummary { inner.summary }
    func makeSession() -> any TranscriptionSession { SlowSession(inner.makeSession(), delay: delay) }
}

final class SlowSession: TranscriptionSession {
    let inner: any TranscriptionSession
    let delay: UInt32
    init(_ inner: any TranscriptionSession, delay: UInt32) { self.inner = inner; self.delay = delay }
    func accept(_ samples: [Float]) -> [RecognitionEvent] { usleep(delay); return inner.accept(samples) }
    func finish() -> [RecognitionEvent] { inner.finish() }
}
