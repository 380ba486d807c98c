import Audio
import Foundation
import Logging
import Model
import Recognizer
import TOMLKit

/// Everything earshotd can be told, with its defaults. Read from TOML (`load(file:)`), then overridden by
/// command-line flags (`EarshotD.resolvedConfiguration()`), then checked (`validate()`). `toml()` writes
/// every key with its value (`--help` shows the defaults that way).
struct DaemonConfiguration: Equatable {
    static let defaultFile = "/etc/earshot/earshotd.toml"

    var socket = "/run/earshot/earshotd.sock"
    /// Permissions given to a socket file the daemon binds (octal in the file and on the command line).
    var socketMode: UInt32 = 0o660
    var socketGroup: String?
    /// Clients served at once (ServerConfiguration.maxClients).
    var maxClients = 64
    var model = "/usr/share/earshot/models/earshot-base-en.safetensors"
    /// Served at start-up when `model` is missing or unusable (e.g. an adapted model not written yet).
    var fallbackModel: String?
    var logLevel: Logger.Level = .info

    var capture = Capture()
    var endpoint = EndpointConfig()
    var decoding = DecodingSettings()
    /// `decoding.general_lm`: with no `decoding.lm`, decode with the general English LM when one is
    /// installed (found as `earshot transcribe` finds it), unless the model has its own domain decoding.
    var generalLanguageModel = true

    /// The microphone: which ALSA PCM, how it is opened, how far recognition may fall behind it.
    struct Capture: Equatable {
        var enabled = true
        var device = "default"
        var alsaConfig: String?
        var sampleRate = 16000
        var channels = 1
        var periodMilliseconds = 20
        var bufferMilliseconds = 500
        var ringSeconds = 30.0
        var retryMaxSeconds = 10.0
        /// Stop capturing after this many seconds of audio (0: never). For fixed recordings and tests.
        var duration = 0.0
    }

    /// The capture loop's configuration, delivering audio at `outputRate` (the model's rate).
    func captureConfiguration(outputRate: Int) -> CaptureConfiguration {
        let retryMax = Duration.milliseconds(Int64((capture.retryMaxSeconds * 1000).rounded()))
        return CaptureConfiguration(
            device: capture.device, alsaConfigFile: capture.alsaConfig, sampleRate: capture.sampleRate,
            channels: capture.channels, periodSize: .microseconds(capture.periodMilliseconds * 1000),
            bufferSize: .microseconds(capture.bufferMilliseconds * 1000), outputRate: outputRate,
            ringCapacity: max(1, Int(capture.ringSeconds * Double(outputRate))),
            retry: CaptureRetryPolicy(initialDelay: min(.milliseconds(250), retryMax), maxDelay: retryMax),
            stopAfter: capture.duration > 0 ? .milliseconds(Int64((capture.duration * 1000).rounded())) : nil)
    }

