import Audio
import Foundation
import Model
import Recognizer
import Server
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

// Process-level helpers: a real earshotd (and earshot) from the build folder (TestSupport's
// `builtExecutable`), run with posix_spawn so that a test controls its environment and descriptors
// (socket activation passes fd 3).

/// A scratch folder for one test, removed at deinit. Unix socket paths must stay under 108 bytes, so it
/// is short and under /tmp.
final class Scratch: @unchecked Sendable {
    let url: URL
    init(_ label: String = #function) throws {
        let name = "earshotd-" + label.prefix(while: { $0.isLetter || $0.isNumber }).prefix(16) + "-"
            + UUID().uuidString.prefix(8)
        url = URL(fileURLWithPath: "/tmp").appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// A child process started with posix_spawn: stdout and stderr go to files in the scratch folder; the
/// environment is the test's minus anything systemd-related, with no general LM for `earshot transcribe`
/// (`EARSHOT_LM` empty: the machine's would change its decoding), plus `environment`. Killed (SIGKILL) at
/// deinit if still running, so a failing test leaves no daemon behind.
final class Child: @unchecked Sendable {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private var exitStatus: Int32?

    /// `fd3`: a descriptor the child gets as fd 3 (socket activation).
    init(_ executable: String, _ arguments: [String], scratch: Scratch, environment: [String: String] = [:],
         fd3: Int32? = nil, tag: String = UUID().uuidString.prefix(6).description) throws {
        stdoutPath = scratch.path("\(tag).out")
        stderrPath = scratch.path("\(tag).err")
        var env = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
                    "JOURNAL_STREAM", "EARSHOT_SOCKET", "EARSHOT_MODEL"] {
            env[key] = nil
        }
        env["EARSHOT_LM"] = ""
        env.merge(environment) { $1 }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if let fd3 { posix_spawn_file_actions_adddup2(&actions, fd3, 3) }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    func signal(_ sig: Int32) { kill(pid, sig) }

    /// The exit status (128 + signal for a signal), or nil if still running after `timeout`.
    func wait(timeout: Double) -> Int32? {
        if let exitStatus { return exitStatus }
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                exitStatus = code
                return code
            }
            usleep(10_000)
        } while Date() < deadline
        return nil
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
}

/// A running earshotd on a socket in a scratch folder. `start` waits for its socket to answer `hello`.
final class Daemon: @unchecked Sendable {
    let child: Child
    let socket: String

    /// A daemon the test started itself (socket activation).
    init(child: Child, socket: String) {
        self.child = child
        self.socket = socket
    }

    /// Starts earshotd with `--model`, a socket in `scratch` and `arguments`, and (by default) waits
    /// until it says hello.
    convenience init(scratch: Scratch, model: String, arguments: [String], socket: String? = nil,
                     environment: [String: String] = [:], fd3: Int32? = nil, waitForHello: Bool = true) throws {
        let socket = socket ?? scratch.path("d.sock")
        // An empty configuration file: every setting comes from the defaults and the flags, never from
        // /etc/earshot/earshotd.toml of the machine running the tests.
        if !FileManager.default.fileExists(atPath: scratch.path("none.toml")) {
            try Data().write(to: URL(fileURLWithPath: scratch.path("none.toml")))
        }
        let child = try Child(try builtExecutable("earshotd"),
                          ["--config", scratch.path("none.toml"), "--socket", socket, "--model", model,
                           "--log-level", "debug"] + arguments,
                          scratch: scratch, environment: environment, fd3: fd3, tag: "earshotd-" + UUID().uuidString.prefix(4))
        self.init(child: child, socket: socket)
        if waitForHello { _ = try hello() }
    }

    /// Connects (retrying while the daemon starts, up to 20 s) and returns the client and its hello.
    func connect(timeout: Double = 20) throws -> (SocketClient, Hello) {
        let deadline = Date().addingTimeInterval(timeout)
        var lastError = "never tried"
        while Date() < deadline {
            if let status = child.wait(timeout: 0) {
                throw TestFailure("earshotd exited with status \(status) before serving: \(child.stderr)")
            }
            do {
                let client = try SocketClient(path: socket)
                guard let reply = try client.receive(timeout: 10), case .hello(let hello) = reply.message else {
                    throw TestFailure("the first message was not hello")
                }
                return (client, hello)
            } catch let error as ClientError {
                lastError = error.description
                usleep(20_000)
            }
        }
        throw TestFailure("earshotd did not answer on \(socket) within \(timeout) s (\(lastError)); stderr: \(child.stderr)")
    }

