import Audio
import Dispatch
import Foundation
import Logging
import Model
import Recognizer
import Server
import Tensors

#if canImport(Glibc)
import Glibc
#endif

/// Why the daemon could not start or reload; each names the file or setting and what to do.
enum DaemonError: Error, CustomStringConvertible {
    case config(ConfigError)
    case model(path: String, reason: String)
    /// The file's own error, which names it first.
    case unusableModel(ModelError)
    case decoding(String)
    case sampleRate(path: String, model: Int, microphone: Int)
    case capture(CaptureError)
    case server(ServerError)

    var description: String {
        switch self {
        case .config(let e): return e.description
        case .model(let path, let reason): return "cannot use the model \(path): \(reason)"
        case .unusableModel(let e): return "cannot use the model \(e.description)"
        case .decoding(let reason): return "decoding settings: \(reason)"
        case .sampleRate(let path, let model, let microphone):
            return "cannot use the model \(path): it takes \(model) Hz audio but the microphone runs at \(microphone) Hz (restart earshotd to change the rate)"
        case .capture(let e): return e.description
        case .server(let e): return e.description
        }
    }
}

/// The running daemon: owns the configuration, the socket server, the microphone pipeline, the current
/// model and the systemd notifier; runs start-up, reloads, the watchdog and shutdown.
final class Daemon: @unchecked Sendable {
    // `server`, `microphone` and `timers` are set in `start` before any other thread can see them; the
    // engine is behind `current`'s lock and reloads behind `reloadLock`; hence @unchecked.
    let config: DaemonConfiguration
    /// The decoding options without a model, made when a model first needs them (see `BaseDecoding`).
    let base: BaseDecoding
    let logger = Logger(label: "earshot.daemon")
    let modelLogger = Logger(label: "earshot.recognizer")
    let captureLogger = Logger(label: "earshot.capture")
    let notifier = SystemdNotifier()
    /// Set when shutdown begins: a reload finishing after it sends no READY=1.
    private let stopping = Locked(false)
    private let reloadLock = NSLock()
    private let current: Locked<RecognizerEngine>
    private(set) var server: EarshotServer!
    private(set) var microphone: Microphone?
    private var timers: [DispatchSourceTimer] = []
    private let timerQueue = DispatchQueue(label: "earshot.daemon.timers")

    init(config: DaemonConfiguration) throws(DaemonError) {
        self.config = config
        base = BaseDecoding(config: config, generalLM: GeneralLanguageModel.locate(), logger: logger)
        // One core per stream: BLAS threads would only contend with the other sessions.
        BLASThreads.set(1)
        let engine = try Self.loadStartupEngine(config: config, base: base, logger: modelLogger)
        current = Locked(engine)
        modelLogger.info("model loaded", metadata: ["path": "\(engine.modelPath ?? "?")", "parameters": "\(engine.recognizer.model.parameterCount)"])
    }

    /// The configured model, or, when it is missing or unusable and `fallback_model` is set, the
    /// fallback (logged as a warning). This lets `model` name an adapted model that the adaptation job
    /// has not written yet: the daemon starts on the shipped base model and a later reload (SIGHUP or
    /// `reload`, both of which read `model`) picks the adapted one up. Decoding settings that cannot be
    /// used fail at once: no fallback model would fix them.
    static func loadStartupEngine(config: DaemonConfiguration, base: BaseDecoding,
                                  logger: Logger) throws(DaemonError) -> RecognizerEngine {
        do {
            return try loadEngine(path: config.model, settings: config.decoding, base: base, endpoint: config.endpoint)
        } catch {
            if case .decoding = error { throw error }
            guard let fallback = config.fallbackModel else { throw error }
            logger.warning("the configured model is unusable; serving the fallback model until a reload finds it usable",
                           metadata: ["model": "\(config.model)", "reason": "\(error)", "fallback": "\(fallback)"])
            do {
                return try loadEngine(path: fallback, settings: config.decoding, base: base, endpoint: config.endpoint)
            } catch let fallbackError {
                throw .model(path: fallback, reason: "the fallback model is unusable too (\(fallbackError)); the configured model \(config.model): \(error)")
            }
        }
    }

    /// Loads and checks a model: `ModelFile.load` validates the file's structure, every tensor's shape
    /// and finiteness, the frontend and the vocabulary; the recogniser builds its encoder; and half a
    /// second of silence is recognised so every stage has run once before the model serves anyone.
    /// A model with its own domain decoding gets the options `DecodingSettings` makes with it (the rule
    /// the CLI follows too); any other model gets `base`'s, made on first need.
    static func loadEngine(path: String, settings: DecodingSettings, base: BaseDecoding, endpoint: EndpointConfig) throws(DaemonError) -> RecognizerEngine {
        func badDecoding(_ error: DecodingSettingsError) -> DaemonError {
            // Closing the vocabulary without a word list is the settings' fault, not the model file's.
            if case .closedVocabularyWithoutWords = error { return .decoding("closed_vocabulary: \(error.description)") }
            return .unusableModel(.malformedMetadata(file: path, key: "decoding", reason: error.description))
        }
        let model: ModelFile
        do { model = try ModelFile.load(path: path) } catch { throw .unusableModel(error) }
        let ownDecoding: Bool
        do { ownDecoding = try settings.modelDecoding(of: model, file: path) != nil } catch { throw badDecoding(error) }
        let baseOptions = ownDecoding ? DecodingOptions.greedy : try base.options()
        let modelOptions: DecodingOptions
        do { modelOptions = try settings.makeOptions(for: model, file: path, base: baseOptions) } catch { throw badDecoding(error) }
        let recognizer: Recognizer
        do { recognizer = try Recognizer(model: model, options: modelOptions, file: path) } catch { throw .unusableModel(error) }
        _ = recognizer.recognize([Float](repeating: 0, count: recognizer.sampleRate / 2))
        return RecognizerEngine(recognizer: recognizer, endpointConfig: endpoint, modelPath: path)
    }