    /// Refuses values that cannot work, naming the key.
    func validate() throws(ConfigError) {
        func bad(_ key: String, _ reason: String) -> ConfigError { .invalid(key: key, reason: reason) }
        if socket.isEmpty { throw bad("socket", "is empty") }
        if socket.utf8.count > 107 { throw bad("socket", "is longer than a Unix socket path may be (107 bytes)") }
        if socketMode > 0o777 { throw bad("socket_mode", "must be an octal permission like 0660") }
        if !(1...10_000).contains(maxClients) { throw bad("max_clients", "must be 1 to 10000") }
        if model.isEmpty { throw bad("model", "is empty") }
        if capture.device.isEmpty { throw bad("capture.device", "is empty") }
        if !(1000...384_000).contains(capture.sampleRate) { throw bad("capture.sample_rate", "must be 1000 to 384000 Hz") }
        if !(1...32).contains(capture.channels) { throw bad("capture.channels", "must be 1 to 32") }
        if !(1...10_000).contains(capture.periodMilliseconds) { throw bad("capture.period_ms", "must be 1 to 10000") }
        if capture.bufferMilliseconds < capture.periodMilliseconds {
            throw bad("capture.buffer_ms", "must be at least capture.period_ms")
        }
        if capture.bufferMilliseconds > 60_000 { throw bad("capture.buffer_ms", "must be at most 60000 (a minute)") }
        // Upper bounds too: these become sample counts and milliseconds in integers, where infinity or
        // 1e20 would trap at start-up instead of being refused here by name.
        if !(1...3600).contains(capture.ringSeconds) { throw bad("capture.ring_seconds", "must be 1 to 3600 seconds") }
        // Both become whole milliseconds: under half of one would round to nothing.
        if !(capture.retryMaxSeconds >= 0.001 && capture.retryMaxSeconds <= 86_400) {
            throw bad("capture.retry_max_seconds", "must be 0.001 (a millisecond) to 86400 (a day)")
        }
        if !(0...31_536_000).contains(capture.duration) || (capture.duration > 0 && capture.duration < 0.001) {
            throw bad("capture.duration", "must be 0 (never stop) or 0.001 to 31536000 (a year) seconds")
        }
        do { try endpoint.validate() } catch {
            switch error {
            case .invalidField(let name, let value, let reason):
                // EndpointConfig's field names are camelCase; the file and flags spell them snake_case.
                let key = name.reduce(into: "") { $0 += $1.isUppercase ? "_" + $1.lowercased() : String($1) }
                throw .invalid(key: "endpoint.\(key)", reason: "= \(value) \(reason)")
            }
        }
        if decoding.beam < 1 { throw bad("decoding.beam", "must be at least 1") }
        if decoding.closedVocabulary == true, decoding.languageModel == nil, !decoding.useModelDecoding {
            throw bad("decoding.closed_vocabulary", "= true needs a word list, and decoding.model_lm = false turns off both the model's domain LM and the general LM: set decoding.lm, or leave model_lm on")
        }
        for spec in decoding.hotwords {
            do { _ = try DecodingSettings.parseHotword(spec) } catch { throw bad("decoding.hotwords", error.description) }
        }
    }

    // MARK: reading TOML

    /// Reads `file` over the defaults. A missing file is an error, except the default file, which means
    /// "all defaults" (`explicit` false).
    static func load(file: String, explicit: Bool) throws(ConfigError) -> DaemonConfiguration {
        var config = DaemonConfiguration()
        guard FileManager.default.fileExists(atPath: file) else {
            if explicit { throw .unreadable(file: file, reason: "no such file") }
            return config
        }
        // Read to the end rather than by size, so `--config /dev/null` (no settings) works too.
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(file: file, reason: String(cString: strerror(errno))) }
        let data: Data
        do { data = try FileHandle(fileDescriptor: fd, closeOnDealloc: true).readToEnd() ?? Data() } catch {
            throw .unreadable(file: file, reason: (error as NSError).localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else { throw .unreadable(file: file, reason: "not UTF-8 text") }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw .syntax(file: file, line: error.source.begin.line, reason: error.description)
        } catch {
            throw .syntax(file: file, line: 0, reason: "\(error)")
        }
        var reader = TableReader(file: file, table: table, section: nil)
        try reader.read(into: &config)
        return config
    }