    func hello() throws -> Hello { try connect().1 }

    /// One request and its reply (events in between are skipped).
    func request(_ message: ClientMessage, timeout: Double = 20) throws -> ServerMessage {
        let (client, _) = try connect()
        defer { client.close() }
        try client.send(ClientRequest(message, id: .int(1)))
        while let reply = try client.receive(timeout: timeout) {
            if reply.id == .int(1) { return reply.message }
        }
        throw TestFailure("the connection closed before the reply to \(message)")
    }

    func status() throws -> StatusReport {
        guard case .status(let report) = try request(.status) else { throw TestFailure("no status reply") }
        return report
    }

    /// Polls `status` until `predicate` holds (fails after `timeout`).
    @discardableResult
    func waitForStatus(timeout: Double = 20, _ what: String, _ predicate: (StatusReport) -> Bool) throws -> StatusReport {
        let deadline = Date().addingTimeInterval(timeout)
        var last = try status()
        while !predicate(last) {
            guard Date() < deadline else { throw TestFailure("status never showed \(what); last: \(last)") }
            usleep(20_000)
            last = try status()
        }
        return last
    }

    /// SIGTERM and the exit status (nil: still running after `timeout`).
    func terminate(timeout: Double = 30) -> Int32? {
        child.signal(SIGTERM)
        return child.wait(timeout: timeout)
    }
}

// MARK: audio

/// 16-bit values as floats (k / 32768): what a 16-bit device or a s16le client delivers, so the daemon
/// and an in-process reference see exactly the same samples.
func quantized(_ samples: [Float]) -> [Float] {
    samples.map { Float(Int16(clamping: Int(($0 * 32768).rounded()))) / 32768 }
}

func s16Bytes(_ samples: [Float]) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(samples.count * 2)
    for s in samples {
        let v = UInt16(bitPattern: Int16(clamping: Int((s * 32768).rounded())))
        out.append(UInt8(v & 0xFF))
        out.append(UInt8(v >> 8))
    }
    return out
}

/// Writes 16 kHz mono samples as a WAV file.
func writeWAV(_ samples: [Float], to path: String) throws {
    try AudioWriter.write(samples, sampleRate: 16000, to: path)
}

/// Words and silences end to end at 16 kHz, quantised to 16 bits.
func scene(_ parts: [(word: String?, seconds: Double)], model: TinyModel) -> [Float] {
    var samples: [Float] = []
    for part in parts {
        if let w = part.word { samples += model.word(w) } else { samples += [Float](repeating: 0, count: Int(part.seconds * 16000)) }
    }
    return quantized(samples)
}

/// What the daemon must say for `samples`: the finals of a `StreamingSession` over them (then `finish`),
/// and for each, offline recognition of its segment (the exactness contract of docs/endpointing.md).
func referenceFinals(_ samples: [Float], recognizer: Recognizer, config: EndpointConfig = EndpointConfig())
    -> [(text: String, start: Double, end: Double, offline: String)] {
    let session = StreamingSession(recognizer: recognizer, config: config)
    var events = session.accept(samples)
    events += session.finish()
    return events.enumerated().compactMap { i, event in
        guard case .final(_, let transcript, let start, let end, let segment) = event else { return nil }
        // The endpoint event follows its final.
        var reason: EndpointReason?
        if i + 1 < events.count, case .endpoint(_, let r, _) = events[i + 1] { reason = r }
        let offline = recognizer.offlineReference(samples[segment], endedBy: reason).text
        return (transcript.text, start, end, offline)
    }
}

