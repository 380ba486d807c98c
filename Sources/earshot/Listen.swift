import ArgumentParser
import Dispatch
import Foundation
import Tensors
import Server
import Training

#if canImport(Glibc)
import Glibc
#endif

/// The daemon socket flag shared by `listen` and `stream`.
struct SocketOptions: ParsableArguments {
    @Option(help: ArgumentHelp("earshotd's Unix socket.",
                               discussion: "Default: $EARSHOT_SOCKET, else \(SocketOptions.defaultPath)."))
    var socket: String?

    static let defaultPath = "/run/earshot/earshotd.sock"

    var path: String {
        if let socket { return socket }
        if let env = ProcessInfo.processInfo.environment["EARSHOT_SOCKET"], !env.isEmpty { return env }
        return Self.defaultPath
    }

    /// Connects and reads the server's `hello`, checking that it speaks this client's protocol.
    func connect() throws -> (SocketClient, Hello) {
        let path = self.path
        do {
            let client = try SocketClient(path: path)
            guard let line = try client.receiveLine(timeout: 10) else {
                throw CLIError("\(path): the server closed the connection before saying hello")
            }
            // The version first: a newer server's hello may lack or change fields this client requires,
            // and "update the older one" is the message that helps then, not a field error.
            if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
               object["type"] as? String == "hello", let version = object["protocol"] as? Int, version != ProtocolInfo.version {
                throw CLIError("\(path): the server speaks protocol \(version), this earshot speaks \(ProtocolInfo.version); update the older one")
            }
            let reply: ServerReply
            do { reply = try MessageCodec.decodeServer(line: line) } catch {
                throw CLIError(ClientError.protocolViolation(path: path, reason: error.description).description)
            }
            guard case .hello(let hello) = reply.message else {
                if case .error(_, let message) = reply.message { throw CLIError("\(path): \(message)") }
                throw CLIError("\(path): expected hello, got \(reply.message.type) - is this an earshotd socket?")
            }
            guard hello.protocolVersion == ProtocolInfo.version else {
                throw CLIError("\(path): the server speaks protocol \(hello.protocolVersion), this earshot speaks \(ProtocolInfo.version); update the older one")
            }
            return (client, hello)
        } catch let error as ClientError {
            throw CLIError(error.description)
        }
    }
}

struct Listen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print live transcripts of earshotd's microphone.",
        discussion: """
        On a terminal the current partial result rewrites one line and each final result is printed on \
        its own line. Piped, only final results are printed, one per line. --json prints every event \
        exactly as the server sends it (one JSON object per line, see docs/protocol.md). \
        Stops on Ctrl-C or when the server closes the connection.

        Examples:
          earshot listen
          earshot listen --json --no-partials | jq -r 'select(.type == "final").text'
        """)

    @OptionGroup var socketOptions: SocketOptions

    @Flag(help: "Print the server's events as JSON lines.")
    var json = false

    @Flag(name: .customLong("no-partials"), help: "Ask for final results only.")
    var noPartials = false

    func run() throws {
        let (client, _) = try socketOptions.connect()
        let path = socketOptions.path
        let terminal = isatty(STDOUT_FILENO) == 1 && !json
        let partialShown = Locked(false)

        // Ctrl-C: end the rewritten line so the shell prompt starts clean, then leave.
        signal(SIGINT, SIG_IGN)
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        interrupt.setEventHandler {
            if partialShown.withLock({ $0 }) { writeOut("\n") }
            Glibc.exit(0)
        }
        interrupt.resume()

        do {
            try client.send(.subscribe(partials: !noPartials && (json || terminal)))
            // A daemon without a microphone accepts the subscription and never sends anything: ask.
            try client.send(.status)
            // A daemon that stops says so (shutting_down) before it closes; one that crashed or was killed
            // just goes away, and that must not look like a clean end.
            var toldWhy = false
            while let line = try client.receiveLine() {
                let reply: ServerReply
                do {
                    reply = try MessageCodec.decodeServer(line: line)
                } catch {
                    writeErr("\(path) sent an unreadable message (\(error)); ignored")
                    continue
                }
                if case .status(let report) = reply.message {
                    guard let capture = report.capture else {
                        throw CLIError("\(path): earshotd is not capturing (started with --no-capture, or capture.enabled = false), so there is no microphone to listen to; `earshot stream FILE` sends it audio instead")
                    }
                    // Listening to a microphone that delivers nothing would print nothing, for ever,
                    // with no hint why: say so (and go on: a retrying device may come back).
                    if capture.state != "running" && capture.state != "starting" {
                        let device = capture.device.map { " '\($0)'" } ?? ""
                        let reason = capture.lastError.map { ": \($0)" } ?? ""
                        let next = capture.state == "stopped" ? "it has stopped capturing (capture.duration, or the device ended), so nothing will come until earshotd restarts" : "transcripts come once the device opens"
                        writeErr("\(path): the microphone\(device) is \(capture.state)\(reason); \(next) (earshot status shows it)")
                    }
                    continue
                }
                if case .error(let code, _) = reply.message, code.closesConnection { toldWhy = true }
                if json {
                    writeOut(String(decoding: line, as: UTF8.self) + "\n")
                    if let failure = standardOutputFailure.current {
                        throw CLIError("cannot write to standard output: \(failure); stopped listening")
                    }
                    if case .error(let code, let message) = reply.message, code.closesConnection {
                        writeErr("\(path): \(message)")
                        // As without --json: a forced disconnect is a failure, the daemon leaving is not.
                        if code != .shuttingDown { throw ExitCode(1) }
                    }
                    continue
                }
                switch reply.message {
                case .partial(_, _, let text, _) where terminal:
                    writeOut("\r\u{1B}[K" + Self.fit(text))
                    partialShown.withLock { $0 = true }
                case .final(_, _, let transcript, _, _):
                    guard !transcript.text.isEmpty || terminal else { continue }
                    writeOut((terminal ? "\r\u{1B}[K" : "") + transcript.text + (transcript.text.isEmpty ? "" : "\n"))
                    partialShown.withLock { $0 = false }
                case .error(let code, let message):
                    if partialShown.withLock({ $0 }) { writeOut("\n"); partialShown.withLock { $0 = false } }
                    writeErr("\(path): \(message)")
                    if code.closesConnection && code != .shuttingDown { throw ExitCode(1) }
                default:
                    break
                }
                // A listener whose output is gone (a full disk under `listen >> log`) would lose every
                // transcript from here on without a word: stop now and say so.
                if let failure = standardOutputFailure.current {
                    throw CLIError("cannot write to standard output: \(failure); stopped listening")
                }
            }
            if !toldWhy {
                if partialShown.withLock({ $0 }) { writeOut("\n"); partialShown.withLock { $0 = false } }
                throw CLIError("\(path) closed the connection without saying why: earshotd crashed or was killed? (journalctl -u earshotd)")
            }
        } catch let error as ClientError {
            throw CLIError(error.description)
        }
        if partialShown.withLock({ $0 }) { writeOut("\n") }
    }

    /// The end of `text` that fits the terminal's width, so a long partial rewrites one line instead of
    /// scrolling (the newest words are the interesting ones).
    static func fit(_ text: String) -> String {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 4 else { return text }
        let width = Int(size.ws_col) - 1
        guard text.count > width else { return text }
        return "…" + text.suffix(width - 1)
    }
}