    /// The configuration as a TOML file (`--print-config`), every key written out.
    func toml() -> String {
        // A JSON string literal is also a TOML basic string (the same escapes, \uXXXX included).
        func q(_ s: String) -> String { JSONValue.quoted(s) }
        func d(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(format: "%.1f", x) : "\(x)" }
        var lines = [
            "socket = \(q(socket))",
            "socket_mode = \(q("0" + String(socketMode, radix: 8)))",
        ]
        if let socketGroup { lines.append("socket_group = \(q(socketGroup))") }
        lines += [
            "max_clients = \(maxClients)",
            "model = \(q(model))",
        ]
        if let fallbackModel { lines.append("fallback_model = \(q(fallbackModel))") }
        lines += [
            "log_level = \(q(logLevel.rawValue))",
            "",
            "[capture]",
            "enabled = \(capture.enabled)",
            "device = \(q(capture.device))",
        ]
        if let alsa = capture.alsaConfig { lines.append("alsa_config = \(q(alsa))") }
        lines += [
            "sample_rate = \(capture.sampleRate)",
            "channels = \(capture.channels)",
            "period_ms = \(capture.periodMilliseconds)",
            "buffer_ms = \(capture.bufferMilliseconds)",
            "ring_seconds = \(d(capture.ringSeconds))",
            "retry_max_seconds = \(d(capture.retryMaxSeconds))",
            "duration = \(d(capture.duration))",
            "",
            "[endpoint]",
            "trailing_silence = \(d(endpoint.trailingSilence))",
            "max_utterance = \(d(endpoint.maxUtterance))",
            "min_speech = \(d(endpoint.minSpeech))",
            "partial_interval = \(d(endpoint.partialInterval))",
            "speech_threshold = \(d(endpoint.speechThreshold))",
            "silence_level = \(d(endpoint.silenceLevel))",
            "max_leading_silence = \(d(endpoint.maxLeadingSilence))",
            "auto_level = \(endpoint.autoLevel)",
            "",
            "[decoding]",
            "beam = \(decoding.beam)",
        ]
        if let lm = decoding.languageModel { lines.append("lm = \(q(lm))") }
        // Unset weights are the model's domain decoding's, else the defaults; writing a default out would
        // override the model's.
        if let w = decoding.lmWeight { lines.append("lm_weight = \(d(w))") }
        if let b = decoding.wordBonus { lines.append("word_bonus = \(d(b))") }
        if let c = decoding.closedVocabulary { lines.append("closed_vocabulary = \(c)") }
        lines += [
            "general_lm = \(generalLanguageModel)",
            "model_lm = \(decoding.useModelDecoding)",
            "hotwords = [\(decoding.hotwords.map(q).joined(separator: ", "))]",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Why the configuration cannot be used: the file, the key and the reason.
enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case syntax(file: String, line: Int, reason: String)
    case unknownKey(file: String, key: String, known: [String])
    case wrongType(file: String, key: String, expected: String)
    case invalid(key: String, reason: String)

    var description: String {
        switch self {
        case .unreadable(let file, let reason):
            return "cannot read the configuration file \(file): \(reason)"
        case .syntax(let file, let line, let reason):
            return "\(file):\(line): \(reason)"
        case .unknownKey(let file, let key, let known):
            return "\(file): unknown key '\(key)' (known here: \(known.joined(separator: ", ")))"
        case .wrongType(let file, let key, let expected):
            return "\(file): '\(key)' should be \(expected)"
        case .invalid(let key, let reason):
            return "configuration: \(key) \(reason)"
        }
    }
}

/// Reads one TOML table key by key, remembering which keys were used so that anything left over is
/// reported as unknown (a typo would otherwise be silently ignored).
private struct TableReader {
    let file: String
    let table: TOMLTable
    let section: String?
    var used: Set<String> = []

    init(file: String, table: TOMLTable, section: String?) {
        self.file = file
        self.table = table
        self.section = section
    }

    func name(_ key: String) -> String { section.map { "\($0).\(key)" } ?? key }

    mutating func value(_ key: String) -> (any TOMLValueConvertible)? {
        used.insert(key)
        return table[key]
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.string else { throw .wrongType(file: file, key: name(key), expected: "a string") }
        return s
    }

    mutating func int(_ key: String) throws(ConfigError) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.int else { throw .wrongType(file: file, key: name(key), expected: "an integer") }
        return i
    }

    mutating func double(_ key: String) throws(ConfigError) -> Double? {
        guard let v = value(key) else { return nil }
        if let d = v.double { return d }
        if let i = v.int { return Double(i) }
        throw .wrongType(file: file, key: name(key), expected: "a number")
    }

    mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.bool else { throw .wrongType(file: file, key: name(key), expected: "true or false") }
        return b
    }

