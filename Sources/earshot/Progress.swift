import Foundation
import Tensors
import Training

/// Progress of a long job on stderr: a bar rewritten in place on a terminal, plain lines when
/// stderr is piped or redirected (so logs stay readable).
struct ProgressReporter: Sendable {
    private struct State {
        var done = 0
        var lastDraw = Date.distantPast
        var lastLineLength = 0
    }
    private let total: Int
    private let label: String
    private let isTerminal: Bool
    private let start = Date()
    // Batch workers report from several threads; drawing happens under the lock so lines never interleave.
    private let state = Locked(State())

    init(total: Int, label: String, forceTerminal: Bool? = nil) {
        self.total = total
        self.label = label
        self.isTerminal = forceTerminal ?? (isatty(STDERR_FILENO) == 1)
    }

    /// Marks one item finished; `message` names it (a file, an epoch) for the plain-line form.
    func advance(_ message: String, by n: Int = 1) {
        state.withLock { s in
            s.done += n
            if isTerminal {
                let now = Date()
                guard now.timeIntervalSince(s.lastDraw) > 0.1 || s.done == total else { return }
                s.lastDraw = now
                draw(&s, note: message)
            } else {
                writeErrRaw("[\(s.done)/\(total)] \(message)\n")
            }
        }
    }

    /// Prints a line above the bar without garbling it.
    func log(_ line: String) {
        above { writeErrRaw(line + "\n") }
    }

    /// Runs `write` (output to stdout or stderr) with the bar taken off its line first and drawn again
    /// after: on a terminal showing both streams, output would otherwise start after the bar's text.
    func above(_ write: () -> Void) {
        state.withLock { s in
            let drawn = isTerminal && s.lastLineLength > 0
            if drawn { clear(s) }
            write()
            if drawn && s.done < total { draw(&s, note: "") }
        }
    }

    func finish() {
        state.withLock { s in
            if isTerminal { clear(s) }
        }
    }

    private func clear(_ s: State) {
        writeErrRaw("\r" + String(repeating: " ", count: s.lastLineLength) + "\r")
    }

    private func draw(_ s: inout State, note: String) {
        let width = 30
        let fraction = total > 0 ? Double(s.done) / Double(total) : 1
        let filled = Int(fraction * Double(width))
        let elapsed = Date().timeIntervalSince(start)
        let eta = s.done > 0 ? elapsed / Double(s.done) * Double(total - s.done) : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var line = "\(label) [\(bar)] \(s.done)/\(total) \(Self.duration(elapsed)) elapsed, ~\(Self.duration(eta)) left"
        if !note.isEmpty { line += "  " + String(note.suffix(30)) }
        let pad = max(0, s.lastLineLength - line.count)
        s.lastLineLength = line.count
        writeErrRaw("\r" + line + String(repeating: " ", count: pad))
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t / 60 % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
