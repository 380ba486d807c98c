import Decoding
import Dispatch
import Foundation
import Recognizer
@testable import Server
import Tensors
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Thread-safe collection for results gathered by client threads.
final class Box<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func with<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

/// Runs `count` blocking client bodies on their own threads (not the test's cooperative pool, which has
/// only as many threads as cores) and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) async {
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        let group = DispatchGroup()
        for i in 0..<count {
            group.enter()
            let thread = Thread { body(i); group.leave() }
            thread.start()
        }
        group.notify(queue: .global()) { done.resume() }
    }
}

/// Polls until `condition` holds or `seconds` pass; returns whether it held.
func eventually(_ seconds: Double = 5, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(nanoseconds: 10_000_000)
    }
    return condition()
}

@Suite(.serialized) struct ServerSocketTests {
    @Test func helloArrivesOnConnectWithVersionRateAndModel() async throws {
        let (server, path) = try await startServer(engine: FakeEngine(name: "tiny"))
        defer { Task { await server.shutdown() } }
        let client = try SocketClient(path: path)
        let reply = try #require(try client.receive(timeout: 5))
        guard case .hello(let hello) = reply.message else { Issue.record("first message was \(reply.message.type)"); return }
        #expect(hello.protocolVersion == ProtocolInfo.version)
        #expect(hello.sampleRate == 16000)
        #expect(hello.model.name == "tiny")
        #expect(hello.encodings == [.s16le, .f32le])
        #expect(hello.capabilities.contains("session"))
        #expect(!hello.capabilities.contains("reload"))  // no handler installed
        try client.send(ClientRequest(.ping, id: .string("p1")))
        #expect(try client.receive(timeout: 5) == ServerReply(.pong, id: .string("p1")))
    }

    @Test func sixteenConcurrentSessionsEachGetTheirOwnFinals() async throws {
        let (server, path) = try await startServer()
        let results = Box([Int: [String]]())
        let failures = Box([String]())
        await onThreads(16) { i in
            do {
                let client = try connect(path)
                try client.send(.start(AudioFormat(sampleRate: 16000), partials: i % 2 == 0))
                // Two utterances whose lengths identify the client, then one cut off by stop.
                let a = 2000 + 37 * i, b = 3000 + 11 * i, c = 500 + i
                try sendAudio(client, utteranceBytes(speech: a, silence: 8000), chunk: 2000 + 2 * i)
                try sendAudio(client, utteranceBytes(speech: b, silence: 8000) + utteranceBytes(speech: c, silence: 100))
                try client.send(.stop)
                let messages = try receive(client, until: isStopped)
                results.with { $0[i] = finals(messages) }
                let partials = messages.filter { if case .partial = $0 { return true }; return false }.count
                if i % 2 == 1 && partials > 0 { failures.with { $0.append("client \(i) asked for no partials, got \(partials)") } }
                if i % 2 == 0 && partials == 0 { failures.with { $0.append("client \(i) got no partials") } }
            } catch {
                failures.with { $0.append("client \(i): \(error)") }
            }
        }
        #expect(failures.with { $0 } == [])
        for i in 0..<16 {
            #expect(results.with { $0[i] } == ["n\(2000 + 37 * i)", "n\(3000 + 11 * i)", "n\(500 + i)"], "client \(i)")
        }
        let status = server.status()
        #expect(status.sessionsTotal == 16)
        #expect(await eventually { server.status().sessions == 0 })
        await server.shutdown()
    }