    mutating func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let v = value(key) else { return nil }
        guard let array = v.array else { throw .wrongType(file: file, key: name(key), expected: "an array of strings") }
        var out: [String] = []
        for element in array {
            guard let s = element.string else { throw .wrongType(file: file, key: name(key), expected: "an array of strings") }
            out.append(s)
        }
        return out
    }

    mutating func table(_ key: String) throws(ConfigError) -> TableReader? {
        guard let v = value(key) else { return nil }
        guard let t = v.table else { throw .wrongType(file: file, key: name(key), expected: "a table ([\(key)])") }
        return TableReader(file: file, table: t, section: name(key))
    }

    /// Fails on the first key of this table that was not read.
    func finish() throws(ConfigError) {
        let known = used.sorted()
        for key in table.keys.sorted() where !used.contains(key) {
            throw .unknownKey(file: file, key: name(key), known: known.map(name))
        }
    }

    mutating func read(into c: inout DaemonConfiguration) throws(ConfigError) {
        if let v = try string("socket") { c.socket = v }
        if let v = value("socket_mode") {
            // TOML has octal integers (0o660); a quoted "0660" reads as octal too, as chmod would.
            if let i = v.int {
                // Out of range (negative, huge) stays out of range, for `validate` to refuse by name.
                c.socketMode = i < 0 || i > 0o7777 ? 0o10000 : UInt32(i)
            } else if let s = v.string, let m = parseMode(s) {
                c.socketMode = m
            } else {
                throw .wrongType(file: file, key: "socket_mode", expected: "an octal mode like \"0660\" or 0o660")
            }
        }
        if let v = try string("socket_group") { c.socketGroup = v.isEmpty ? nil : v }
        if let v = try int("max_clients") { c.maxClients = v }
        if let v = try string("model") { c.model = v }
        if let v = try string("fallback_model") { c.fallbackModel = v.isEmpty ? nil : v }
        if let v = try string("log_level") {
            guard let level = Logger.Level(rawValue: v.lowercased()) else {
                throw .invalid(key: "log_level", reason: "'\(v)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            c.logLevel = level
        }
        if var t = try table("capture") {
            if let v = try t.bool("enabled") { c.capture.enabled = v }
            if let v = try t.string("device") { c.capture.device = v }
            if let v = try t.string("alsa_config") { c.capture.alsaConfig = v.isEmpty ? nil : v }
            if let v = try t.int("sample_rate") { c.capture.sampleRate = v }
            if let v = try t.int("channels") { c.capture.channels = v }
            if let v = try t.int("period_ms") { c.capture.periodMilliseconds = v }
            if let v = try t.int("buffer_ms") { c.capture.bufferMilliseconds = v }
            if let v = try t.double("ring_seconds") { c.capture.ringSeconds = v }
            if let v = try t.double("retry_max_seconds") { c.capture.retryMaxSeconds = v }
            if let v = try t.double("duration") { c.capture.duration = v }
            try t.finish()
        }
        if var t = try table("endpoint") {
            if let v = try t.double("trailing_silence") { c.endpoint.trailingSilence = v }
            if let v = try t.double("max_utterance") { c.endpoint.maxUtterance = v }
            if let v = try t.double("min_speech") { c.endpoint.minSpeech = v }
            if let v = try t.double("partial_interval") { c.endpoint.partialInterval = v }
            if let v = try t.double("speech_threshold") { c.endpoint.speechThreshold = v }
            if let v = try t.double("silence_level") { c.endpoint.silenceLevel = v }
            if let v = try t.double("max_leading_silence") { c.endpoint.maxLeadingSilence = v }
            if let v = try t.bool("auto_level") { c.endpoint.autoLevel = v }
            try t.finish()
        }
        if var t = try table("decoding") {
            if let v = try t.int("beam") { c.decoding.beam = v }
            if let v = try t.string("lm") { c.decoding.languageModel = v.isEmpty ? nil : v }
            if let v = try t.double("lm_weight") { c.decoding.lmWeight = v }
            if let v = try t.double("word_bonus") { c.decoding.wordBonus = v }
            if let v = try t.strings("hotwords") { c.decoding.hotwords = v }
            if let v = try t.bool("model_lm") { c.decoding.useModelDecoding = v }
            if let v = try t.bool("general_lm") { c.generalLanguageModel = v }
            if let v = try t.bool("closed_vocabulary") { c.decoding.closedVocabulary = v }
            try t.finish()
        }
        try finish()
    }
}

/// "0660", "660" or "0o660" as a permission mode.
func parseMode(_ text: String) -> UInt32? {
    var digits = Substring(text)
    if digits.hasPrefix("0o") { digits = digits.dropFirst(2) }
    guard !digits.isEmpty, let mode = UInt32(digits, radix: 8), mode <= 0o777 else { return nil }
    return mode
}