/// Streams `samples` as one session on a new connection (frames of 100 ms, as fast as the socket takes
/// them), then `stop`; returns the finals' texts in order.
func streamSession(_ daemon: Daemon, _ samples: [Float], timeout: Double = 60) throws -> [String] {
    let (client, _) = try daemon.connect()
    defer { client.close() }
    try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
    let bytes = s16Bytes(samples)
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + 3200)
        try client.send(.audio(Array(bytes[offset..<end])))
        offset = end
    }
    try client.send(.stop)
    var texts: [String] = []
    while let reply = try client.receive(timeout: timeout) {
        switch reply.message {
        case .final(_, _, let transcript, _, _): texts.append(transcript.text)
        case .stopped: return texts
        case .error(let code, let message): throw TestFailure("session error \(code): \(message)")
        default: break
        }
    }
    throw TestFailure("the connection closed before stopped")
}

// MARK: ALSA file plugin

/// ALSA's `file` PCM standing in for a microphone: it reads `infile` (raw S16_LE, here 16 kHz mono) as
/// the captured audio; its `null` slave accepts any rate and format. Past the end of the file it
/// delivers silence as fast as it is read (no clock), so daemons in tests bound their capture with
/// `--capture-duration`. While `infile` does not exist the PCM fails to open, and the daemon retries:
/// that is how a test starts the daemon first and the "microphone" later.
struct FilePCM {
    static let name = "earshot_test"
    let configFile: String
    let inputPath: String

    init(scratch: Scratch) throws {
        inputPath = scratch.path("mic.raw")
        configFile = scratch.path("asoundrc")
        try fileBackedPCMConfiguration(name: Self.name, infile: inputPath).write(toFile: configFile, atomically: true, encoding: .utf8)
    }

    /// The daemon flags that capture from this PCM at 16 kHz mono 16-bit for `duration` seconds.
    func arguments(duration: Double) -> [String] {
        ["--device", Self.name, "--alsa-config", configFile, "--capture-rate", "16000", "--capture-channels", "1",
         "--capture-period-ms", "10", "--capture-buffer-ms", "100", "--capture-retry-max", "0.05",
         "--capture-duration", "\(duration)"]
    }

    /// Makes the microphone "appear" with `samples` (atomically: a retrying open sees all or nothing).
    func plugIn(_ samples: [Float]) throws {
        try Data(s16Bytes(samples)).write(to: URL(fileURLWithPath: inputPath), options: .atomic)
    }
}

// MARK: models

/// The shared tiny model saved to a file, its recogniser (OpenBLAS on one thread, as the daemon runs
/// it), and the file path.
struct TinyFixture {
    let tiny: TinyModel
    let recognizer: Recognizer
    let modelPath: String

    init(scratch: Scratch) throws {
        tiny = try TinyModel.shared()
        BLASThreads.set(1)
        modelPath = scratch.path("tiny.safetensors")
        try tiny.trained.save(path: modelPath)
        recognizer = try Recognizer(model: tiny.trained)
    }
}

/// The same weights with the letters of the vocabulary rotated by 13 (a->n, ...): a "different model"
/// whose output is predictable, `rot13(text)`, while speech/silence decisions (blank, space) stay the same.
func rot13Model(_ model: ModelFile) -> ModelFile {
    var copy = model
    copy.description.vocabulary = model.description.vocabulary.map(rot13)
    return copy
}

func rot13(_ text: String) -> String {
    String(text.unicodeScalars.map { c -> Character in
        let a = Unicode.Scalar("a").value
        guard c.value >= a, c.value < a + 26 else { return Character(c) }
        return Character(Unicode.Scalar(a + (c.value - a + 13) % 26)!)
    })
}

// MARK: systemd's notification socket

/// A datagram socket standing in for systemd's $NOTIFY_SOCKET: collects what the daemon sends.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private(set) var messages: [String] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0, var address = UnixAddress(path: path) else { throw TestFailure("cannot make a datagram socket") }
        let rc = address.withSockaddr { bind(fd, $0, $1) }
        guard rc == 0 else { throw TestFailure("bind \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// Waits until a received datagram contains `assignment` (e.g. "READY=1"); returns whether one did.
    func waitFor(_ assignment: String, timeout: Double) -> Bool {
        if messages.contains(where: { $0.split(separator: "\n").contains(Substring(assignment)) }) { return true }
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            messages.append(message)
            if message.split(separator: "\n").contains(Substring(assignment)) { return true }
        }
        return false
    }
}
