import Foundation

/// Progress of a long job on stderr: a bar rewritten in place on a terminal, plain lines when
/// stderr is piped or redirected (so logs stay readable).
final class ProgressReporter: @unchecked Sendable {
    // Mutable state behind `lock`: batch workers report from several threads.
    private let lock = NSLock()
    private let total: Int
    private let label: String
    private let isTerminal: Bool
    private let start = Date()
    private var done = 0
    private var lastDraw = Date.distantPast
    private var lastLineLength = 0

    init(total: Int, label: String, forceTerminal: Bool? = nil) {
        self.total = total
        self.label = label
        self.isTerminal = forceTerminal ?? (isatty(STDERR_FILENO) == 1)
    }

    /// Marks one item finished; `message` names it (a file, an epoch) for the plain-line form.
    func advance(_ message: String, by n: Int = 1) {
        lock.lock(); defer { lock.unlock() }
        done += n
        if isTerminal {
            let now = Date()
            guard now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
            lastDraw = now
            draw(note: message)
        } else {
            FileHandle.standardError.write(Data("[\(done)/\(total)] \(message)\n".utf8))
        }
    }

    /// Prints a line above the bar without garbling it.
    func log(_ line: String) {
        lock.lock(); defer { lock.unlock() }
        if isTerminal { clear() }
        FileHandle.standardError.write(Data((line + "\n").utf8))
        if isTerminal && done < total { draw(note: "") }
    }

    func finish() {
        lock.lock(); defer { lock.unlock() }
        if isTerminal { clear() }
    }

    private func clear() {
        FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: lastLineLength) + "\r").utf8))
    }

    private func draw(note: String) {
        let width = 30
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let filled = Int(fraction * Double(width))
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var line = "\(label) [\(bar)] \(done)/\(total) \(Self.duration(elapsed)) elapsed, ~\(Self.duration(eta)) left"
        if !note.isEmpty { line += "  " + String(note.suffix(30)) }
        let pad = max(0, lastLineLength - line.count)
        lastLineLength = line.count
        FileHandle.standardError.write(Data(("\r" + line + String(repeating: " ", count: pad)).utf8))
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t / 60 % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
