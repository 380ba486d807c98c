import ArgumentParser
import Foundation
import Server

// `earshot reload` and `earshot status`: one request to a running earshotd and its answer, for scripts
// and units (systemd/earshot-adapt.service reloads the daemon after adapting) and for people.

/// Sends one request on a fresh connection and returns the reply carrying its id; events and other
/// messages on the way are skipped. A closing error (the daemon shutting down) is returned as the reply.
func requestReply(_ socketOptions: SocketOptions, _ message: ClientMessage, timeout: Double) throws -> (ServerReply, [UInt8]) {
    let (client, _) = try socketOptions.connect()
    defer { client.close() }
    let path = socketOptions.path
    let id = RequestID.string("cli")
    do {
        try client.send(ClientRequest(message, id: id))
        while let line = try client.receiveLine(timeout: timeout) {
            let reply: ServerReply
            do {
                reply = try MessageCodec.decodeServer(line: line)
            } catch {
                throw CLIError("\(path) sent an unreadable message: \(error)")
            }
            if reply.id == id { return (reply, line) }
            if case .error(let code, _) = reply.message, code.closesConnection { return (reply, line) }
        }
    } catch let error as ClientError {
        if case .timedOut = error {
            throw CLIError("\(path): no answer to \(message.requestName) within \(formatSeconds(timeout)) s (--timeout)")
        }
        throw CLIError(error.description)
    }
    throw CLIError("\(path): the server closed the connection before answering \(message.requestName)")
}

extension ClientMessage {
    /// The request's `type`, for messages.
    var requestName: String {
        switch self {
        case .reload: return "reload"
        case .status: return "status"
        case .ping: return "ping"
        default: return "the request"
        }
    }
}

/// 300 as "300", 2.5 as "2.5".
private func formatSeconds(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e9 ? String(Int(x)) : String(x) }

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask earshotd to load its model again, or another model file.",
        discussion: """
        Without --model the daemon reads its configured `model` again (as SIGHUP does); with it, the named \
        file (a path the daemon can read; it does not become the configured model). The new model is \
        checked before it serves (structure, shapes, finiteness, a test recognition); sessions and the \
        microphone switch to it at their next utterance boundary, and nothing is dropped. If the model \
        fails, the old one stays in service: the daemon's reason is printed and the exit status is 1.

        Prints one line: the model now in service (name, path, sha256). --json prints the daemon's \
        `reloaded` or `error` message as it came (docs/protocol.md).

        Examples:
          earshot reload
          earshot reload --socket /run/earshot/earshotd.sock \\
            --model /var/lib/earshot/models/adapted.safetensors
        """)

    @OptionGroup var socketOptions: SocketOptions

    @Option(help: ArgumentHelp("Model file for the daemon to load instead of its configured one.", valueName: "path"))
    var model: String?

    @Flag(help: "Print the daemon's reply as a JSON line.")
    var json = false

    @Option(help: ArgumentHelp("Seconds to wait for the daemon to load and check the model.", valueName: "s"))
    var timeout: Double = 300

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let model, model.isEmpty { throw ValidationError("--model is empty") }
    }

    func run() throws {
        // The daemon resolves the path in its own working directory: send an absolute one.
        let modelPath = model.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let (reply, line) = try requestReply(socketOptions, .reload(modelPath: modelPath), timeout: timeout)
        if json { writeOut(String(decoding: line, as: UTF8.self) + "\n") }
        switch reply.message {
        case .reloaded(let summary):
            if !json { writeOut("reloaded \(describe(summary))\n") }
        case .error(let code, let message):
            throw CLIError("\(socketOptions.path): \(code == .reloadFailed ? "reload failed, the previous model stays in service: " : "")\(message)")
        default:
            throw CLIError("\(socketOptions.path): expected reloaded, got \(reply.message.type)")
        }
    }
}

/// "name (path, 1.94 M parameters, sha256 9c1e...)".
func describe(_ model: ModelSummary) -> String {
    var details: [String] = []
    if let path = model.path { details.append(path) }
    if let parameters = model.parameters { details.append(String(format: "%.2f M parameters", Double(parameters) / 1e6)) }
    details.append("\(model.sampleRate) Hz")
    if let sha = model.sha256 { details.append("sha256 \(sha)") }
    return "\(model.name) (\(details.joined(separator: ", ")))"
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what earshotd is doing: model, clients, sessions, speed, capture.",
        discussion: """
        Asks a running earshotd for its `status` and prints it for people; --json prints the daemon's \
        message as it came (one JSON object, fields in docs/protocol.md). Exit status 1 if the daemon \
        cannot be reached.

        Examples:
          earshot status
          earshot status --json | jq .real_time_factor
        """)

    @OptionGroup var socketOptions: SocketOptions

    @Flag(help: "Print the daemon's status message as a JSON line.")
    var json = false

    @Option(help: ArgumentHelp("Seconds to wait for the answer.", valueName: "s"))
    var timeout: Double = 10

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        let (reply, line) = try requestReply(socketOptions, .status, timeout: timeout)
        guard case .status(let report) = reply.message else {
            if case .error(_, let message) = reply.message { throw CLIError("\(socketOptions.path): \(message)") }
            throw CLIError("\(socketOptions.path): expected status, got \(reply.message.type)")
        }
        if json {
            writeOut(String(decoding: line, as: UTF8.self) + "\n")
        } else {
            writeOut(Self.text(report, socket: socketOptions.path))
        }
    }

    /// The report as aligned "label  value" lines.
    static func text(_ s: StatusReport, socket: String) -> String {
        var rows: [(String, String)] = [
            ("socket", socket),
            ("model", describe(s.model)),
            ("uptime", duration(s.uptime)),
            ("clients", "\(s.clients) connected, \(s.subscribers) subscribed to the microphone"),
            ("sessions", "\(s.sessions) running, \(s.sessionsTotal) since start"),
            ("audio", String(format: "%.1f s recognised, real-time factor %.3f", s.audioSeconds, s.realTimeFactor)
                + (s.realTimeFactor >= 1 ? " (slower than real time)" : "")),
            ("slow clients", "\(s.droppedEvents) partials dropped, \(s.slowClientsDisconnected) disconnected"),
        ]
        if let c = s.capture {
            var capture = c.state + (c.device.map { " on \($0)" } ?? "")
            capture += ": \(c.overruns) overruns, \(c.droppedSamples) samples dropped, \(c.suspends) suspends, \(c.reopenCount) reopenings"
            rows.append(("capture", capture))
            if let error = c.lastError { rows.append(("last error", error)) }
        } else {
            rows.append(("capture", "none (sessions only)"))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 + "\n" }.joined()
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return String(format: "%.1f s", seconds) }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        if s < 86400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86400) d \(s % 86400 / 3600) h"
    }
}