    var engine: RecognizerEngine { current.withLock { $0 } }

    // MARK: start

    func start() async throws(DaemonError) {
        var serverConfig = ServerConfiguration()
        serverConfig.socketMode = config.socketMode
        serverConfig.socketGroup = config.socketGroup
        serverConfig.maxClients = config.maxClients
        let hooks = ServerHooks(
            status: { [unowned self] in self.daemonStatus() },
            reload: { [unowned self] path in try self.reload(path: path) })
        let server = EarshotServer(engine: engine, configuration: serverConfig, hooks: hooks,
                                   logger: Logger(label: "earshot.server"))
        self.server = server

        // The microphone exists before the socket serves, so the status hook never sees it half set up;
        // it starts capturing once the socket is up.
        if config.capture.enabled {
            let capture: AudioCapture
            do {
                capture = try AudioCapture(configuration: config.captureConfiguration(outputRate: engine.sampleRate))
            } catch {
                throw .capture(error)
            }
            microphone = Microphone(capture: capture, recognizer: engine.recognizer, endpoint: config.endpoint,
                                    server: server, logger: modelLogger, captureLogger: captureLogger)
        }

        do {
            if let inherited = inheritedListeningSocket() {
                if inherited.count > 1 {
                    logger.warning("systemd passed \(inherited.count) sockets; serving the first (fd 3) only")
                }
                try await server.start(listeningFD: inherited.fd)
            } else {
                try await server.start(path: config.socket)
            }
        } catch {
            await server.shutdown(flushingSessions: false)
            throw .server(error)
        }

        if let microphone {
            microphone.start()
            captureLogger.info("capturing", metadata: ["device": "\(config.capture.device)"])
        } else {
            logger.info("no capture: serving client sessions only")
        }

        notifier.notify("READY=1\nSTATUS=" + shortStatus())
        startTimers()
    }

    // MARK: status

    func daemonStatus() -> DaemonStatus {
        guard let microphone else { return DaemonStatus() }
        let counters = microphone.counters
        return DaemonStatus(capture: CaptureSummary(microphone.capture.status),
                            microphoneAudioSeconds: counters.audioSeconds,
                            microphoneProcessingSeconds: counters.cpuSeconds)
    }

    /// One line for `systemctl status`.
    func shortStatus() -> String {
        let status = server.status()
        var parts: [String] = []
        if let capture = status.capture {
            parts.append("capture \(capture.state)")
        } else {
            parts.append("no capture")
        }
        parts.append(counted(status.clients, "client"))
        parts.append(counted(status.sessions, "session"))
        parts.append(counted(status.subscribers, "subscriber"))
        if status.audioSeconds > 0 { parts.append(String(format: "RTF %.3f", status.realTimeFactor)) }
        parts.append("model \(status.model.name)")
        return parts.joined(separator: ", ")
    }

    /// The watchdog ping and the status line, on one timer queue: every half watchdog
    /// timeout when systemd set one (sd_watchdog_enabled(3)'s advice), else every 2 s.
    private func startTimers() {
        let tick = notifier.watchdogInterval ?? .seconds(2)
        let tickNanos = tick.components.seconds * 1_000_000_000 + tick.components.attoseconds / 1_000_000_000
        let timer = DispatchSource.makeTimerSource(queue: timerQueue)
        timer.schedule(deadline: .now() + .nanoseconds(Int(tickNanos)), repeating: .nanoseconds(Int(tickNanos)))
        var lastStatus = ""
        timer.setEventHandler { [unowned self] in
            let line = self.shortStatus()
            // Under shutdown's lock, as READY=1 is: a running status line after STATUS=stopping would be
            // what `systemctl status` shows for the whole of the shutdown.
            self.stopping.withLock { stopping in
                guard !stopping, line != lastStatus else { return }
                self.notifier.status(line)
                lastStatus = line
            }
            guard self.notifier.watchdogInterval != nil else { return }
            // Ping only while the recognition thread goes round its loop (at least every 100 ms when
            // idle): a wedged thread should get us restarted rather than be hidden by a timer that fires.
            let age = self.microphone?.heartbeatAge ?? 0
            if age < UInt64(2 * tickNanos) {
                self.notifier.notify("WATCHDOG=1")
            } else {
                self.logger.error("the recognition thread has not run for \(age / 1_000_000) ms; not pinging the watchdog")
            }
        }
        timer.resume()
        timers.append(timer)
    }