    @Test func slowSubscriberIsDisconnectedWhileFastSubscriberGetsEveryFinalAndBroadcastNeverBlocks() async throws {
        var config = ServerConfiguration()
        config.clientQueueEvents = 2048
        config.clientQueueBytes = 1 << 20
        config.closeGraceSeconds = 0.2
        let (server, path) = try await startServer(configuration: config)

        let slow = try connect(path)
        try slow.send(.subscribe(partials: true))
        _ = try receive(slow, until: { $0 == .subscribed(partials: true) })
        let fast = try connect(path)
        try fast.send(.subscribe(partials: true))
        _ = try receive(fast, until: { $0 == .subscribed(partials: true) })

        let finalsCount = 5000
        let fastFinals = Box([Int]())
        let fastError = Box<String?>(nil)
        let reader = Thread {
            do {
                while let reply = try fast.receive(timeout: 20) {
                    if case .final(_, let utterance, _, _, _) = reply.message {
                        let n = fastFinals.with { $0.append(utterance); return $0.count }
                        if n == finalsCount { return }
                    }
                }
                fastError.with { $0 = "fast subscriber was disconnected" }
            } catch {
                fastError.with { $0 = "\(error)" }
            }
        }
        reader.start()

        // Finals with ten words (~900 bytes each) so the slow client's socket and queue fill quickly.
        let words = (0..<10).map { Word(text: "word\($0)", start: Double($0) * 0.3, end: Double($0) * 0.3 + 0.25, confidence: 0.875) }
        var durations: [Double] = []
        durations.reserveCapacity(finalsCount)
        let t0 = DispatchTime.now().uptimeNanoseconds
        for u in 0..<finalsCount {
            var batch: [RecognitionEvent] = (1...4).map { .partial(utterance: u, text: String(repeating: "partial ", count: $0 * 4), start: Double(u)) }
            batch.append(.final(utterance: u, transcript: Transcript(words: words), start: Double(u), end: Double(u) + 3, segment: 0..<1))
            let s = DispatchTime.now().uptimeNanoseconds
            server.broadcast(batch)
            durations.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e6)
            // A live microphone makes a few events a second; this makes thousands. "Fast" means a reader
            // that keeps within 300 finals (~350 KB) of the broadcaster, which a debug-build reader on a
            // loaded machine cannot do at full speed, so the producer waits for it (outside the timed calls).
            while u - fastFinals.with({ $0.count }) > 300 && fastError.with({ $0 }) == nil {
                try await Task.sleep(nanoseconds: 1_000_000)
            }
        }
        let total = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        durations.sort()
        print("broadcast: \(finalsCount) calls x 5 events to 2 subscribers in \(String(format: "%.1f", total)) ms; per call median \(String(format: "%.3f", durations[durations.count / 2])) ms, p99 \(String(format: "%.3f", durations[durations.count * 99 / 100])) ms, max \(String(format: "%.3f", durations.last!)) ms")

        #expect(await eventually(20) { fastFinals.with { $0.count } == finalsCount || fastError.with { $0 } != nil })
        #expect(fastError.with { $0 } == nil)
        let received = fastFinals.with { $0 }
        #expect(received.count == finalsCount)
        #expect(received == Array(0..<received.count), "finals out of order or missing")

