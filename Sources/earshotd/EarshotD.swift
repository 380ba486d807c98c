import ArgumentParser
import Dispatch
import Foundation
import Tensors
import Logging
import Recognizer

#if canImport(Glibc)
import Glibc
#endif

/// `earshotd`: the command line (every configuration key has a flag), then the daemon's life: start,
/// serve until SIGTERM/SIGINT, reload on SIGHUP.
@main
struct EarshotD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "earshotd",
        abstract: "The Earshot daemon: live transcripts of a microphone and recognition sessions on a Unix socket.",
        discussion: """
        Settings come from the TOML file (--config, default \(DaemonConfiguration.defaultFile); a missing \
        default file means all defaults), then from flags, which override the \
        file. Unknown keys are an error. Each flag's help names its key in [brackets]. The keys, with \
        their defaults:

        \(DaemonConfiguration().toml())
        Signals: SIGHUP reloads the model (as the socket's `reload` request does); SIGTERM or SIGINT stop \
        the capture, finish the utterances in flight and exit 0; a second one exits at once. Under systemd: \
        Type=notify (READY=1, STATUS=, WATCHDOG=1 when WatchdogSec= is set, STOPPING=1) and socket \
        activation (LISTEN_FDS) are supported; see docs/daemon.md and systemd/.

        Example:
          earshotd --socket /tmp/earshot.sock --device plughw:CARD=Mic --model earshot-base-en.safetensors
          earshotd --no-capture --socket /tmp/earshot.sock --print-config
        """)

    @Option(name: .long, help: ArgumentHelp("Configuration file (TOML).", valueName: "file"))
    var config: String?

    @Flag(help: "Print the effective configuration (file and flags merged) as TOML and exit.")
    var printConfig = false

    @Option(help: ArgumentHelp("Unix socket path to bind. [socket]", valueName: "path"))
    var socket: String?

    @Option(help: ArgumentHelp("Octal permissions of the socket file, e.g. 0660. [socket_mode]", valueName: "mode"))
    var socketMode: String?

    @Option(help: ArgumentHelp("Group given to the socket file. [socket_group]", valueName: "name"))
    var socketGroup: String?

    @Option(help: ArgumentHelp("Clients served at once; one more is refused with too_many_clients. [max_clients]", valueName: "n"))
    var maxClients: Int?

    @Option(help: ArgumentHelp("Model file (.safetensors). [model]", valueName: "path"))
    var model: String?

    @Option(help: ArgumentHelp("Model served at start-up when --model is missing or unusable, e.g. the shipped base model while an adapted one does not exist yet; reloads read --model again. [fallback_model]", valueName: "path"))
    var fallbackModel: String?

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical. [log_level]", valueName: "level"))
    var logLevel: String?

    @Flag(help: "No microphone: serve client sessions only. [capture.enabled = false]")
    var noCapture = false

    @Option(help: ArgumentHelp("ALSA capture PCM (default, hw:1,0, plughw:CARD=Mic...). [capture.device]", valueName: "pcm"))
    var device: String?

    @Option(help: ArgumentHelp("Extra asoundrc-style file read for the capture only. [capture.alsa_config]", valueName: "file"))
    var alsaConfig: String?

    @Option(help: ArgumentHelp("Sample rate asked of the device (Hz). [capture.sample_rate]", valueName: "hz"))
    var captureRate: Int?

    @Option(help: ArgumentHelp("Channels asked of the device; averaged to mono. [capture.channels]", valueName: "n"))
    var captureChannels: Int?

    @Option(help: ArgumentHelp("ALSA period (ms). [capture.period_ms]", valueName: "ms"))
    var capturePeriodMs: Int?

    @Option(help: ArgumentHelp("ALSA buffer (ms). [capture.buffer_ms]", valueName: "ms"))
    var captureBufferMs: Int?

    @Option(help: ArgumentHelp("Seconds of audio recognition may fall behind before the oldest is dropped. [capture.ring_seconds]", valueName: "s"))
    var captureRingSeconds: Double?

    @Option(help: ArgumentHelp("Longest wait between attempts to reopen a failed device (s). [capture.retry_max_seconds]", valueName: "s"))
    var captureRetryMax: Double?

    @Option(help: ArgumentHelp("Stop capturing after this much audio (s); 0 never stops. [capture.duration]", valueName: "s"))
    var captureDuration: Double?

    @Option(help: ArgumentHelp("Silence after speech that ends an utterance (s). [endpoint.trailing_silence]", valueName: "s"))
    var trailingSilence: Double?

    @Option(help: ArgumentHelp("Longest utterance before it is cut (s). [endpoint.max_utterance]", valueName: "s"))
    var maxUtterance: Double?

    @Option(help: ArgumentHelp("Shorter bursts of speech are dropped (s). [endpoint.min_speech]", valueName: "s"))
    var minSpeech: Double?

    @Option(help: ArgumentHelp("Audio between partial results (s). [endpoint.partial_interval]", valueName: "s"))
    var partialInterval: Double?

    @Option(help: ArgumentHelp("Posterior mass on letters above which a frame is speech. [endpoint.speech_threshold]", valueName: "p"))
    var speechThreshold: Double?

    // .unconditional: the value is negative, and "-60" must not be taken for a flag.
    @Option(parsing: .unconditional, help: ArgumentHelp("dBFS below which audio is silence and the model rests. [endpoint.silence_level]", valueName: "dB"))
    var silenceLevel: Double?

    @Option(help: ArgumentHelp("Non-speech after which a segment restarts (s). [endpoint.max_leading_silence]", valueName: "s"))
    var maxLeadingSilence: Double?

    @Option(help: ArgumentHelp("Raise quiet speech (loudest 20 ms below \(Int(RecordingLevel.quietBelow)) dBFS) to the trained level, learnt from the utterances heard: true or false. [endpoint.auto_level]", valueName: "bool"))
    var autoLevel: Bool?

    @Option(help: ArgumentHelp("CTC beam width; 1 is greedy, or 32 when an LM is used (the general LM, --lm or the model's). [decoding.beam]", valueName: "n"))
    var beam: Int?

    @Option(help: ArgumentHelp("Word language model: ARPA, or binary from earshot lm compile (loads about 20x faster). [decoding.lm]", valueName: "file"))
    var lm: String?

    @Option(help: ArgumentHelp("Language model weight (alpha). [decoding.lm_weight]", valueName: "w"))
    var lmWeight: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("Score per word with a language model (beta), may be negative. [decoding.word_bonus]", valueName: "b"))
    var wordBonus: Double?

    @Option(name: .customLong("hotword"), help: ArgumentHelp(
        "A phrase to favour, 'phrase[:weight]'; repeatable, replaces the file's list. [decoding.hotwords]",
        valueName: "phrase[:weight]"))
    var hotwords: [String] = []

    @Flag(name: .customLong("no-model-lm"), help: "Ignore the model's own domain decoding (LM, hotwords, weights). [decoding.model_lm = false]")
    var noModelLM = false

    @Flag(name: .customLong("no-general-lm"), help: ArgumentHelp(
        "Without --lm, do not decode with the installed general English LM (docs/language-models.md). [decoding.general_lm = false]"))
    var noGeneralLM = false

    @Flag(help: ArgumentHelp("Recognise only the LM's words (the model's domain words, or --lm's or the general LM's), or let others through. [decoding.closed_vocabulary]"))
    var vocabularyMode: VocabularyMode?

    enum VocabularyMode: EnumerableFlag {
        case closedVocabulary, openVocabulary
    }

    /// The file's configuration with the flags on top.
    func resolvedConfiguration() throws(ConfigError) -> DaemonConfiguration {
        var c = try DaemonConfiguration.load(file: config ?? DaemonConfiguration.defaultFile, explicit: config != nil)
        if let socket { c.socket = socket }
        if let socketMode {
            guard let mode = parseMode(socketMode) else {
                throw .invalid(key: "--socket-mode", reason: "'\(socketMode)' is not an octal mode like 0660")
            }
            c.socketMode = mode
        }
        if let socketGroup { c.socketGroup = socketGroup.isEmpty ? nil : socketGroup }
        if let maxClients { c.maxClients = maxClients }
        if let model { c.model = model }
        if let fallbackModel { c.fallbackModel = fallbackModel.isEmpty ? nil : fallbackModel }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
                throw .invalid(key: "--log-level", reason: "'\(logLevel)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            c.logLevel = level
        }
        if noCapture { c.capture.enabled = false }
        if let device { c.capture.device = device }
        if let alsaConfig { c.capture.alsaConfig = alsaConfig.isEmpty ? nil : alsaConfig }
        if let captureRate { c.capture.sampleRate = captureRate }
        if let captureChannels { c.capture.channels = captureChannels }
        if let capturePeriodMs { c.capture.periodMilliseconds = capturePeriodMs }
        if let captureBufferMs { c.capture.bufferMilliseconds = captureBufferMs }
        if let captureRingSeconds { c.capture.ringSeconds = captureRingSeconds }
        if let captureRetryMax { c.capture.retryMaxSeconds = captureRetryMax }
        if let captureDuration { c.capture.duration = captureDuration }
        if let trailingSilence { c.endpoint.trailingSilence = trailingSilence }
        if let maxUtterance { c.endpoint.maxUtterance = maxUtterance }
        if let minSpeech { c.endpoint.minSpeech = minSpeech }
        if let partialInterval { c.endpoint.partialInterval = partialInterval }
        if let speechThreshold { c.endpoint.speechThreshold = speechThreshold }
        if let silenceLevel { c.endpoint.silenceLevel = silenceLevel }
        if let maxLeadingSilence { c.endpoint.maxLeadingSilence = maxLeadingSilence }
        if let autoLevel { c.endpoint.autoLevel = autoLevel }
        if let beam { c.decoding.beam = beam }
        if let lm { c.decoding.languageModel = lm.isEmpty ? nil : lm }
        if let lmWeight { c.decoding.lmWeight = lmWeight }
        if let wordBonus { c.decoding.wordBonus = wordBonus }
        if !hotwords.isEmpty { c.decoding.hotwords = hotwords }
        if noModelLM { c.decoding.useModelDecoding = false }
        if noGeneralLM { c.generalLanguageModel = false }
        if let vocabularyMode { c.decoding.closedVocabulary = vocabularyMode == .closedVocabulary }
        try c.validate()
        return c
    }

    func run() async throws {
        let configuration: DaemonConfiguration
        do { configuration = try resolvedConfiguration() } catch {
            fail(error.description)
        }
        if printConfig {
            print(configuration.toml(), terminator: "")
            return
        }
        StderrLogHandler.bootstrap(level: configuration.logLevel)
        let logger = Logger(label: "earshot.daemon")

        // Signals arrive as events on a queue, not in async-signal context; the first TERM/INT starts
        // an orderly shutdown, a second one means "now".
        let signals = SignalEvents()
        let daemon: Daemon
        do {
            daemon = try Daemon(config: configuration)
            try await daemon.start()
        } catch {
            logger.critical("\(error)")
            fail(error.description)
        }
        logger.info("ready", metadata: ["socket": "\(daemon.server.socketPath ?? "fd 3 (socket activation)")"])

        for await signal in signals.stream {
            if signal == SIGHUP {
                logger.info("SIGHUP: reloading the model")
                // Loading takes a while; the signal queue stays free for a TERM meanwhile.
                DispatchQueue.global(qos: .utility).async { daemon.reloadFromSignal() }
                continue
            }
            logger.info("\(signal == SIGTERM ? "SIGTERM" : "SIGINT"): shutting down (a second signal exits at once)")
            break
        }
        await daemon.shutdown()
    }

    /// The one-line message on stderr, exit status 1 (ArgumentParser would add usage text).
    func fail(_ message: String) -> Never {
        try? FileHandle.standardError.write(contentsOf: Data(("earshotd: " + message + "\n").utf8))
        Glibc.exit(1)
    }
}

/// SIGTERM, SIGINT and SIGHUP as an async stream. Owns the dispatch signal sources (the signals
/// themselves are ignored so that only the sources see them). After the first SIGTERM/SIGINT has been
/// delivered, another one ends the process at once. @unchecked: the sources are only kept alive here.
final class SignalEvents: @unchecked Sendable {
    let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init() {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        self.stream = stream
        let queue = DispatchQueue(label: "earshot.signals")
        let stopping = Locked(false)
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler {
                if sig != SIGHUP {
                    if stopping.withLock({ s in defer { s = true }; return s }) {
                        let text = "earshotd: second signal, exiting now\n"
                        _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
                        _exit(1)
                    }
                }
                continuation.yield(sig)
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }
}