    // MARK: reload

    /// Loads `path` (nil: the configured model), checks it, and makes it the model of the microphone's
    /// next utterance; returns it for the server, which gives it to sessions (at their next utterance
    /// boundary). A model that fails keeps the old one in service. Only called through
    /// `EarshotServer.reload`, which serialises reloads; `reloadLock` guards against direct calls too.
    func reload(path: String?) throws(DaemonError) -> RecognizerEngine {
        reloadLock.lock()
        defer { reloadLock.unlock() }
        let path = path ?? config.model
        modelLogger.info("reloading model", metadata: ["path": "\(path)"])
        let engine: RecognizerEngine
        do throws(DaemonError) {
            engine = try Self.loadEngine(path: path, settings: config.decoding, base: base, endpoint: config.endpoint)
            if let microphone, engine.sampleRate != microphone.capture.configuration.outputRate {
                throw .sampleRate(path: path, model: engine.sampleRate,
                                             microphone: microphone.capture.configuration.outputRate)
            }
        } catch {
            modelLogger.error("reload failed; keeping the current model", metadata: ["error": "\(error)"])
            throw error
        }
        current.withLock { $0 = engine }
        microphone?.replaceRecognizer(engine.recognizer)
        // The server puts `engine` in service for sessions when this returns (EarshotServer.reload).
        modelLogger.info("model reloaded", metadata: ["path": "\(path)", "sha256": "\(engine.recognizer.model.sha256 ?? "?")"])
        return engine
    }

    /// SIGHUP: reload the configured model, telling systemd while it happens.
    func reloadFromSignal() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        stopping.withLock { stopping in
            guard !stopping else { return }
            notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000)")
        }
        do {
            _ = try server.reload(modelPath: nil)
        } catch {
            // Already logged by `reload`; the old model serves on.
        }
        // A reload that ends after SIGTERM must not tell systemd the service is ready again: the check and
        // the message are one step under the lock that shutdown's STOPPING=1 takes too (as are RELOADING=1
        // and the status line).
        let status = shortStatus()
        stopping.withLock { stopping in
            guard !stopping else { return }
            notifier.notify("READY=1\nSTATUS=" + status)
        }
    }

    // MARK: shutdown

    /// Stops the capture, lets the microphone finish its utterance (its final is broadcast), then
    /// finishes every client session and closes the server.
    func shutdown() async {
        stopping.withLock { stopping in
            stopping = true
            notifier.notify("STOPPING=1\nSTATUS=stopping")
        }
        server.refuseReloads()
        for timer in timers { timer.cancel() }
        logger.info("stopping")
        // Half of the unit's TimeoutStopSec (30 s) at most for the microphone's backlog, so that the
        // client sessions are still finished before systemd's SIGKILL.
        if let microphone, !microphone.stop(timeout: .seconds(15)) {
            logger.error("the recognition thread did not finish in time; closing anyway")
        }
        await server.shutdown(flushingSessions: true)
        logger.info("stopped")
    }
}

/// The decoding options for models without their own domain decoding: `decoding.lm` if set, else the
/// installed general English LM (when `decoding.general_lm` and `decoding.model_lm` are on) at its
/// measured weights, as `earshot transcribe` decodes; else none (greedy, or a beam for hotwords).
/// Made once, when the first such model loads (at start-up or at a reload), and kept: an LM takes a while
/// to read and tens of MB to hold, which a daemon serving an adapted model with its own LM never needs.
final class BaseDecoding: @unchecked Sendable {
    // `made` is behind `lock`; hence @unchecked.
    let settings: DecodingSettings
    private let configuredLM: Bool
    private let logger: Logger
    private let lock = NSLock()
    private var made: DecodingOptions?

    init(config: DaemonConfiguration, generalLM: String?, logger: Logger) {
        var settings = config.decoding
        if settings.languageModel == nil, config.generalLanguageModel, settings.useModelDecoding, let generalLM {
            settings = settings.usingGeneralLanguageModel(generalLM)
        }
        // Without an LM only a model's own word list can close the vocabulary: `loadEngine` checks that.
        if settings.languageModel == nil { settings.closedVocabulary = nil }
        self.settings = settings
        configuredLM = config.decoding.languageModel != nil
        self.logger = logger
    }

    func options() throws(DaemonError) -> DecodingOptions {
        lock.lock()
        defer { lock.unlock() }
        if let made { return made }
        let options: DecodingOptions
        do { options = try settings.makeOptions() } catch {
            if !configuredLM, let general = settings.languageModel {
                throw .decoding("general language model \(general) (decoding.general_lm = false, --no-general-lm or EARSHOT_LM= decodes without it): \(error.description)")
            }
            throw .decoding(error.description)
        }
        if let lm = settings.languageModel {
            logger.info("decoding with a language model", metadata: [
                "lm": "\(lm)", "general": "\(!configuredLM)", "closed_vocabulary": "\(options.beam?.lexicon != nil)",
                "beam": "\(options.beam?.beamWidth ?? 1)"])
        }
        made = options
        return options
    }
}