        #expect(await eventually { server.status().slowClientsDisconnected == 1 })
        let status = server.status()
        #expect(status.droppedEvents > 0)
        #expect(status.subscribers == 1)
        print("slow client: disconnected after \(status.droppedEvents) partials dropped")
        // The slow client finds its stream ended: whatever was in its socket, then end of stream.
        var lines = 0
        var ended = false
        while true {
            do {
                guard try slow.receiveLine(timeout: 5) != nil else { ended = true; break }
                lines += 1
            } catch {
                // The close may cut the last, partly written line; anything else is a failure.
                if case .protocolViolation = error { ended = true }
                break
            }
        }
        #expect(ended)
        #expect(lines < finalsCount * 5)
        await server.shutdown()
    }

    @Test func recoverableErrorsAnswerWithAnErrorAndKeepTheConnectionUsable() async throws {
        let (server, path) = try await startServer()
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        let cases: [([UInt8], ErrorCode)] = [
            (Array("{\"type\":\"ping\"\n".utf8), .malformedJSON),
            (Array("{\"type\":\"dance\"}\n".utf8), .unknownType),
            (FrameEncoder.audio([0, 0, 1, 0]), .noSession),
            (Array("{\"type\":\"stop\"}\n".utf8), .noSession),
            (Array("{\"type\":\"start\",\"sample_rate\":-5}\n".utf8), .unsupportedSampleRate),
            (Array("{\"type\":\"start\",\"sample_rate\":16000,\"encoding\":\"alaw\"}\n".utf8), .unsupportedEncoding),
            (Array("{\"type\":\"start\",\"sample_rate\":16000,\"channels\":0}\n".utf8), .unsupportedChannels),
            (Array("{\"type\":\"reload\"}\n".utf8), .reloadUnavailable),
        ]
        for (bytes, code) in cases {
            try client.sendRaw(bytes)
            let reply = try #require(try client.receive(timeout: 5))
            #expect(errorCode(reply.message) == code, "\(String(decoding: bytes, as: UTF8.self))")
            try client.send(.ping)
            #expect(try client.receive(timeout: 5)?.message == .pong)
        }
        // Within a session: odd byte counts and a second start are refused, the session carries on.
        try client.send(.start(AudioFormat(sampleRate: 16000, encoding: .s16le, channels: 2), partials: false))
        _ = try receive(client, until: { if case .started = $0 { return true }; return false })
        try client.send(.audio([1, 2, 3]))
        #expect(errorCode(try #require(try client.receive(timeout: 5)).message) == .misalignedAudio)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        #expect(errorCode(try #require(try client.receive(timeout: 5)).message) == .sessionActive)
        // Stereo: each sample frame is one value on both channels.
        let mono = utteranceBytes(speech: 1234, silence: 100)
        var stereo: [UInt8] = []
        for k in stride(from: 0, to: mono.count, by: 2) { stereo += [mono[k], mono[k + 1], mono[k], mono[k + 1]] }
        try sendAudio(client, stereo)
        try client.send(.stop)
        #expect(finals(try receive(client, until: isStopped)) == ["n1234"])
    }

    @Test(arguments: [
        ("oversized line", Array("{\"type\":\"ping\",\"pad\":\"".utf8) + [UInt8](repeating: 0x61, count: 70_000), ErrorCode.lineTooLong),
        ("oversized frame", [0x00, 0x00, 0x20, 0x00, 0x00] + [UInt8](repeating: 1, count: 100), .frameTooLarge),
        ("bad framing", Array("ping\n".utf8), .badFraming),
    ])
    func fatalFramingErrorsCloseOnlyThatConnection(name: String, bytes: [UInt8], code: ErrorCode) async throws {
        let (server, path) = try await startServer()
        defer { Task { await server.shutdown() } }
        let bad = try connect(path)
        let good = try connect(path)
        try bad.sendRaw(bytes)
        let reply = try #require(try bad.receive(timeout: 5), "\(name): closed without an error event")
        #expect(errorCode(reply.message) == code, "\(name)")
        #expect(try bad.receive(timeout: 5) == nil, "\(name): the connection should close")
        try good.send(.ping)
        #expect(try good.receive(timeout: 5)?.message == .pong)
        let third = try connect(path)
        try third.send(.ping)
        #expect(try third.receive(timeout: 5)?.message == .pong)
    }

    @Test func abruptDisconnectMidFrameEndsTheSessionAndTheServerKeepsServing() async throws {
        let (server, path) = try await startServer()
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: true))
        _ = try receive(client, until: { if case .started = $0 { return true }; return false })
        try sendAudio(client, utteranceBytes(speech: 4000, silence: 0))
        try client.sendRaw([0x00, 0x00, 0x00, 0x10, 0x00] + [UInt8](repeating: 5, count: 100))  // 4096 promised
        client.close()
        #expect(await eventually { server.status().sessions == 0 && server.status().clients == 0 })
        let next = try connect(path)
        try next.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        try sendAudio(next, utteranceBytes(speech: 777, silence: 8000))
        try next.send(.stop)
        #expect(finals(try receive(next, until: isStopped)) == ["n777"])
    }

    /// Streams `bytes` in frames of `chunk` bytes to a server with a 32 KiB backlog and a 2 ms-per-call
    /// engine, then stops: the session's finals, and whether reading paused on the way.
    func streamThroughASmallBacklog(_ bytes: [UInt8], chunk: Int) async throws -> (finals: [String], paused: Bool) {
        var config = ServerConfiguration()
        config.sessionBacklogBytes = 32 * 1024
        let (server, path) = try await startServer(engine: SlowEngine(microsecondsPerCall: 2000), configuration: config)
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        try sendAudio(client, bytes, chunk: chunk)
        try client.send(.stop)
        let messages = try receive(client, until: isStopped, timeout: 30)
        return (finals(messages), server.statistics.readPauses > 0)
    }

    @Test func aClientSendingFasterThanRecognitionIsPausedNotBufferedAndLosesNothing() async throws {
        // 400 frames of 1600 bytes arrive far faster than 2 ms each can be recognised; reading pauses
        // whenever 32 KiB wait, and resumes as recognition catches up.
        var bytes: [UInt8] = []
        for k in 0..<4 { bytes += utteranceBytes(speech: 60_000 + k, silence: 20_000) }
        let run = try await streamThroughASmallBacklog(bytes, chunk: 1600)
        #expect(run.finals == ["n60000", "n60001", "n60002", "n60003"])
        #expect(run.paused)
    }

    /// Frames of one sample each: 2 000 bytes of audio in all, far under the 32 KiB backlog, but a
    /// thousand queued frames cost far more than their bytes, so reading pauses all the same.
    @Test func tinyFramesCountTowardsTheBacklogToo() async throws {
        let run = try await streamThroughASmallBacklog(utteranceBytes(speech: 1000, silence: 0), chunk: 2)
        #expect(run.finals == ["n1000"])
        #expect(run.paused)
    }

    @Test func resampledStereoFloatSessionGetsItsFinalsAndAudioSeconds() async throws {
        let (server, path) = try await startServer(engine: FakeEngine(silenceForFinal: 4000))
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 44100, encoding: .f32le, channels: 2), partials: false))
        // 0.5 s of a 440 Hz tone (never exactly zero after resampling... except where it crosses, which the
        // fake's threshold tolerates), 1 s of silence, twice.
        var bytes: [UInt8] = []
        for _ in 0..<2 {
            for n in 0..<(44100 * 3 / 2) {
                let v: Float = n < 22050 ? 0.5 + 0.25 * sin(Float(n) * 2 * .pi * 440 / 44100) : 0
                for _ in 0..<2 { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
            }
        }
        try sendAudio(client, bytes, chunk: 8 * 1000)
        try client.send(ClientRequest(.stop, id: .int(5)))
        let messages = try receive(client, until: isStopped)
        let texts = finals(messages)
        #expect(texts.count == 2)
        // Each utterance is 0.5 s at 16 kHz, give or take the resampler's filter ramps at the edges.
        for text in texts {
            let n = Int(text.dropFirst()) ?? 0
            #expect(abs(n - 8000) < 100, "\(text)")
        }
        guard case .stopped(_, let seconds) = messages.last! else { return }
        #expect(abs(seconds - 3.0) < 1e-3)
        let endpoints = messages.filter { if case .endpoint(_, _, "silence", _) = $0 { return true }; return false }
        #expect(endpoints.count == 2)
    }

    @Test func subscribersGetMicrophoneEventsWithOrWithoutPartials() async throws {
        let (server, path) = try await startServer()
        defer { Task { await server.shutdown() } }
        let all = try connect(path), quiet = try connect(path), none = try connect(path)
        try all.send(.subscribe(partials: true))
        _ = try receive(all, until: { $0 == .subscribed(partials: true) })
        try quiet.send(.subscribe(partials: false))
        _ = try receive(quiet, until: { $0 == .subscribed(partials: false) })
        server.broadcast([.partial(utterance: 0, text: "he", start: 1),
                          .final(utterance: 0, transcript: Transcript(text: "hello", words: []), start: 1, end: 2, segment: 0..<1),
                          .endpoint(utterance: 0, reason: .silence, at: 2.6)])
        let a = try receive(all, until: { if case .endpoint = $0 { return true }; return false })
        #expect(a.map(\.type) == ["partial", "final", "endpoint"])
        #expect(a[1] == .final(source: .microphone, utterance: 0, transcript: Transcript(text: "hello", words: []), start: 1, end: 2))
        let q = try receive(quiet, until: { if case .endpoint = $0 { return true }; return false })
        #expect(q.map(\.type) == ["final", "endpoint"])
        try none.send(.ping)
        #expect(try none.receive(timeout: 5)?.message == .pong)  // nothing broadcast arrived before it
        try all.send(.unsubscribe)
        _ = try receive(all, until: { $0 == .unsubscribed })
        server.broadcast([.final(utterance: 1, transcript: .empty, start: 3, end: 4, segment: 0..<1)])
        try all.send(.ping)
        #expect(try all.receive(timeout: 5)?.message == .pong)
    }

    @Test func statusReportsSessionsSubscribersAndTheDaemonsCaptureCounters() async throws {
        let capture = CaptureSummary(state: "running", device: "hw:1", overruns: 3, droppedSamples: 480)
        let hooks = ServerHooks(status: {
            DaemonStatus(capture: capture, microphoneAudioSeconds: 10, microphoneProcessingSeconds: 0.5)
        })
        let (server, path) = try await startServer(hooks: hooks)
        defer { Task { await server.shutdown() } }
        let sub = try connect(path)
        try sub.send(.subscribe(partials: true))
        _ = try receive(sub, until: { $0 == .subscribed(partials: true) })
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: true))
        try sendAudio(client, utteranceBytes(speech: 16000, silence: 0))
        try client.send(ClientRequest(.status, id: .int(42)))
        let replies = try receive(client, until: { if case .status = $0 { return true }; return false })
        guard case .status(let s) = replies.last! else { return }
        #expect(s.sessions == 1)
        #expect(s.subscribers == 1)
        #expect(s.clients == 2)
        #expect(s.capture == capture)
        #expect(s.model.name == "fake")
        // Status is answered after the audio before it was read, but recognition may lag: at least the
        // microphone's 10 s, at most that plus the session's 1 s.
        #expect(s.audioSeconds >= 10 && s.audioSeconds <= 11 + 1e-9)
        #expect(s.realTimeFactor > 0)
    }

    @Test func reloadSwapsTheEngineForNewSessionsAndReportsFailures() async throws {
        let hooks = ServerHooks(reload: { path in
            guard let path else { return FakeEngine(name: "default") }
            guard path.hasSuffix(".safetensors") else {
                throw TestFailure("\(path): not a model file")
            }
            return FakeEngine(partialEvery: 1_000_000, name: path)
        })
        let (server, path) = try await startServer(hooks: hooks)
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        try client.send(ClientRequest(.reload(modelPath: "/m/x.bin"), id: .int(1)))
        let failed = try #require(try client.receive(timeout: 5))
        #expect(failed.id == .int(1))
        #expect(errorCode(failed.message) == .reloadFailed)
        #expect(server.engine.summary.name == "fake")
        try client.send(ClientRequest(.reload(modelPath: "/m/new.safetensors"), id: .int(2)))
        let ok = try #require(try client.receive(timeout: 5))
        #expect(ok == ServerReply(.reloaded(FakeEngine(name: "/m/new.safetensors").summary), id: .int(2)))
        let after = try SocketClient(path: path)
        guard case .hello(let hello)? = try after.receive(timeout: 5)?.message else { Issue.record("no hello"); return }
        #expect(hello.model.name == "/m/new.safetensors")
        #expect(hello.capabilities.contains("reload"))
    }

    /// A reload hook that takes 300 ms, as a model load takes seconds, counting its calls in `loads`.
    func slowReloads(counting loads: Locked<Int>) -> ServerHooks {
        ServerHooks(reload: { _ in
            loads.withLock { $0 += 1 }
            usleep(300_000)
            return FakeEngine(name: "reloaded")
        })
    }

    /// A client that writes many reload lines at once queued one model load each (seconds of CPU apiece,
    /// and a shutdown waited for all of them): a connection has one reload at a time, and the others are
    /// answered at once.
    @Test func aConnectionHasOneReloadInFlightAtATime() async throws {
        let loads = Locked(0)
        let (server, path) = try await startServer(hooks: slowReloads(counting: loads))
        defer { Task { await server.shutdown() } }
        let client = try connect(path)
        for i in 0..<50 { try client.send(ClientRequest(.reload(modelPath: nil), id: .int(i))) }
        var replies: [ServerReply] = []
        while replies.count < 50, let reply = try client.receive(timeout: 10) { replies.append(reply) }
        #expect(replies.count == 50)
        let refused = replies.filter { errorCode($0.message) == .reloadFailed }
        #expect(refused.count >= 45, "\(refused.count) of 50 refused")
        #expect(loads.withLock { $0 } == 50 - refused.count && loads.withLock { $0 } <= 5, "\(loads.withLock { $0 }) loads")
        #expect(Set(replies.compactMap(\.id)).count == 50, "every request answered once, with its id")
    }

    /// Reloads from many connections queue behind one another; a shutdown waited for every queued load
    /// (seconds of CPU each, for a model no session would use). Once shutdown begins, queued ones end.
    @Test func shutdownDoesNotWaitForQueuedReloads() async throws {
        let loads = Locked(0)
        let (server, path) = try await startServer(hooks: slowReloads(counting: loads))
        var clients: [SocketClient] = []
        for i in 0..<8 {
            let client = try connect(path)
            try client.send(ClientRequest(.reload(modelPath: nil), id: .int(i)))
            clients.append(client)
        }
        // All eight are read (the first is loading) before the shutdown.
        while loads.withLock({ $0 }) == 0 { usleep(10_000) }
        usleep(100_000)
        await server.shutdown()
        #expect(loads.withLock { $0 } <= 2, "\(loads.withLock { $0 }) loads of 8")
    }

    /// A daemon that has begun stopping (its microphone still finishing, before `shutdown`) refuses
    /// reloads at once: a model loaded then would serve nobody.
    @Test func refusedReloadsFailWithoutLoading() async throws {
        let loads = Locked(0)
        let (server, _) = try await startServer(hooks: slowReloads(counting: loads))
        defer { Task { await server.shutdown() } }
        server.refuseReloads()
        #expect(throws: ReloadError.failed(reason: "the server is shutting down")) { _ = try server.reload(modelPath: nil) }
        #expect(loads.withLock { $0 } == 0)
    }

    @Test func shutdownFinishesRunningSessionsBeforeClosing() async throws {
        let (server, path) = try await startServer()
        let client = try connect(path)
        let idle = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        try sendAudio(client, utteranceBytes(speech: 4321, silence: 10))
        try client.send(.ping)  // once pong arrives, the server has read every frame before it
        _ = try receive(client, until: isPong)
        await server.shutdown(flushingSessions: true)
        var messages: [ServerMessage] = []
        while let reply = try client.receive(timeout: 5) { messages.append(reply.message) }
        #expect(finals(messages) == ["n4321"])
        #expect(messages.map(\.type).suffix(3) == ["endpoint", "stopped", "error"])
        #expect(errorCode(messages.last!) == .shuttingDown)
        #expect(errorCode(try #require(try idle.receive(timeout: 5)).message) == .shuttingDown)
        #expect(try idle.receive(timeout: 5) == nil)
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    /// SIGTERM while a fast sender's audio is still queued for recognition: every utterance in that
    /// backlog gets its final before `stopped`, not only the last one (they used to be recognised and
    /// then dropped because the connection was already closing).
    @Test func shutdownSendsTheFinalsOfTheQueuedBacklog() async throws {
        // 30 ms per frame: the 30 frames below take about 0.9 s, so most are queued at the shutdown.
        let engine = CountingEngine(microsecondsPerCall: 30_000)
        let (server, path) = try await startServer(engine: engine)
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        for speech in [6400, 8000, 9600] { try sendAudio(client, utteranceBytes(speech: speech, silence: 8000)) }
        try client.send(.ping)  // answered at once: the server has read every frame, most not yet recognised
        _ = try receive(client, until: isPong)
        #expect(engine.calls < 30, "the backlog was recognised before the shutdown began")
        await server.shutdown(flushingSessions: true)
        var messages: [ServerMessage] = []
        while let reply = try client.receive(timeout: 5) { messages.append(reply.message) }
        #expect(finals(messages) == ["n6400", "n8000", "n9600"], "\(messages.map(\.type))")
        #expect(messages.map(\.type).suffix(2) == ["stopped", "error"])
        #expect(errorCode(messages.last!) == .shuttingDown)
    }

    /// The flush has a deadline: a backlog that would take seconds to recognise (minutes of audio at a
    /// low sample rate, or many clients) is cut, so that systemd's stop timeout is not outlasted. The
    /// client gets no `stopped` (its figures would claim the audio recognised), and the closing error
    /// says what was not done.
    @Test func shutdownCutsAFlushThatOutlastsItsDeadline() async throws {
        var config = ServerConfiguration()
        config.shutdownFlushSeconds = 0.2
        // 30 ms per frame: 100 frames take 3 s.
        let engine = CountingEngine(microsecondsPerCall: 30_000)
        let (server, path) = try await startServer(engine: engine, configuration: config)
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        try sendAudio(client, utteranceBytes(speech: 160_000, silence: 160_000), chunk: 6400)
        try client.send(.ping)
        _ = try receive(client, until: isPong)
        let start = Date()
        await server.shutdown(flushingSessions: true)
        let seconds = Date().timeIntervalSince(start)
        var messages: [ServerMessage] = []
        while let reply = try client.receive(timeout: 5) { messages.append(reply.message) }
        #expect(!messages.map(\.type).contains("stopped"), "\(messages.map(\.type))")
        #expect(errorCode(try #require(messages.last)) == .shuttingDown)
        guard case .error(_, let message)? = messages.last else { return }
        #expect(message.contains("was not"), "\(message)")
        #expect(engine.calls < 60 && seconds < 2.5, "\(engine.calls) frames recognised, \(seconds) s")
    }

    /// The finals a shutdown flushes may be more than a client's queue holds while its socket is full:
    /// they still go out (the shutdown is bounded by the grace period, not by the queue), where they
    /// used to be dropped without a word because the client-too-slow path does nothing once closing.
    @Test func shutdownSendsFinalsThatOverflowTheClientQueue() async throws {
        var config = ServerConfiguration()
        config.clientQueueEvents = 2
        config.writeBufferLow = 1024
        config.writeBufferHigh = 2048
        config.closeGraceSeconds = 20
        let engine = BulkyEngine(finals: 20, wordsPerFinal: 600)
        let (server, path) = try await startServer(engine: engine, configuration: config)
        let client = try connect(path)
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        try sendAudio(client, utteranceBytes(speech: 1600, silence: 0))
        try client.send(.ping)  // answered at once; the frame's recognition waits for the gate
        _ = try receive(client, until: isPong)
        // The frame's results come once the shutdown has begun: the socket file goes just before the
        // connections are told, and 0.2 s after, their shutdown has long run on the event loop.
        let opener = Thread {
            while FileManager.default.fileExists(atPath: path) { usleep(1000) }
            usleep(200_000)
            engine.gate.signal()
        }
        opener.start()
        // The client reads only after the finals (about 0.8 MB, several times its socket's buffer) have
        // filled its socket and its queue; the shutdown waits for it, up to the grace period.
        let read = Box([ServerMessage]())
        let reader = Thread {
            usleep(1_500_000)
            while let reply = try? client.receive(timeout: 10) { read.with { $0.append(reply.message) } }
        }
        reader.start()
        await server.shutdown(flushingSessions: true)
        #expect(await eventually(30) { read.with { $0.last.flatMap(errorCode) } == .shuttingDown })
        let messages = read.with { $0 }
        #expect(finals(messages).count == 20, "\(messages.map(\.type))")
        #expect(messages.map(\.type).suffix(2) == ["stopped", "error"])
    }
}

