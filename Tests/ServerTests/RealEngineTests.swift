import Audio
import Decoding
import Foundation
import Model
import Recognizer
import Server
import Tensors
import Testing
import TestSupport

/// The server with the real `Recognizer` and `StreamingSession` behind `RecognizerEngine`. The model is
/// small and randomly initialised: what it says is meaningless, but it is deterministic, so the events a
/// client receives over the socket can be compared with the same session run directly on the same audio.
@Suite(.serialized) struct RealEngineTests {
    /// A 2-block, 48-channel base architecture with seeded uniform(+-1/sqrt(fanIn)) weights.
    static func randomRecognizer() throws -> Recognizer {
        let vocabulary = [""] + [" ", "'"] + "abcdefghijklmnopqrstuvwxyz".map(String.init)
        let architecture = BaseArchitecture.architecture(inputDim: 80, channels: 48, blocks: 2, kernel: 5, hidden: 64,
                                                         vocabularySize: vocabulary.count, lookAheadBlocks: 1)
        var rng = SeededGenerator(seed: 0xEA25_0100)
        var parameters: [String: Tensor] = [:]
        func add(_ name: String, _ shape: [Int], fanIn: Int) {
            let count = shape.reduce(1, *)
            if fanIn == 0 {
                parameters[name] = Tensor(shape: shape, data: [Float](repeating: name.hasSuffix(".weight") ? 1 : 0, count: count))
            } else {
                let bound = 1 / Float(fanIn).squareRoot()
                parameters[name] = Tensor(shape: shape, data: (0..<count).map { _ in Float.random(in: -bound...bound, using: &rng) })
            }
        }
        func collect(_ layers: [LayerSpec]) {
            for layer in layers {
                switch layer {
                case .conv1d(let s):
                    let fanIn = s.inChannels / max(s.groups, 1) * s.kernel
                    add("\(s.name).weight", [s.outChannels, s.inChannels / max(s.groups, 1), s.kernel], fanIn: fanIn)
                    if s.bias { add("\(s.name).bias", [s.outChannels], fanIn: fanIn) }
                case .dense(let s):
                    add("\(s.name).weight", [s.outFeatures, s.inFeatures], fanIn: s.inFeatures)
                    if s.bias { add("\(s.name).bias", [s.outFeatures], fanIn: s.inFeatures) }
                case .layerNorm(let s):
                    add("\(s.name).weight", [s.dim], fanIn: 0)
                    add("\(s.name).bias", [s.dim], fanIn: 0)
                case .relu: break
                case .residual(_, let body): collect(body)
                }
            }
        }
        collect(architecture.layers)
        let model = ModelFile(description: ModelDescription(architecture: architecture, vocabulary: vocabulary),
                              parameters: parameters)
        return try Recognizer(model: model)
    }

    /// Speech-like test audio: bursts of noisy harmonics separated by silence long enough to end an
    /// utterance, as s16 values.
    static func audio() -> [Int16] {
        var rng = SeededGenerator(seed: 7)
        var out: [Int16] = []
        for burst in 0..<3 {
            let length = 16000 * (6 + burst * 2) / 10
            for n in 0..<length {
                let t = Float(n) / 16000
                let v = 0.3 * sin(2 * .pi * 180 * t) + 0.2 * sin(2 * .pi * 900 * t) + Float.random(in: -0.05...0.05, using: &rng)
                out.append(Int16(v * 20000))
            }
            out += [Int16](repeating: 0, count: 16000)
        }
        return out
    }

    @Test func socketSessionEventsEqualTheStreamingSessionRunDirectly() async throws {
        let recognizer = try Self.randomRecognizer()
        let engine = RecognizerEngine(recognizer: recognizer, modelPath: "/models/random-test.safetensors")
        let samples = Self.audio()

        let direct = StreamingSession(recognizer: recognizer)
        var expected = direct.accept(samples.map { Float($0) / 32768 })
        expected += direct.finish()
        #expect(expected.contains { if case .final = $0 { return true }; return false })

        let (server, path) = try await startServer(engine: engine)
        defer { Task { await server.shutdown() } }
        let client = try SocketClient(path: path)
        guard case .hello(let hello)? = try client.receive(timeout: 5)?.message else { Issue.record("no hello"); return }
        #expect(hello.model.name == "random-test")
        #expect(hello.model.parameters == recognizer.model.parameterCount)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: true))
        var bytes: [UInt8] = []
        for s in samples { let u = UInt16(bitPattern: s); bytes += [UInt8(u & 0xFF), UInt8(u >> 8)] }
        try sendAudio(client, bytes, chunk: 2 * 1234)
        try client.send(.stop)
        let received = try receive(client, until: isStopped, timeout: 30).filter { !isStopped($0) && $0.type != "started" }
        #expect(received == expected.map { EventSource.session.message(for: $0) })
    }

    @Test func microphoneEventsFromARealSessionReachSubscribersUnchanged() async throws {
        let recognizer = try Self.randomRecognizer()
        let (server, path) = try await startServer(engine: RecognizerEngine(recognizer: recognizer))
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(.subscribe(partials: false))
        _ = try receive(client, until: { $0 == .subscribed(partials: false) })
        let session = StreamingSession(recognizer: recognizer)
        var sent: [RecognitionEvent] = []
        let samples = Self.audio().map { Float($0) / 32768 }
        for start in stride(from: 0, to: samples.count, by: 1600) {
            let events = session.accept(Array(samples[start..<min(start + 1600, samples.count)]))
            server.broadcast(events)
            sent += events
        }
        let last = session.finish()
        server.broadcast(last)
        sent += last
        let finalsSent = sent.filter { if case .partial = $0 { return false }; return true }
        #expect(!finalsSent.isEmpty)
        var got: [ServerMessage] = []
        while got.count < finalsSent.count { got.append(try #require(try client.receive(timeout: 10)).message) }
        #expect(got == finalsSent.map { EventSource.microphone.message(for: $0) })
    }
}
