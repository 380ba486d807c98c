import Foundation
import Recognizer
@testable import Server
import Testing

/// The bounds on what local clients can make the daemon hold: how many connect, and how long an
/// unfinished frame may wait for its bytes.
@Suite(.serialized) struct ClientLimitTests {
    @Test func aClientOverTheLimitIsRefusedAndOneMoreFitsOnceAnotherLeaves() async throws {
        var config = ServerConfiguration()
        config.maxClients = 2
        let (server, path) = try await startServer(configuration: config)
        defer { Task { await server.shutdown() } }
        let first = try connect(path)
        let second = try connect(path)

        let refused = try SocketClient(path: path)
        let reply = try #require(try refused.receive(timeout: 5))
        #expect(errorCode(reply.message) == .tooManyClients)
        #expect(try refused.receive(timeout: 5) == nil)  // closed after the error, no hello
        #expect(server.status().clients == 2)
        #expect(server.statistics.clientsRefused == 1)

        // Those admitted are served as before.
        try second.send(.ping)
        #expect(try second.receive(timeout: 5)?.message == .pong)

        first.close()
        #expect(await eventually { server.status().clients == 1 })
        let third = try connect(path)
        try third.send(.ping)
        #expect(try third.receive(timeout: 5)?.message == .pong)
    }

    /// A server whose unfinished messages may wait 0.3 s for their next byte.
    func startStallingServer(engine: any TranscriptionEngine = FakeEngine()) async throws -> (EarshotServer, String) {
        var config = ServerConfiguration()
        config.frameStallSeconds = 0.3
        return try await startServer(engine: engine, configuration: config)
    }

    @Test func aClientThatStallsInsideAnAudioFrameIsClosedAndItsSessionEnds() async throws {
        let (server, path) = try await startStallingServer()
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        _ = try receive(client, until: { if case .started = $0 { return true }; return false })
        try client.sendRaw([0x00, 0x00, 0x00, 0x10, 0x00] + [UInt8](repeating: 5, count: 100))  // 4096 promised
        let started = Date()
        let reply = try #require(try client.receive(timeout: 10))
        guard case .error(.frameTimeout, let message) = reply.message else {
            Issue.record("expected frame_timeout, got \(reply.message)")
            return
        }
        #expect(Date().timeIntervalSince(started) >= 0.25)
        #expect(message.contains("100 of its 4096 bytes"), "\(message)")
        #expect(try client.receive(timeout: 5) == nil)
        #expect(await eventually { server.status().clients == 0 && server.status().sessions == 0 })
    }

    @Test func aLineLeftWithoutItsNewlineTimesOutToo() async throws {
        let (server, path) = try await startStallingServer()
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.sendRaw(Array(#"{"type":"pi"#.utf8))
        let reply = try #require(try client.receive(timeout: 10))
        #expect(errorCode(reply.message) == .frameTimeout)
        #expect(try client.receive(timeout: 5) == nil)
    }

    @Test func aFrameWhoseBytesKeepComingIsNotCutOff() async throws {
        // Two bytes every 0.1 s: the frame takes a second, three stall limits, with no gap over one.
        let (server, path) = try await startStallingServer()
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        _ = try receive(client, until: { if case .started = $0 { return true }; return false })
        let frame = FrameEncoder.audio(utteranceBytes(speech: 8, silence: 0))
        var offset = 0
        while offset < frame.count {
            try client.sendRaw(Array(frame[offset..<min(offset + 2, frame.count)]))
            offset += 2
            usleep(100_000)
        }
        try client.send(.ping)
        let messages = try receive(client, until: isPong, timeout: 5)
        #expect(messages.allSatisfy { errorCode($0) == nil }, "\(messages)")
        #expect(server.status().sessions == 1)
    }

    @Test func timeWhileTheServerHasPausedReadingDoesNotCount() async throws {
        // 40 ms to recognise each 1000-byte frame against a 16 KiB backlog: reading pauses for about
        // 0.3 s at a time (seven frames), often with part of a frame read, twice the 0.15 s limit; the
        // stream must still arrive whole.
        var config = ServerConfiguration()
        config.frameStallSeconds = 0.15
        config.sessionBacklogBytes = 16 * 1024
        let (server, path) = try await startServer(engine: SlowEngine(microsecondsPerCall: 40_000), configuration: config)
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        var bytes: [UInt8] = []
        for k in 0..<2 { bytes += utteranceBytes(speech: 10_000 + k, silence: 8_000) }
        try sendAudio(client, bytes, chunk: 1000)
        try client.send(.stop)
        let messages = try receive(client, until: isStopped, timeout: 30)
        #expect(messages.allSatisfy { errorCode($0) == nil }, "\(messages.compactMap(errorCode))")
        #expect(finals(messages) == ["n10000", "n10001"])
        #expect(server.statistics.readPauses > 0)
    }
}