@Suite(.serialized) struct SocketFileTests {
    @Test func socketFileGetsMode0660AndTheConfiguredGroup() async throws {
        var config = ServerConfiguration()
        let group = try #require(getgrgid(getgid()))
        config.socketGroup = String(cString: group.pointee.gr_name)
        let (server, path) = try await startServer(configuration: config)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
        #expect(info.st_gid == getgid())
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        await server.shutdown()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func unknownSocketGroupIsRefusedAndLeavesNoSocketFile() async throws {
        var config = ServerConfiguration()
        config.socketGroup = "no-such-group-earshot"
        let server = EarshotServer(engine: FakeEngine(), configuration: config)
        let path = temporarySocketPath()
        await #expect(throws: ServerError.unknownGroup(name: "no-such-group-earshot")) { try await server.start(path: path) }
        #expect(!FileManager.default.fileExists(atPath: path))
        await server.shutdown()
    }

    @Test func staleSocketFileIsRemovedAndReplaced() async throws {
        let path = temporarySocketPath()
        // A socket file with nobody behind it, as a crashed daemon leaves.
        let fd = try boundSocket(at: path)
        close(fd)
        #expect(FileManager.default.fileExists(atPath: path))
        #expect(throws: ClientError.self) { try SocketClient(path: path) }
        let server = EarshotServer(engine: FakeEngine())
        try await server.start(path: path)
        let client = try connect(path)
        try client.send(.ping)
        #expect(try client.receive(timeout: 5)?.message == .pong)
        await server.shutdown()
    }

    @Test func liveSocketIsRefusedAndKeepsServing() async throws {
        let (first, path) = try await startServer()
        let second = EarshotServer(engine: FakeEngine())
        await #expect(throws: ServerError.socketInUse(path: path)) { try await second.start(path: path) }
        await second.shutdown()
        let client = try connect(path)
        try client.send(.ping)
        #expect(try client.receive(timeout: 5)?.message == .pong)
        await first.shutdown()
    }

    @Test func aPathThatIsNotASocketIsNeverReplaced() async throws {
        let path = temporarySocketPath()
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8)))
        defer { unlink(path) }
        let server = EarshotServer(engine: FakeEngine())
        await #expect(throws: ServerError.notASocket(path: path)) { try await server.start(path: path) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
        await server.shutdown()
    }

    /// At shutdown the server removes its own socket file only: a file that replaced it (a new instance
    /// that found this one's socket stale) is left in place.
    @Test func shutdownRemovesOnlyItsOwnSocketFile() async throws {
        let (server, path) = try await startServer()
        await server.shutdown()
        #expect(!FileManager.default.fileExists(atPath: path))

        let (replaced, other) = try await startServer()
        // Later than the file's change time, which the kernel keeps at a tick's resolution.
        usleep(50_000)
        unlink(other)
        let fd = try boundSocket(at: other, listeningWithBacklog: 1)
        defer { close(fd); unlink(other) }
        await replaced.shutdown()
        #expect(FileManager.default.fileExists(atPath: other), "the new instance's socket file was removed")
    }

    /// The listen queue a Unix socket has, as `ss` reports it (its Send-Q column for a listener).
    func listenBacklog(_ path: String) throws -> Int? {
        let r = try runProcess("/bin/ss", ["-x", "-l", "-n"], scratch: URL(fileURLWithPath: NSTemporaryDirectory()))
        guard let line = r.stdout.split(separator: "\n").first(where: { $0.contains(path) }) else { return nil }
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        return fields.count > 3 ? Int(fields[3]) : nil
    }

    /// NIO listens again with a queue of 128 on a socket it is given; the server puts 256 back, for a
    /// socket it binds and for one systemd passes (whose Backlog= is 256).
    @Test func theListenQueueIs256() async throws {
        let (server, path) = try await startServer()
        #expect(try listenBacklog(path) == 256)
        await server.shutdown()

        let adopted = temporarySocketPath()
        defer { unlink(adopted) }
        let fd = try boundSocket(at: adopted, listeningWithBacklog: 16)
        let other = EarshotServer(engine: FakeEngine())
        try await other.start(listeningFD: fd)
        #expect(try listenBacklog(adopted) == 256)
        await other.shutdown()
    }

    @Test func adoptsAnAlreadyListeningDescriptorAsSystemdPassesIt() async throws {
        let path = temporarySocketPath()
        defer { unlink(path) }
        let fd = try boundSocket(at: path, listeningWithBacklog: 16)
        let server = EarshotServer(engine: FakeEngine())
        try await server.start(listeningFD: fd)
        #expect(server.socketPath == nil)
        let client = try connect(path)
        try client.send(.ping)
        #expect(try client.receive(timeout: 5)?.message == .pong)
        await server.shutdown()
        // The socket file belongs to systemd: left in place.
        #expect(FileManager.default.fileExists(atPath: path))
    }

    @Test func adoptingSomethingThatIsNotASocketFailsClearly() async throws {
        let server = EarshotServer(engine: FakeEngine())
        let fd = open("/dev/null", O_RDONLY)
        defer { close(fd) }
        await #expect(throws: ServerError.self) { try await server.start(listeningFD: fd) }
        await server.shutdown()
    }

    @Test func connectingToAMissingSocketNamesThePathAndTheLikelyCause() {
        do {
            _ = try SocketClient(path: "/tmp/earshot-definitely-missing.sock")
            Issue.record("connected to a missing socket")
        } catch {
            #expect(error.description == "cannot connect to /tmp/earshot-definitely-missing.sock: no such file - is earshotd running?")
        }
    }
}

