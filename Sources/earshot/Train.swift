import ArgumentParser
import Dispatch
import Foundation
import Tensors
import TOMLKit
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an acoustic model from manifests (see docs/training.md).",
        discussion: """
        The configuration is TOML with the sections [data], [model], [optimizer], [augment], [loss] and \
        [run]; every key has a default (docs/training.md lists them and their ranges), and an unknown \
        key or a value out of its range is an error naming the key. A leading ~/ in paths is $HOME. \
        The run folder (run.output) receives checkpoint.safetensors (every \
        run.checkpoint_minutes, and when interrupted with Ctrl-C or SIGTERM), last.safetensors and \
        best.safetensors (best validation WER), and train.log. Running the same command again \
        resumes exactly where the checkpoint left off.
        """)

    @Option(help: "Training configuration (TOML).")
    var config: String

    @Option(help: "Override run.output (the run folder).")
    var output: String?

    @Option(help: "Override optimizer.total_steps.")
    var steps: Int?

    func run() throws {
        var cfg = try Self.load(config)
        if let output { cfg.run.output = output }
        if let steps { cfg.optimizer.totalSteps = steps }
        // Expanded once, so the log below and the trainer's checkpoints land in the same folder.
        cfg.run.output = expandTilde(cfg.run.output)
        // A bad value is reported before the run folder is created, blamed on the flag that gave it.
        if let steps, steps < 1 { throw CLIError("--steps \(steps): must be at least 1") }
        do { try cfg.validate() } catch { throw Self.cliError(error, config: config) }
        // Files the configuration names, before the run folder is made (a resumed run ignores init_from).
        let resuming = FileManager.default.fileExists(atPath: Trainer.checkpointURL(in: URL(fileURLWithPath: cfg.run.output)).path)
        for (key, file) in [("data.train", cfg.data.train), ("data.valid", cfg.data.valid), ("model.init_from", resuming ? "" : cfg.model.initFrom)]
        where !file.isEmpty {
            var isFolder: ObjCBool = false
            guard FileManager.default.isReadableFile(atPath: expandTilde(file)) else {
                throw CLIError("\(config): \(key) '\(file)': no such file, or not readable")
            }
            if FileManager.default.fileExists(atPath: expandTilde(file), isDirectory: &isFolder), isFolder.boolValue {
                throw CLIError("\(config): \(key) '\(file)' is a folder; name the \(key == "model.init_from" ? "model file" : "manifest (a .tsv of audio path and text)")")
            }
        }
        do { try FileManager.default.createDirectory(atPath: cfg.run.output, withIntermediateDirectories: true) } catch {
            throw CLIError("run.output '\(cfg.run.output)': cannot create the run folder: \(reason(of: error))")
        }
        // One run per folder: a second would overwrite the first's checkpoints and interleave its log.
        // The lock file also proves the folder writable before any step is trained. Held until exit.
        let lockPath = URL(fileURLWithPath: cfg.run.output).appendingPathComponent(".lock").path
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0 else {
            throw CLIError("run.output '\(cfg.run.output)': cannot write in the run folder: \(String(cString: strerror(errno)))")
        }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            throw CLIError("run.output '\(cfg.run.output)': another earshot train is using this run folder; wait for it (or stop it with Ctrl-C: it saves a checkpoint), or choose another --output")
        }
        let logURL = URL(fileURLWithPath: cfg.run.output).appendingPathComponent("train.log")
        // Appending: every line lands whole at the end, whoever else writes the file.
        let logFD = open(logURL.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw CLIError("cannot write \(logURL.path): \(String(cString: strerror(errno)))") }
        let logFile = FileHandle(fileDescriptor: logFD, closeOnDealloc: true)
        let terminal = isatty(STDERR_FILENO) == 1
        // A write to a closed pipe fails (and is ignored by `log`) instead of killing the run.
        signal(SIGPIPE, SIG_IGN)
        // Set once from a signal handler, read by the training loop between steps.
        let stop = Locked(false)
        // A full disk under the log, or a closed pipe on stderr (`| tee` stopped by the same Ctrl-C), must
        // not end the run before its checkpoint: such a line is lost, the run goes on. (The deprecated
        // FileHandle.write traps on any error; the broken pipe's SIGPIPE is ignored below.)
        let log: (String) -> Void = { line in
            let stamped = "\(ISO8601DateFormatter().string(from: Date())) \(line)\n"
            try? logFile.write(contentsOf: Data(stamped.utf8))
            Self.say(((terminal ? "\r\u{1B}[K" : "") + line + "\n"))
        }
        log("earshot train --config \(config)")
        let trainer: Trainer
        do { trainer = try Trainer(config: cfg, log: log) } catch { throw Self.cliError(error, config: config) }

        // Ctrl-C, SIGTERM, or SIGHUP (the terminal or ssh session closed): finish the current step, write a
        // checkpoint, exit. A second one aborts. Under nohup SIGHUP stays ignored, as nohup asked.
        let signals = [SIGINT, SIGTERM] + (Self.ignoredAtStart(SIGHUP) ? [] : [SIGHUP])
        let sources = signals.map { (sig: Int32) -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                if stop.withLock({ $0 }) { Self.say("\nearshot train: aborted\n"); Foundation.exit(130) }
                stop.withLock { $0 = true }
                Self.say("\nearshot train: stopping after this step and saving a checkpoint...\n")
            }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }

        let start = Date()
        let firstStep = trainer.step
        do {
            try trainer.run(shouldStop: { stop.withLock { $0 } }) { p in
                guard terminal else { return }
                let done = Double(p.step) / Double(p.totalSteps)
                let width = 24, filled = Int(done * Double(width))
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                let elapsed = Date().timeIntervalSince(start)
                let line = String(format: "[%@] step %d/%d  epoch %d  loss %.3f  %.0fx real time  %@ elapsed, %@ left",
                                  bar, p.step, p.totalSteps, p.epoch, p.loss, p.speed, ProgressReporter.duration(elapsed),
                                  ProgressReporter.duration(p.secondsLeft))
                Self.say("\r\u{1B}[K" + line)
            }
        } catch {
            // The trainer fails only between steps, so what it has trained is consistent: keep it, unless
            // nothing was trained (a fresh run's step-0 checkpoint would put the folder in resume mode, where
            // a fix to [model] or init_from is refused or ignored). The log gets the reason: stderr may be gone.
            log("stopped by an error: \(Self.cliError(error, config: config).description)")
            if trainer.step > firstStep {
                do {
                    try trainer.saveCheckpoint()
                    log("checkpoint at step \(trainer.step) saved; once the cause is fixed, the same command resumes")
                } catch {
                    log("the checkpoint at step \(trainer.step) could not be saved either (\(error)); the last one saved is kept")
                }
            }
            throw Self.cliError(error, config: config)
        }
        if terminal { Self.say("\n") }
        log(stop.withLock({ $0 }) ? "stopped at step \(trainer.step); run the same command to resume" : "finished at step \(trainer.step)")
    }

    /// Whether `sig` was ignored when the process started (as nohup ignores SIGHUP).
    static func ignoredAtStart(_ sig: Int32) -> Bool {
        var action = sigaction()
        guard sigaction(sig, nil, &action) == 0 else { return false }
        return unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    /// Writes to standard error, ignoring failure (a closed pipe or terminal must not stop training).
    static func say(_ text: String) {
        try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
    }

    /// Reads the TOML file into a `TrainConfig`, with snake_case keys and unknown keys rejected by name.
    static func load(_ path: String) throws -> TrainConfig {
        let text: String
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw CLIError("--config \(path) is a folder; name the configuration file (models/*.train.toml are examples)")
        }
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CLIError("cannot read \(path): \(reason(of: error))")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw CLIError("\(path):\(e.source.begin.line): \(e.description)")
        } catch {
            throw CLIError("\(path): \(error)")
        }
        // TOML has nan and inf; no setting takes them, and the JSON the table becomes below cannot
        // hold them (its error names no key).
        if let key = Self.nonFiniteNumber(in: table) {
            throw CLIError("\(path): \(key) is not a finite number")
        }
        let json = table.convert(to: .json)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let cfg: TrainConfig
        do { cfg = try decoder.decode(TrainConfig.self, from: Data(json.utf8)) } catch let error as DecodingError {
            if case .dataCorrupted(let ctx) = error, ctx.codingPath.isEmpty, let key = Self.fractionForInteger(json: json, decoder: decoder) {
                throw CLIError("\(path): \(key) must be an integer")
            }
            throw CLIError("\(path): " + Self.describe(error))
        } catch {
            throw CLIError("\(path): \(error)")
        }
        // Reject keys the configuration does not know (a typo would otherwise be silently ignored).
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let known = try JSONSerialization.jsonObject(with: encoder.encode(cfg)) as? [String: Any] ?? [:]
        let given = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
        for (section, value) in given {
            guard value is [String: Any] else {
                throw CLIError("\(path): '\(section)' is outside any section; keys belong under one of \(known.keys.sorted().map { "[\($0)]" }.joined(separator: ", "))")
            }
            guard let knownSection = known[section] as? [String: Any] else {
                throw CLIError("\(path): unknown section [\(section)] (known: \(known.keys.sorted().joined(separator: ", ")))")
            }
            for key in (value as? [String: Any] ?? [:]).keys where knownSection[key] == nil {
                throw CLIError("\(path): unknown key '\(key)' in [\(section)] (known: \(knownSection.keys.sorted().joined(separator: ", ")))")
            }
        }
        return cfg
    }

    /// The first "section.key = value" (or "section.key[i] = value") holding nan or inf, if any.
    static func nonFiniteNumber(in table: TOMLTable, prefix: String = "") -> String? {
        for key in table.keys.sorted() {
            guard let value = table[key] else { continue }
            let name = prefix.isEmpty ? key : "\(prefix).\(key)"
            if let inner = value.table, let found = nonFiniteNumber(in: inner, prefix: name) { return found }
            if let d = value.double, !d.isFinite { return "\(name) = \(d)" }
            if let items = value.array {
                for (i, item) in items.enumerated() {
                    if let d = item.double, !d.isFinite { return "\(name)[\(i)] = \(d)" }
                }
            }
        }
        return nil
    }

    /// The key ("'section.key' (3.5 given)") whose fractional number broke decoding, if that is what did:
    /// the JSON decoder reports a fraction where an integer belongs without naming the key, so with every
    /// fractional value rounded, each in turn is put back; the first that alone breaks decoding is named.
    static func fractionForInteger(json: String, decoder: JSONDecoder) -> String? {
        guard let given = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return nil }
        var fractions: [(section: String, key: String, value: Double)] = []
        var rounded = given
        for (section, value) in given {
            guard var table = value as? [String: Any] else { continue }
            for (key, item) in table {
                guard let number = item as? Double, number != number.rounded() else { continue }
                fractions.append((section, key, number))
                table[key] = Int(number.rounded())
            }
            rounded[section] = table
        }
        for (section, key, number) in fractions {
            var trial = rounded, table = rounded[section] as? [String: Any] ?? [:]
            table[key] = number
            trial[section] = table
            guard let data = try? JSONSerialization.data(withJSONObject: trial) else { continue }
            do {
                _ = try decoder.decode(TrainConfig.self, from: data)
            } catch DecodingError.dataCorrupted(let ctx) where ctx.codingPath.isEmpty {
                return "'\(section).\(key)' (\(number) given)"  // breaks decoding on its own
            } catch {}
        }
        return nil
    }

    /// A trainer failure on one line; a configuration error is prefixed with the configuration file.
    static func cliError(_ error: any Error, config: String) -> CLIError {
        if case TrainerError.config(let reason) = error { return CLIError("\(config): \(reason)") }
        return CLIError("\(error)")
    }

    /// "'section.key' <reason>", with the key as written in TOML (snake_case), for any decoding failure.
    static func describe(_ error: DecodingError) -> String {
        func key(_ path: [any CodingKey]) -> String {
            var out = ""
            for k in path {
                if let i = k.intValue { out += "[\(i)]"; continue }
                if !out.isEmpty { out += "." }
                out += snakeCase(k.stringValue)
            }
            return "'\(out)'"
        }
        func kind(_ type: Any.Type) -> String {
            switch type {
            case is Int.Type: return "an integer"
            case is UInt64.Type: return "a non-negative integer"
            case is Double.Type, is Float.Type: return "a number"
            case is String.Type: return "a string in quotes"
            case is [Double].Type, is [Any].Type: return "a list of numbers, e.g. [0.9, 1.1]"
            default: return "a \(type)"
            }
        }
        switch error {
        case let .typeMismatch(type, ctx):
            return "\(key(ctx.codingPath)) must be \(kind(type))"
        case let .valueNotFound(type, ctx):
            return "\(key(ctx.codingPath)) has no value; it must be \(kind(type))"
        case let .keyNotFound(missing, ctx):
            return "\(key(ctx.codingPath + [missing])) is missing"
        case let .dataCorrupted(ctx):
            let what = ctx.codingPath.isEmpty ? "a value" : key(ctx.codingPath)
            return "\(what) is out of range or malformed: \(ctx.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    /// `logEverySteps` -> `log_every_steps` (keys arrive as the Swift property names).
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for ch in name {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }
}
