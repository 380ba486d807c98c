import Audio
import Foundation
import Tensors
import Model
import Recognizer
import Server
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// earshotd as users and systemd run it: a real process on a real Unix socket, the tiny model trained
/// in-process (Tests/TestSupport/TinyModel.swift), ALSA's file plugin as the microphone. Serialized:
/// every test runs a daemon, and the machine has two cores.
@Suite("earshotd", .serialized)
struct DaemonTests {
    // MARK: start-up and systemd

    @Test("starts, says hello, tells systemd READY=1 with a status line, pings the watchdog, and stops cleanly")
    func startsAndNotifiesSystemd() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let notify = try NotifyListener(path: scratch.path("notify"))
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"],
                                environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"],
                                waitForHello: false)
        #expect(notify.waitFor("READY=1", timeout: 30), "no READY=1; got \(notify.messages); stderr: \(daemon.child.stderr)")
        let hello = try daemon.hello()
        #expect(hello.server == "earshotd")
        #expect(hello.capabilities.contains("reload"))
        #expect(hello.model.sha256 == (try ModelFile.load(path: fx.modelPath)).sha256)
        #expect(hello.model.path == fx.modelPath)
        #expect(notify.messages.contains { $0.contains("STATUS=") && $0.contains("no capture") }, "\(notify.messages)")
        // WATCHDOG_USEC 0.4 s: a ping every 0.2 s.
        #expect(notify.waitFor("WATCHDOG=1", timeout: 5), "no watchdog ping: \(notify.messages)")
        let status = try daemon.status()
        #expect(status.capture == nil)

        #expect(daemon.terminate() == 0, "stderr: \(daemon.child.stderr)")
        #expect(notify.waitFor("STOPPING=1", timeout: 1))
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the socket file is removed at exit")
    }

    @Test("socket activation: a listening socket passed as fd 3 with LISTEN_FDS/LISTEN_PID is served, and left in place")
    func socketActivation() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let path = scratch.path("activated.sock")
        let fd = try boundSocket(at: path, listeningWithBacklog: 16)
        defer { close(fd) }

        // As systemd does it: the socket as fd 3, LISTEN_PID naming the daemon's own pid (the shell execs
        // into earshotd, keeping its pid). --socket points elsewhere: it must not be bound.
        let earshotd = try builtExecutable("earshotd")
        let unused = scratch.path("not-bound.sock")
        try Data().write(to: URL(fileURLWithPath: scratch.path("none.toml")))
        let child = try Child("/bin/sh", ["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", earshotd,
                                          "--config", scratch.path("none.toml"), "--socket", unused,
                                          "--model", fx.modelPath, "--no-capture"],
                              scratch: scratch, environment: ["LISTEN_FDS": "1"], fd3: fd)
        let daemon = Daemon(child: child, socket: path)
        let (client, hello) = try daemon.connect()
        #expect(hello.server == "earshotd")
        try client.send(ClientRequest(.ping, id: .int(7)))
        #expect(try client.receive(timeout: 10) == ServerReply(.pong, id: .int(7)))
        client.close()
        #expect(!FileManager.default.fileExists(atPath: unused))

        child.signal(SIGTERM)
        #expect(child.wait(timeout: 30) == 0, "stderr: \(child.stderr)")
        // Read after exit: the socket was listening before the daemon started, so a client can be served
        // before the daemon's log line has come through the pipe.
        #expect(child.stderr.contains("inherited"), "stderr: \(child.stderr)")
        #expect(FileManager.default.fileExists(atPath: path), "an adopted socket's file belongs to systemd")
    }

    @Test("a stale socket file left by a killed daemon is replaced on restart")
    func staleSocketIsReplaced() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let first = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"])
        first.child.signal(SIGKILL)
        #expect(first.child.wait(timeout: 10) == 128 + SIGKILL)
        #expect(FileManager.default.fileExists(atPath: first.socket), "kill -9 leaves the socket file")

        let second = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"])
        #expect(try second.request(.ping) == .pong)
        #expect(second.child.stderr.contains("removing stale socket file"), "stderr: \(second.child.stderr)")
        #expect(second.terminate() == 0)
    }

    @Test("a second daemon on a live socket refuses to start and names the socket")
    func liveSocketIsRefused() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let first = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"])
        let second = try Child(try builtExecutable("earshotd"),
                               ["--config", scratch.path("none.toml"), "--socket", first.socket, "--model", fx.modelPath,
                                "--no-capture"], scratch: scratch)
        #expect(second.wait(timeout: 30) == 1)
        #expect(second.stderr.contains("another server is already listening"), "stderr: \(second.stderr)")
        #expect(try first.request(.ping) == .pong, "the first daemon is unharmed")
        #expect(first.terminate() == 0)
    }

    @Test("a server of another protocol version is named as such by the CLI, whatever its hello lacks")
    func anotherProtocolVersionIsReportedFirst() throws {
        let scratch = try Scratch()
        let path = scratch.path("fake.sock")
        // A stand-in for a newer earshotd: its hello has protocol 2 and none of protocol 1's other fields.
        let script = #"""
        import socket, sys, time
        s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
        c, _ = s.accept(); c.sendall(b'{"type":"hello","protocol":2,"server":"earshotd"}\n'); time.sleep(10)
        """#
        let fake = try Child("/usr/bin/python3", ["-c", script, path], scratch: scratch)
        defer { fake.signal(SIGKILL); _ = fake.wait(timeout: 5) }
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: path) && Date() < deadline { usleep(20_000) }
        let status = try Child(try builtExecutable("earshot"), ["status", "--socket", path], scratch: scratch)
        #expect(status.wait(timeout: 30) == 1)
        #expect(status.stderr.contains("the server speaks protocol 2, this earshot speaks \(ProtocolInfo.version); update the older one"),
                "stderr: \(status.stderr)")
    }

    // MARK: the microphone

    @Test("speech captured through ALSA reaches `earshot listen --json` as finals equal to offline recognition of their segments")
    func microphoneFinalsReachListen() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let pcm = try FilePCM(scratch: scratch)
        let words = ["yes", "left", "down"]
        let audio = scene([(nil, 0.5), (words[0], 0), (nil, 1.0), (words[1], 0), (nil, 1.0), (words[2], 0), (nil, 1.2)],
                          model: fx.tiny)
        let seconds = Double(audio.count) / 16000
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: pcm.arguments(duration: seconds))
        // No input file yet: the device cannot be opened and is retried.
        try daemon.waitForStatus("capture retrying") { $0.capture?.state == "retrying" }

        let listen = try Child(try builtExecutable("earshot"), ["listen", "--socket", daemon.socket, "--json"],
                               scratch: scratch, tag: "listen")
        try daemon.waitForStatus("the listener subscribed") { $0.subscribers == 1 }
        try pcm.plugIn(audio)
        let status = try daemon.waitForStatus("capture finished and recognised") {
            $0.capture?.state == "stopped" && $0.audioSeconds >= seconds - 0.01
        }
        #expect(status.capture?.droppedSamples == 0 && status.capture?.overruns == 0)
        #expect(abs(status.audioSeconds - seconds) < 0.01, "audio \(status.audioSeconds) s, captured \(seconds) s")
        #expect(status.realTimeFactor > 0)

        let expected = referenceFinals(audio, recognizer: fx.recognizer)
        let deadline = Date().addingTimeInterval(20)
        while listen.stdout.components(separatedBy: "\"type\":\"final\"").count - 1 < expected.count, Date() < deadline {
            usleep(20_000)
        }
        #expect(daemon.terminate() == 0, "stderr: \(daemon.child.stderr)")
        #expect(listen.wait(timeout: 10) == 0, "listen: \(listen.stderr)")

        let replies = try listen.stdout.split(separator: "\n").map { try MessageCodec.decodeServer(line: Array($0.utf8)) }
        var finals: [(text: String, start: Double, end: Double)] = []
        var partials = 0
        for reply in replies {
            switch reply.message {
            case .final(.microphone, _, let transcript, let start, let end): finals.append((transcript.text, start, end))
            case .partial(.microphone, _, _, _): partials += 1
            default: break
            }
        }
        #expect(expected.map(\.text) == words, "the tiny model should hear its own training voice")
        #expect(finals.map(\.text) == expected.map(\.text), "listen printed \(listen.stdout)")
        for (final, reference) in zip(finals, expected) {
            #expect(reference.text == reference.offline, "a final is offline recognition of its segment")
            // Times travel as JSON numbers; 1 ms covers any rounding of their text form.
            #expect(abs(final.start - reference.start) < 1e-3 && abs(final.end - reference.end) < 1e-3,
                    "\(final) vs \(reference)")
        }
        #expect(partials >= words.count, "partials arrive while words are spoken")
        #expect(replies.last?.message == .error(code: .shuttingDown, message: replies.last.flatMap {
            if case .error(_, let m) = $0.message { return m } else { return nil }
        } ?? ""), "the last thing a subscriber hears is shutting_down")
    }

    /// A daemon that stops says shutting_down first (listen exits 0, as above); one killed outright just
    /// closes the socket, and listen exited 0 then too, as if all were well.
    @Test("`earshot listen` fails, saying so, when the daemon goes away without a word")
    func listenFailsWhenTheDaemonIsKilled() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let pcm = try FilePCM(scratch: scratch)
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: pcm.arguments(duration: 1))
        let listen = try Child(try builtExecutable("earshot"), ["listen", "--socket", daemon.socket],
                               scratch: scratch, tag: "listen")
        try daemon.waitForStatus("the listener subscribed") { $0.subscribers == 1 }
        daemon.child.signal(SIGKILL)
        #expect(daemon.child.wait(timeout: 10) == 128 + SIGKILL)
        #expect(listen.wait(timeout: 10) == 1, "listen: \(listen.stderr)")
        #expect(listen.stderr.contains("closed the connection without saying why"), "listen: \(listen.stderr)")
    }

    /// `earshot listen >> log` on a full disk lost every transcript from then on without a word, until the
    /// daemon stopped: it now stops at the first lost write, saying so, while the daemon goes on.
    @Test("`earshot listen` stops at once, saying so, when its output cannot be written")
    func listenStopsWhenItsOutputIsLost() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let pcm = try FilePCM(scratch: scratch)
        let audio = scene([(nil, 0.5), ("yes", 0), (nil, 1.2)], model: fx.tiny)
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: pcm.arguments(duration: Double(audio.count) / 16000))
        let listen = try Child("/bin/sh", ["-c", #""$0" listen --socket "$1" > /dev/full"#, try builtExecutable("earshot"), daemon.socket],
                               scratch: scratch, tag: "listen")
        try daemon.waitForStatus("the listener subscribed") { $0.subscribers == 1 }
        try pcm.plugIn(audio)
        #expect(listen.wait(timeout: 30) == 1, "listen: \(listen.stderr)")
        #expect(listen.stderr.contains("cannot write to standard output: No space left on device; stopped listening"), "listen: \(listen.stderr)")
        #expect(daemon.terminate() == 0)
    }

    @Test("a capture device that cannot be opened: client sessions are served and status says retrying")
    func unopenableCaptureKeepsServing() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath,
                                arguments: ["--device", "earshot_no_such_pcm", "--capture-retry-max", "0.1"])
        let audio = scene([(nil, 0.3), ("up", 0), (nil, 0.8), ("right", 0), (nil, 0.3)], model: fx.tiny)
        #expect(try streamSession(daemon, audio) == referenceFinals(audio, recognizer: fx.recognizer).map(\.text))
        let status = try daemon.waitForStatus("capture retrying") { $0.capture?.state == "retrying" }
        #expect(status.capture?.device == nil)
        #expect(status.capture?.lastError?.contains("earshot_no_such_pcm") == true, "\(String(describing: status.capture))")
        #expect(status.sessionsTotal == 1)
        // The recognition thread logs capture transitions within 100 ms of noticing them.
        let deadline = Date().addingTimeInterval(10)
        while !daemon.child.stderr.contains("capture device unavailable, retrying"), Date() < deadline { usleep(20_000) }
        #expect(daemon.child.stderr.contains("capture device unavailable, retrying"), "the retry is logged: \(daemon.child.stderr)")
        // A listener is told why nothing comes, instead of waiting in silence.
        let listen = try Child(try builtExecutable("earshot"), ["listen", "--socket", daemon.socket], scratch: scratch, tag: "listen")
        let told = Date().addingTimeInterval(10)
        while !listen.stderr.contains("the microphone is retrying"), Date() < told { usleep(20_000) }
        #expect(listen.stderr.contains("the microphone is retrying: ") && listen.stderr.contains("earshot_no_such_pcm")
                && listen.stderr.contains("transcripts come once the device opens"), "listen: \(listen.stderr)")
        listen.signal(SIGINT)
        #expect(listen.wait(timeout: 10) == 0)
        #expect(daemon.terminate() == 0)
    }

    // MARK: client sessions

    @Test("`earshot stream` prints what `earshot transcribe` prints for the same file")
    func streamEqualsTranscribe() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let earshot = try builtExecutable("earshot")
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"])

        // One utterance (the pause is shorter than the trailing silence): the stream's one final is the
        // whole file, which is exactly what transcribe recognises. Samples are 16-bit values at 16 kHz,
        // so the client's s16le conversion and the file reader see identical audio.
        let single = scratch.path("single.wav")
        try writeWAV(scene([(nil, 0.2), ("down", 0), (nil, 0.25), ("up", 0), (nil, 0.2)], model: fx.tiny), to: single)
        // Several utterances: each printed final is offline recognition of its segment.
        let several = scratch.path("several.wav")
        let severalAudio = scene([(nil, 0.4), ("no", 0), (nil, 1.0), ("right", 0), (nil, 1.0), ("yes", 0), (nil, 0.4)],
                                 model: fx.tiny)
        try writeWAV(severalAudio, to: several)

        let transcribe = try Child(earshot, ["transcribe", "--model", fx.modelPath, single], scratch: scratch, tag: "t")
        #expect(transcribe.wait(timeout: 60) == 0, "\(transcribe.stderr)")
        let stream = try Child(earshot, ["stream", "--socket", daemon.socket, single], scratch: scratch, tag: "s1")
        #expect(stream.wait(timeout: 60) == 0, "\(stream.stderr)")
        #expect(!transcribe.stdout.isEmpty)
        #expect(stream.stdout == transcribe.stdout, "stream: \(stream.stdout) transcribe: \(transcribe.stdout)")
        // '-' streams standard input (a pipe), as `transcribe -` reads it.
        let piped = try Child("/bin/sh", ["-c", #"cat "$1" | "$0" stream --socket "$2" -"#, earshot, single, daemon.socket], scratch: scratch, tag: "s3")
        #expect(piped.wait(timeout: 60) == 0, "\(piped.stderr)")
        #expect(piped.stdout == transcribe.stdout, "stream -: \(piped.stdout) transcribe: \(transcribe.stdout)")

        let stream2 = try Child(earshot, ["stream", "--socket", daemon.socket, several], scratch: scratch, tag: "s2")
        #expect(stream2.wait(timeout: 60) == 0, "\(stream2.stderr)")
        let expected = referenceFinals(severalAudio, recognizer: fx.recognizer)
        #expect(stream2.stdout.split(separator: "\n").map(String.init) == expected.map(\.text).filter { !$0.isEmpty })
        #expect(expected.map(\.text) == expected.map(\.offline))
        #expect(daemon.terminate() == 0)
    }

    /// `sox -d -t wav - | earshot stream -` must transcribe while sox records: the WAV then carries a
    /// "length unknown" header and the pipe stays open. `stream` used to copy its input to the end first,
    /// so a live source printed nothing until it was stopped.
    @Test("`earshot stream -` transcribes a pipe's WAV as it arrives; a truncated one fails after its transcript, and FLAC is still read")
    func streamReadsAPipeAsItArrives() throws {
        let (scene, scratch, earshot, daemon) = try LiveScene.started()
        let (audio, finals, wav, live) = (scene.audio, scene.finals, scene.wav, scene.live)
        #expect(finals.count >= 2, "the scene must end utterances before the stream does: \(finals)")

        // The writer keeps the pipe open until the flag file exists, as a recorder would.
        let flag = scratch.path("stop-recording")
        let script = #"{ cat "$1"; while [ ! -e "$2" ]; do sleep 0.05; done; } | "$0" stream --socket "$3" -"#
        let stream = try Child("/bin/sh", ["-c", script, earshot, live, flag, daemon.socket], scratch: scratch, tag: "live")
        let deadline = Date().addingTimeInterval(60)
        while !stream.stdout.hasPrefix(finals[0] + "\n"), Date() < deadline { usleep(20_000) }
        #expect(stream.stdout.hasPrefix(finals[0] + "\n"), "nothing printed while the pipe is open: '\(stream.stdout)' \(stream.stderr)")
        #expect(stream.wait(timeout: 0) == nil, "stream ended before its input did")
        _ = FileManager.default.createFile(atPath: flag, contents: nil)
        #expect(stream.wait(timeout: 60) == 0, "\(stream.stderr)")
        #expect(stream.stdout.split(separator: "\n").map(String.init) == finals)

        // Cut short with its exact header: what arrived is transcribed and printed, then it fails and says why.
        let exact = Array(try Data(contentsOf: URL(fileURLWithPath: wav)))
        let cut = scratch.path("cut.wav")
        try Data(exact[0..<(44 + 2 * (audio.count * 2 / 3))]).write(to: URL(fileURLWithPath: cut))
        let truncated = try Child("/bin/sh", ["-c", #"cat "$1" | "$0" stream --socket "$2" -"#, earshot, cut, daemon.socket],
                                  scratch: scratch, tag: "cut")
        #expect(truncated.wait(timeout: 60) == 1)
        #expect(truncated.stderr.contains("cannot read '-': the file is truncated"), "\(truncated.stderr)")
        #expect(truncated.stdout.hasPrefix(finals[0] + "\n"), "what arrived was not transcribed: '\(truncated.stdout)'")

        // FLAC cannot be decoded from a pipe: it is copied to its end first, and transcribed as before.
        let flac = scratch.path("scene.flac")
        try AudioWriter.write(audio, sampleRate: 16000, to: flac, format: .flac)
        let piped = try Child("/bin/sh", ["-c", #"cat "$1" | "$0" stream --socket "$2" -"#, earshot, flac, daemon.socket],
                              scratch: scratch, tag: "flac")
        #expect(piped.wait(timeout: 60) == 0, "\(piped.stderr)")
        #expect(piped.stdout.split(separator: "\n").map(String.init) == finals)
        // Lossy encodings change the words a little; what matters is that each is read. IMA ADPCM in a
        // streamed WAV (which libsndfile refuses on a pipe) is spooled; Ogg Vorbis goes as it arrives.
        let vorbis = scratch.path("scene.ogg")
        try AudioWriter.write(audio, sampleRate: 16000, to: vorbis, format: .oggVorbis)
        for (tag, script) in [("adpcm", #"sox "$1" -e ima-adpcm -t wav - | "$0" stream --socket "$2" -"#),
                              ("vorbis", #"cat "$3" | "$0" stream --socket "$2" -"#)] {
            let lossy = try Child("/bin/sh", ["-c", script, earshot, wav, daemon.socket, vorbis], scratch: scratch, tag: tag)
            #expect(lossy.wait(timeout: 60) == 0, "\(tag): \(lossy.stderr)")
        }
        #expect(daemon.terminate() == 0)
    }

    /// Three words with pauses for a daemon on the tiny model: the finals a stream of it must print, and
    /// the scene as a WAV file and as the WAV a recorder streams (`lengthUnknownWAV`).
    struct LiveScene {
        let audio: [Float], finals: [String], wav: String, live: String

        static func started() throws -> (LiveScene, Scratch, String, Daemon) {
            let scratch = try Scratch()
            let fx = try TinyFixture(scratch: scratch)
            let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"])
            let audio = scene([(nil, 0.4), ("no", 0), (nil, 1.0), ("right", 0), (nil, 1.0), ("yes", 0), (nil, 0.4)], model: fx.tiny)
            let finals = referenceFinals(audio, recognizer: fx.recognizer).map(\.text).filter { !$0.isEmpty }
            let wav = scratch.path("scene.wav"), live = scratch.path("live.wav")
            try writeWAV(audio, to: wav)
            try Data(try lengthUnknownWAV(wav)).write(to: URL(fileURLWithPath: live))
            return (LiveScene(audio: audio, finals: finals, wav: wav, live: live), scratch, try builtExecutable("earshot"), daemon)
        }
    }

    /// The bytes of the 16-bit WAV at `path` with the RIFF and data sizes sox writes to a pipe, where it
    /// cannot know the length: a reader must take the audio to the pipe's end.
    static func lengthUnknownWAV(_ path: String) throws -> [UInt8] {
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(Array(bytes[36..<40]) == Array("data".utf8))
        for (offset, value) in [(4, UInt32(0x7FFF_F024)), (40, UInt32(0x7FFF_F000))] {
            for k in 0..<4 { bytes[offset + k] = UInt8((value >> (8 * UInt32(k))) & 0xFF) }
        }
        return bytes
    }

    /// Ctrl-C on `earshot stream` must not lose what was already sent: the finals for it still print. Here
    /// the recorder (a named pipe's writer) ignores the Ctrl-C and goes quiet without closing, so the
    /// stream must end its input itself.
    @Test("Ctrl-C ends `earshot stream`'s audio, not its transcript, even while a named pipe is silent")
    func streamInterruptedKeepsItsTranscript() throws {
        let (scene, scratch, earshot, daemon) = try LiveScene.started()
        let (finals, live) = (scene.finals, scene.live)
        let fifo = scratch.path("recorder.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        // The whole scene, then 60 s of an open, silent pipe (held by `sleep`, which the test kills).
        let recorder = try Child("/bin/sh", ["-c", #"exec > "$1"; cat "$0"; exec sleep 60"#, live, fifo],
                                 scratch: scratch, tag: "recorder")
        let stream = try Child(earshot, ["stream", "--socket", daemon.socket, fifo], scratch: scratch, tag: "stream")
        let deadline = Date().addingTimeInterval(60)
        let early = finals.dropLast().map { $0 + "\n" }.joined()
        while !stream.stdout.hasPrefix(early), Date() < deadline { usleep(20_000) }
        #expect(stream.stdout.hasPrefix(early), "not printed while the pipe is open: '\(stream.stdout)' \(stream.stderr)")
        // The rest of the audio, all in the pipe already, is sent within moments; its final needs the
        // stream's end.
        usleep(500_000)
        #expect(stream.wait(timeout: 0) == nil, "stream ended before its input did")
        stream.signal(SIGINT)
        #expect(stream.wait(timeout: 30) == 130, "\(stream.stderr)")
        #expect(stream.stdout.split(separator: "\n").map(String.init) == finals)
        #expect(stream.stderr.contains("interrupted; the transcript covers the first"), "\(stream.stderr)")
        recorder.signal(SIGKILL)
        #expect(daemon.terminate() == 0)
    }

    /// A daemon that drops the session after starting it (its audio converter failed) answers every later
    /// audio frame, and the stop, with `no_session` on a connection it keeps open. `earshot stream` waited
    /// for ever for a `stopped` that never came; it must stop sending, end, say why once, and fail.
    @Test("`earshot stream` fails, without hanging, when the daemon drops its session")
    func streamFailsWhenTheSessionIsDropped() throws {
        let scratch = try Scratch()
        let path = scratch.path("scripted.sock")
        let listener = try boundSocket(at: path, listeningWithBacklog: 1)
        defer { close(listener) }
        // Ten seconds sent in real time (100 frames of 100 ms): the client must stop sending once the
        // session is gone, not send them all to be answered with errors.
        let audio = scratch.path("audio.wav")
        try writeWAV([Float](repeating: 0.01, count: 160_000), to: audio)
        let stream = try Child(try builtExecutable("earshot"), ["stream", "--realtime", "--socket", path, audio], scratch: scratch)

        let fd = accept(listener, nil, nil)
        try #require(fd >= 0)
        defer { close(fd) }
        func send(_ reply: ServerReply) { let bytes = MessageCodec.encode(reply); _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        send(ServerReply(.hello(Hello(server: "scripted", capabilities: ["stream"], sampleRate: 16000,
                                      maxLineBytes: ProtocolInfo.defaultMaxLineBytes, maxFrameBytes: ProtocolInfo.defaultMaxFrameBytes,
                                      model: ModelSummary(name: "none", sampleRate: 16000)))))
        var decoder = FrameDecoder(maxLineBytes: ProtocolInfo.defaultMaxLineBytes, maxFrameBytes: ProtocolInfo.defaultMaxFrameBytes)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var audioFrames = 0, stopped = false
        let deadline = Date().addingTimeInterval(30)
        while !stopped && Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            decoder.append(buffer[0..<n])
            while let frame = try decoder.next() {
                let request = try MessageCodec.decodeClient(frame)
                switch request.message {
                case .start(let format, _):
                    send(ServerReply(.started(session: 1, format: format), id: request.id))
                    send(ServerReply(.error(code: .unsupportedSampleRate, message: "cannot convert this audio: scripted failure")))
                case .audio:
                    audioFrames += 1
                    send(ServerReply(.error(code: .noSession, message: "audio frame without a session: send start first")))
                case .stop:
                    send(ServerReply(.error(code: .noSession, message: "stop without a session: send start first"), id: request.id))
                    stopped = true
                default:
                    break
                }
            }
        }
        #expect(stopped && audioFrames < 20, "the client sent \(audioFrames) audio frames, then \(stopped ? "stop" : "nothing")")
        let status = stream.wait(timeout: 10)
        if status == nil { stream.signal(SIGKILL) }
        #expect(status == 1, "earshot stream: \(status.map { "exit \($0)" } ?? "still waiting 10 s after the stop's answer")")
        #expect(stream.stderr.contains("scripted failure") && stream.stderr.contains("did not transcribe the whole stream"), "\(stream.stderr)")
        #expect(stream.stderr.components(separatedBy: "audio frame without a session").count <= 2, "one report, not one per frame: \(stream.stderr)")
    }

    @Test("with a general LM installed, earshotd decodes as `earshot transcribe` does; --no-general-lm and --open-vocabulary as there")
    func generalLanguageModel() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let earshot = try builtExecutable("earshot")
        let lm = scratch.path("down.arpa")
        try SampleLanguageModels.downOnlyARPA.write(toFile: lm, atomically: true, encoding: .utf8)
        let installed = ["EARSHOT_LM": lm]
        let audio = scratch.path("yes-down.wav")
        try writeWAV(scene([(nil, 0.2), ("yes", 0), (nil, 0.25), ("down", 0), (nil, 0.2)], model: fx.tiny), to: audio)

        func transcribe(_ flags: [String], _ environment: [String: String], _ tag: String) throws -> String {
            let t = try Child(earshot, ["transcribe", "--model", fx.modelPath] + flags + [audio], scratch: scratch,
                              environment: environment, tag: tag)
            #expect(t.wait(timeout: 60) == 0, "\(t.stderr)")
            return t.stdout
        }
        func stream(_ daemonFlags: [String], _ tag: String) throws -> String {
            let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"] + daemonFlags,
                                    socket: scratch.path("\(tag).sock"), environment: installed)
            let s = try Child(earshot, ["stream", "--socket", daemon.socket, audio], scratch: scratch, tag: tag)
            #expect(s.wait(timeout: 60) == 0, "\(s.stderr)")
            #expect(daemon.terminate() == 0)
            return s.stdout
        }
        let withLM = try transcribe([], installed, "t-lm")
        let greedy = try transcribe([], [:], "t-greedy")
        let open = try transcribe(["--open-vocabulary"], installed, "t-open")
        // The closed vocabulary holds only "down", so "yes" cannot come out with the LM.
        #expect(greedy.contains("yes") && !withLM.contains("yes") && withLM.contains("down"), "greedy '\(greedy)', LM '\(withLM)'")
        #expect(try stream([], "s-lm") == withLM)
        #expect(try stream(["--no-general-lm"], "s-greedy") == greedy)
        #expect(try stream(["--open-vocabulary"], "s-open") == open)

        // An installed general LM that cannot be read stops the daemon at start with a line naming it
        // and how to do without it.
        let broken = scratch.path("broken.arpa")
        try "\\data\\\nngram 1=7\n".write(toFile: broken, atomically: true, encoding: .utf8)
        let failed = try Child(try builtExecutable("earshotd"),
                               ["--config", scratch.path("none.toml"), "--socket", scratch.path("broken.sock"),
                                "--model", fx.modelPath, "--no-capture"],
                               scratch: scratch, environment: ["EARSHOT_LM": broken], tag: "broken")
        #expect(failed.wait(timeout: 30) == 1)
        #expect(failed.stderr.contains(broken) && failed.stderr.contains("general_lm = false"), "\(failed.stderr)")

        // A model with its own domain LM never needs the general one, so a damaged one does not matter,
        // and the daemon decodes as transcribe does with that model.
        let words = scratch.path("words.txt")
        try "yes\nno\n".write(toFile: words, atomically: true, encoding: .utf8)
        let domainModel = scratch.path("domain.safetensors")
        let adapt = try Child(earshot, ["adapt", "--base", fx.modelPath, "--text", words, "--vocabulary", "closed", "--out", domainModel],
                              scratch: scratch, tag: "adapt")
        #expect(adapt.wait(timeout: 60) == 0, "\(adapt.stderr)")
        let ownRun = try Child(earshot, ["transcribe", "--model", domainModel, audio], scratch: scratch,
                               environment: ["EARSHOT_LM": broken], tag: "t-own")
        #expect(ownRun.wait(timeout: 60) == 0, "\(ownRun.stderr)")
        let own = ownRun.stdout
        #expect(own.contains("yes") && !own.contains("down"), "'\(own)'")
        let daemon = try Daemon(scratch: scratch, model: domainModel, arguments: ["--no-capture"],
                                socket: scratch.path("own.sock"), environment: ["EARSHOT_LM": broken])
        let s = try Child(earshot, ["stream", "--socket", daemon.socket, audio], scratch: scratch, tag: "s-own")
        #expect(s.wait(timeout: 60) == 0, "\(s.stderr)")
        #expect(s.stdout == own)
        #expect(daemon.terminate() == 0)
        #expect(!daemon.child.stderr.contains("decoding with a language model"), "the general LM was not read")
    }

    @Test("16 clients streaming at once all get their finals")
    func sixteenConcurrentClients() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: ["--no-capture"])
        let words = TinyModel.words
        let scenes = (0..<16).map { i in
            scene([(nil, 0.2), (words[i % 6], 0), (nil, 0.8), (words[(i + 1 + i / 6) % 6], 0), (nil, 0.3)], model: fx.tiny)
        }
        let expected = scenes.map { referenceFinals($0, recognizer: fx.recognizer).map(\.text) }

        // Every client connects and starts its session before any sends audio, so all 16 run together.
        let results = LockedResults(count: 16)
        let started = DispatchSemaphore(value: 0)
        let go = DispatchGroup()
        go.enter()
        let done = DispatchGroup()
        for i in 0..<16 {
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    let (client, _) = try daemon.connect()
                    defer { client.close() }
                    try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
                    started.signal()
                    go.wait()
                    let bytes = s16Bytes(scenes[i])
                    for offset in stride(from: 0, to: bytes.count, by: 3200) {
                        try client.send(.audio(Array(bytes[offset..<min(bytes.count, offset + 3200)])))
                    }
                    try client.send(.stop)
                    var texts: [String] = []
                    while let reply = try client.receive(timeout: 60) {
                        if case .final(_, _, let t, _, _) = reply.message { texts.append(t.text) }
                        if case .stopped = reply.message { break }
                    }
                    results.set(i, .success(texts))
                } catch {
                    started.signal()
                    results.set(i, .failure(TestFailure("\(error)")))
                }
            }.start()
        }
        for _ in 0..<16 { _ = started.wait(timeout: .now() + 60) }
        let running = try daemon.status()
        go.leave()
        #expect(done.wait(timeout: .now() + 80) == .success, "clients did not finish")
        #expect(running.sessions == 16, "sessions running together: \(running.sessions)")
        for i in 0..<16 {
            switch results.get(i) {
            case .success(let texts)?: #expect(texts == expected[i], "client \(i)")
            case .failure(let error)?: Issue.record("client \(i): \(error)")
            case nil: Issue.record("client \(i) has no result")
            }
        }
        #expect(try daemon.status().sessionsTotal == 16)
        #expect(daemon.terminate() == 0)
    }

    // MARK: reload and shutdown

    @Test("SIGHUP and `reload` switch sessions and the microphone to a new model; a corrupt model keeps the old one")
    func reloadSwitchesModelsAndSurvivesCorruptOnes() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let pcm = try FilePCM(scratch: scratch)
        let micAudio = scene([(nil, 0.4), ("left", 0), (nil, 1.0), ("no", 0), (nil, 1.0)], model: fx.tiny)
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath,
                                arguments: pcm.arguments(duration: Double(micAudio.count) / 16000))
        let audio = scene([(nil, 0.3), ("yes", 0), (nil, 0.8), ("right", 0), (nil, 0.3)], model: fx.tiny)
        let before = try streamSession(daemon, audio)
        #expect(before == referenceFinals(audio, recognizer: fx.recognizer).map(\.text))
        let shaA = try daemon.status().model.sha256

        // A corrupt file through the socket: reload_failed naming the file, the old model serves on.
        let corrupt = scratch.path("corrupt.safetensors")
        try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: corrupt))
        guard case .error(let code, let message) = try daemon.request(.reload(modelPath: corrupt)) else {
            Issue.record("a corrupt model was accepted")
            return
        }
        #expect(code == .reloadFailed)
        #expect(message.contains(corrupt), "\(message)")
        #expect(try daemon.status().model.sha256 == shaA)
        #expect(try streamSession(daemon, audio) == before)

        // SIGHUP re-reads the configured path, now holding the rot13 model.
        let other = rot13Model(fx.tiny.trained)
        try other.save(path: fx.modelPath)
        let shaB = try ModelFile.load(path: fx.modelPath).sha256
        #expect(shaB != shaA)
        daemon.child.signal(SIGHUP)
        try daemon.waitForStatus("the new model") { $0.model.sha256 == shaB }
        let after = try streamSession(daemon, audio)
        #expect(after == before.map(rot13), "after SIGHUP: \(after)")

        // The microphone switched too: its speech comes out in the new model's spelling.
        let (subscriber, _) = try daemon.connect()
        defer { subscriber.close() }
        try subscriber.send(.subscribe(partials: false))
        #expect(try subscriber.receive(timeout: 10)?.message == .subscribed(partials: false))
        try pcm.plugIn(micAudio)
        let otherRecognizer = try Recognizer(model: other)
        let expectedMic = referenceFinals(micAudio, recognizer: otherRecognizer).map(\.text)
        var micFinals: [String] = []
        while micFinals.count < expectedMic.count, let reply = try subscriber.receive(timeout: 30) {
            if case .final(.microphone, _, let t, _, _) = reply.message { micFinals.append(t.text) }
        }
        #expect(micFinals == expectedMic)
        #expect(expectedMic == ["left", "no"].map(rot13))

        // A corrupt configured file and SIGHUP: logged, and the rot13 model serves on.
        try Data(repeating: 0x7B, count: 100).write(to: URL(fileURLWithPath: fx.modelPath))
        daemon.child.signal(SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while !daemon.child.stderr.contains("reload failed"), Date() < deadline { usleep(20_000) }
        #expect(daemon.child.stderr.contains("reload failed"), "stderr: \(daemon.child.stderr)")
        #expect(try daemon.status().model.sha256 == shaB)
        #expect(try streamSession(daemon, audio) == after)
        #expect(daemon.terminate() == 0)
    }

    @Test("SIGTERM while a client streams and the microphone is mid-word: both get their finals, then exit 0")
    func sigtermFlushesFinals() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        // The microphone reads a FIFO: it blocks (like a real device between periods) once the word is
        // read, so the word is still in flight when SIGTERM comes.
        let (writer, asoundrc) = try fifoMicrophone(scratch)
        var writerOpen = true
        defer { if writerOpen { close(writer) } }
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: [
            "--device", "earshot_fifo", "--alsa-config", asoundrc, "--capture-rate", "16000", "--capture-channels", "1",
            "--capture-period-ms", "10", "--capture-buffer-ms", "100"])
        let (subscriber, _) = try daemon.connect()
        try subscriber.send(.subscribe(partials: true))
        // The word and a little silence, less than the trailing silence that would end the utterance: the
        // look-ahead decides the word's frames, and the utterance stays open.
        let micWord = scene([(nil, 0.2), ("down", 0), (nil, 0.25)], model: fx.tiny)
        let bytes = s16Bytes(micWord)
        try #require(bytes.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) } == bytes.count)
        // Wait for a microphone partial: the utterance is in flight.
        var sawPartial = false
        while !sawPartial, let reply = try subscriber.receive(timeout: 15) {
            if case .partial(.microphone, _, _, _) = reply.message { sawPartial = true }
        }
        try #require(sawPartial)

        // A client mid-stream: audio sent, no stop.
        let audio = scene([(nil, 0.3), ("yes", 0), (nil, 0.8), ("left", 0)], model: fx.tiny)
        let (client, _) = try daemon.connect()
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        let clientBytes = s16Bytes(audio)
        for offset in stride(from: 0, to: clientBytes.count, by: 3200) {
            try client.send(.audio(Array(clientBytes[offset..<min(clientBytes.count, offset + 3200)])))
        }
        try client.send(ClientRequest(.ping, id: .int(9)))
        var sessionReplies: [ServerMessage] = []
        while let reply = try client.receive(timeout: 30) {
            if reply.id == .int(9) { break }
            sessionReplies.append(reply.message)
        }

        daemon.child.signal(SIGTERM)
        // The capture thread is blocked reading the FIFO; closing it ends that read (end of file).
        usleep(300_000)
        close(writer)
        writerOpen = false
        while let reply = try client.receive(timeout: 30) { sessionReplies.append(reply.message) }
        var micReplies: [ServerMessage] = []
        while let reply = try subscriber.receive(timeout: 30) { micReplies.append(reply.message) }
        #expect(daemon.child.wait(timeout: 30) == 0, "stderr: \(daemon.child.stderr)")

        let expected = referenceFinals(audio, recognizer: fx.recognizer).map(\.text)
        let finals = sessionReplies.compactMap { m -> String? in
            if case .final(.session, _, let t, _, _) = m { return t.text } else { return nil }
        }
        #expect(finals == expected, "session replies: \(sessionReplies)")
        #expect(sessionReplies.contains { if case .endpoint(.session, _, "end_of_stream", _) = $0 { return true } else { return false } })
        #expect(sessionReplies.contains { if case .stopped = $0 { return true } else { return false } })
        if case .error(let code, _)? = sessionReplies.last { #expect(code == .shuttingDown) } else {
            Issue.record("the session's last message is not shutting_down: \(String(describing: sessionReplies.last))")
        }

        let micFinals = micReplies.compactMap { m -> String? in
            if case .final(.microphone, _, let t, _, _) = m { return t.text } else { return nil }
        }
        #expect(micFinals == ["down"], "microphone replies: \(micReplies)")
        let finalIndex = micReplies.firstIndex { if case .final = $0 { return true } else { return false } }
        let closeIndex = micReplies.firstIndex { if case .error(.shuttingDown, _) = $0 { return true } else { return false } }
        #expect(finalIndex != nil && closeIndex != nil && finalIndex! < closeIndex!, "the final comes before the goodbye")
    }

    /// An ALSA PCM `earshot_fifo` (in the returned asoundrc) that captures from a FIFO, and the FIFO's
    /// writing end: the daemon's capture blocks in a read, like a real device between periods, until
    /// the test writes samples (16-bit, as configured). O_RDWR: opening does not wait for a reader.
    /// O_CLOEXEC: the daemon must not inherit a writer, or closing ours would not end its read.
    func fifoMicrophone(_ scratch: Scratch) throws -> (writer: Int32, asoundrc: String) {
        let fifo = scratch.path("mic.fifo")
        try #require(mkfifo(fifo, 0o600) == 0)
        let writer = open(fifo, O_RDWR | O_CLOEXEC)
        try #require(writer >= 0)
        let asoundrc = scratch.path("asoundrc")
        try """
            pcm.earshot_fifo { type file slave.pcm null file "/dev/null" infile "\(fifo)" format "raw" }

            """.write(toFile: asoundrc, atomically: true, encoding: .utf8)
        return (writer, asoundrc)
    }

    @Test("a second SIGTERM during shutdown exits at once")
    func secondSignalExitsAtOnce() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        // A FIFO microphone that never delivers keeps the capture thread in a read, so the orderly
        // shutdown waits; the second signal must not.
        let (writer, asoundrc) = try fifoMicrophone(scratch)
        defer { close(writer) }
        let daemon = try Daemon(scratch: scratch, model: fx.modelPath, arguments: [
            "--device", "earshot_fifo", "--alsa-config", asoundrc, "--capture-rate", "16000", "--capture-channels", "1"])
        daemon.child.signal(SIGTERM)
        #expect(daemon.child.wait(timeout: 1) == nil, "the orderly shutdown waits for the capture thread")
        daemon.child.signal(SIGTERM)
        #expect(daemon.child.wait(timeout: 5) == 1)
        #expect(daemon.child.stderr.contains("second signal"))
    }

    // MARK: configuration and units

    @Test("configuration: flags override the file, unknown keys and a missing explicit file are errors naming them")
    func configuration() throws {
        let scratch = try Scratch()
        let earshotd = try builtExecutable("earshotd")
        let file = scratch.path("earshotd.toml")
        try """
            model = "/m.safetensors"
            fallback_model = "/my \\"base\\" \\\\ models\\tü/base.safetensors"
            socket_mode = 0o640
            max_clients = 8
            [capture]
            device = "hw:1,0"
            [endpoint]
            trailing_silence = 0.9
            [decoding]
            hotwords = ["earshot:4"]
            general_lm = false

            """.write(toFile: file, atomically: true, encoding: .utf8)
        let merged = try Child(earshotd, ["--config", file, "--device", "plughw:2", "--closed-vocabulary", "--print-config"], scratch: scratch)
        #expect(merged.wait(timeout: 20) == 0, "\(merged.stderr)")
        let text = merged.stdout
        for line in ["model = \"/m.safetensors\"", #"fallback_model = "/my \"base\" \\ models\tü/base.safetensors""#, "socket_mode = \"0640\"", "max_clients = 8", "device = \"plughw:2\"",
                     "trailing_silence = 0.9", "hotwords = [\"earshot:4\"]", "enabled = true", "general_lm = false",
                     "closed_vocabulary = true"] {
            #expect(text.contains(line + "\n"), "missing \(line) in \(text)")
        }
        // What --print-config writes reads back to the same configuration.
        let again = scratch.path("again.toml")
        try text.write(toFile: again, atomically: true, encoding: .utf8)
        let reread = try Child(earshotd, ["--config", again, "--print-config"], scratch: scratch)
        #expect(reread.wait(timeout: 20) == 0)
        #expect(reread.stdout == text)

        let typo = scratch.path("typo.toml")
        try "[endpoint]\ntrailing_silense = 1.0\n".write(toFile: typo, atomically: true, encoding: .utf8)
        let bad = try Child(earshotd, ["--config", typo, "--print-config"], scratch: scratch)
        #expect(bad.wait(timeout: 20) == 1)
        #expect(bad.stderr.contains("unknown key 'endpoint.trailing_silense'"), "\(bad.stderr)")

        // /dev/null is the usual way to say "no settings": it reads as an empty file.
        let null = try Child(earshotd, ["--config", "/dev/null", "--print-config"], scratch: scratch)
        #expect(null.wait(timeout: 20) == 0, "\(null.stderr)")
        #expect(null.stdout.contains("general_lm = true\n"), "\(null.stdout)")
        let notUTF8 = scratch.path("latin1.toml")
        try Data([0x6D, 0x6F, 0x64, 0x65, 0x6C, 0x20, 0x3D, 0x20, 0x22, 0xE9, 0x22, 0x0A]).write(to: URL(fileURLWithPath: notUTF8))
        let latin1 = try Child(earshotd, ["--config", notUTF8, "--print-config"], scratch: scratch)
        #expect(latin1.wait(timeout: 20) == 1)
        #expect(latin1.stderr.contains(notUTF8) && latin1.stderr.contains("UTF-8"), "\(latin1.stderr)")

        let missing = try Child(earshotd, ["--config", scratch.path("nope.toml"), "--print-config"], scratch: scratch)
        #expect(missing.wait(timeout: 20) == 1)
        #expect(missing.stderr.contains("nope.toml") && missing.stderr.contains("no such file"), "\(missing.stderr)")

        let noWords = try Child(earshotd, ["--config", again, "--closed-vocabulary", "--no-model-lm", "--print-config"], scratch: scratch)
        #expect(noWords.wait(timeout: 20) == 1)
        #expect(noWords.stderr.contains("decoding.closed_vocabulary"), "\(noWords.stderr)")

        let badValue = try Child(earshotd, ["--config", again, "--trailing-silence=-1", "--print-config"], scratch: scratch)
        #expect(badValue.wait(timeout: 20) == 1)
        #expect(badValue.stderr.contains("endpoint.trailing_silence = -1.0"), "\(badValue.stderr)")

        // Values that would overflow an integer at start-up (infinity, 1e20) or wrap to another mode are
        // refused by name, not a crash or a socket nobody can open.
        for (flag, key) in [("--capture-ring-seconds=inf", "capture.ring_seconds"), ("--capture-retry-max=1e20", "capture.retry_max_seconds"),
                            ("--capture-duration=inf", "capture.duration"), ("--capture-buffer-ms=5000000", "capture.buffer_ms"),
                            ("--max-utterance=1e20", "endpoint.max_utterance"), ("--max-clients=0", "max_clients"),
                            ("--capture-retry-max=0.0004", "capture.retry_max_seconds"), ("--capture-duration=0.0004", "capture.duration")] {
            let huge = try Child(earshotd, ["--config", again, flag, "--print-config"], scratch: scratch)
            #expect(huge.wait(timeout: 20) == 1, "\(flag): \(huge.stdout)")
            #expect(huge.stderr.contains(key), "\(flag): \(huge.stderr)")
        }
        // Negative values after a space, not only after '=' (they looked like flags).
        let spaced = try Child(earshotd, ["--config", again, "--silence-level", "-60", "--word-bonus", "-1.5", "--print-config"], scratch: scratch)
        #expect(spaced.wait(timeout: 20) == 0, "\(spaced.stderr)")
        #expect(spaced.stdout.contains("silence_level = -60.0\n") && spaced.stdout.contains("word_bonus = -1.5\n"), "\(spaced.stdout)")
        // Levelling is on unless turned off, by flag or by key; the printed configuration reads back.
        #expect(spaced.stdout.contains("auto_level = true\n"), "\(spaced.stdout)")
        let unlevelled = try Child(earshotd, ["--config", again, "--auto-level", "false", "--print-config"], scratch: scratch)
        #expect(unlevelled.wait(timeout: 20) == 0, "\(unlevelled.stderr)")
        #expect(unlevelled.stdout.contains("auto_level = false\n"), "\(unlevelled.stdout)")
        let printed = scratch.path("unlevelled.toml")
        try unlevelled.stdout.write(toFile: printed, atomically: true, encoding: .utf8)
        let rereadLevel = try Child(earshotd, ["--config", printed, "--print-config"], scratch: scratch)
        #expect(rereadLevel.wait(timeout: 20) == 0 && rereadLevel.stdout.contains("auto_level = false\n"), "\(rereadLevel.stderr)")
        let negative = scratch.path("negative.toml")
        try "socket_mode = -1\n".write(toFile: negative, atomically: true, encoding: .utf8)
        let mode = try Child(earshotd, ["--config", negative, "--print-config"], scratch: scratch)
        #expect(mode.wait(timeout: 20) == 1, "\(mode.stdout)")
        #expect(mode.stderr.contains("socket_mode"), "\(mode.stderr)")
    }

    @Test("systemd-analyze verify accepts the service and socket units without a warning")
    func systemdUnitsVerify() throws {
        let scratch = try Scratch()
        let analyze = try #require(findExecutable("systemd-analyze") ?? ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
            .first { FileManager.default.isExecutableFile(atPath: $0) },
            "systemd-analyze is missing: run scripts/setup.sh (Debian package systemd)")
        let units = packageRoot().appendingPathComponent("systemd")
        let service = try String(contentsOf: units.appendingPathComponent("earshotd.service"), encoding: .utf8)
        // verify checks that ExecStart's binary exists: point it at the one just built.
        let built = try builtExecutable("earshotd")
        try #require(service.contains("ExecStart=/usr/local/bin/earshotd "))
        try service.replacingOccurrences(of: "ExecStart=/usr/local/bin/earshotd ", with: "ExecStart=\(built) ")
            .write(toFile: scratch.path("earshotd.service"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: units.appendingPathComponent("earshotd.socket").path,
                                         toPath: scratch.path("earshotd.socket"))
        let verify = try Child(analyze, ["verify", scratch.path("earshotd.socket"), scratch.path("earshotd.service")],
                               scratch: scratch, environment: ["SYSTEMD_LOG_LEVEL": "warning"])
        #expect(verify.wait(timeout: 60) == 0, "\(verify.stderr)")
        // verify only warns about an unknown or mistyped setting: any output is a failure.
        #expect(verify.stderr.isEmpty && verify.stdout.isEmpty, "\(verify.stdout)\(verify.stderr)")
        for directive in ["Type=notify", "WatchdogSec=", "DevicePolicy=closed", "ProtectSystem=strict",
                          "RestrictAddressFamilies=AF_UNIX", "CapabilityBoundingSet=\n", "ExecReload=/bin/kill -HUP $MAINPID"] {
            #expect(service.contains(directive), "the service lacks \(directive)")
        }
    }
}

/// Results from client threads.
final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Result<[String], TestFailure>?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: Result<[String], TestFailure>) { lock.lock(); values[i] = value; lock.unlock() }
    func get(_ i: Int) -> Result<[String], TestFailure>? { lock.lock(); defer { lock.unlock() }; return values[i] }
}
