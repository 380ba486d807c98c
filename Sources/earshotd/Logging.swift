import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// swift-log handler writing one line per message to stderr, without a timestamp: under systemd the
/// journal stamps each line itself, and when stderr is the journal ($JOURNAL_STREAM) each line starts
/// with its syslog priority ("<3>") so `journalctl -p err` works. Owns nothing but its settings; each
/// line is one write(2), so lines from different threads do not interleave.
struct StderrLogHandler: LogHandler {
    let label: String
    let journal: Bool
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, level: Logger.Level, journal: Bool) {
        self.label = label
        self.logLevel = level
        self.journal = journal
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level, message = event.message
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        if let error = event.error { all["error"] = "\(error)" }
        var text = journal ? "<\(Self.priority(level))>" : ""
        text += "\(level.rawValue) \(label): \(message)"
        for key in all.keys.sorted() {
            let value = "\(all[key]!)"
            text += value.contains(" ") || value.isEmpty ? " \(key)=\"\(value)\"" : " \(key)=\(value)"
        }
        text += "\n"
        text.utf8CString.withUnsafeBufferPointer { buffer in
            _ = write(STDERR_FILENO, buffer.baseAddress, buffer.count - 1)
        }
    }

    /// syslog priorities (sd-daemon(3)): the journal reads them from the line prefix.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// Installs the handler for the whole process, once.
    static func bootstrap(level: Logger.Level) {
        let journal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level, journal: journal) }
    }
}
