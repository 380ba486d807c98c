import Audio
import Foundation
import Logging
import Recognizer
import Server
import Tensors

#if canImport(Glibc)
import Glibc
#endif

/// The microphone's recognition: owns the recognition thread, which pulls audio from the capture's bounded
/// buffer, runs one `StreamingSession` over it and hands every event to `server.broadcast` in order.
/// The session lives on that thread only; other threads talk to it through `shared` (a recogniser to
/// switch to, counters to read).
///
/// Flow: ALSA -> `AudioCapture` thread -> ring (bounded, drops oldest) -> this thread -> session ->
/// `broadcast` -> each subscriber's event loop. Nothing here ever waits on a client.
final class Microphone: @unchecked Sendable {
    // Every mutable field is in `shared` (behind its lock) or touched only by the recognition thread
    // (`session`), which the compiler cannot see: hence @unchecked.
    let capture: AudioCapture
    private let server: EarshotServer
    private let logger: Logger
    private let captureLogger: Logger
    private let session: StreamingSession
    /// The capture state last logged (recognition thread only).
    private var loggedCaptureState = ""
    /// Where the session's timeline starts in the microphone's (seconds and samples since capture began,
    /// lost audio included) and how many utterances earlier sessions numbered: the session is finished at
    /// each break in the audio (a lost device), and its events are moved onto one timeline (recognition
    /// thread only).
    private var offsetSeconds = 0.0
    private var offsetUtterances = 0
    private var sessionUtterances = 0
    /// The levelling gain last logged (dB), so the log says when the microphone's speech turns quiet
    /// or loud again, not at every utterance.
    private var loggedGainDB = 0.0
    private var lastCaptureCheck: UInt64 = 0
    private let shared = Locked(Shared())
    private let done = DispatchSemaphore(value: 0)
    private var thread: Thread?

    /// Largest chunk taken from the ring at once: 0.3 s. `read` returns at once with whatever is there
    /// (a 20 ms period when keeping up), so this bounds only catching up after a stall, not latency.
    private let chunkSamples: Int

    struct Shared {
        var pendingRecognizer: Recognizer?
        var samples: Int64 = 0
        var cpuSeconds = 0.0
        /// Monotonic nanoseconds when the thread last went round its loop (it wakes at least every
        /// 100 ms even with no audio), for the watchdog.
        var heartbeat = DispatchTime.now().uptimeNanoseconds
        var finished = false
        var utterances = 0
        /// The capture device did not close in time at shutdown: the thread finishes with what it has.
        var captureAbandoned = false
    }

    /// How long shutdown waits for the capture thread to close the device (milliseconds, normally).
    static let captureCloseTimeout = Duration.seconds(2)

    init(capture: AudioCapture, recognizer: Recognizer, endpoint: EndpointConfig, server: EarshotServer,
         logger: Logger, captureLogger: Logger) {
        self.capture = capture
        self.server = server
        self.logger = logger
        self.captureLogger = captureLogger
        self.session = StreamingSession(recognizer: recognizer, config: endpoint)
        self.chunkSamples = recognizer.sampleRate * 3 / 10
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "earshot.recognition"
        thread.qualityOfService = .userInitiated
        self.thread = thread
        capture.start()
        thread.start()
    }

    /// Switches the microphone to `recognizer` at its next utterance boundary (the utterance in flight
    /// finishes with the old model). The caller has checked the sample rate.
    func replaceRecognizer(_ recognizer: Recognizer) {
        shared.withLock { $0.pendingRecognizer = recognizer }
    }

    /// Seconds of microphone audio recognised and the recognition thread's CPU seconds for it.
    var counters: (audioSeconds: Double, cpuSeconds: Double) {
        let rate = Double(capture.configuration.outputRate)
        return shared.withLock { (Double($0.samples) / rate, $0.cpuSeconds) }
    }

    /// Nanoseconds since the recognition thread last showed it is alive; 0 once it has finished.
    var heartbeatAge: UInt64 {
        shared.withLock { s in s.finished ? 0 : DispatchTime.now().uptimeNanoseconds &- s.heartbeat }
    }

    /// Stops the capture; the recognition thread recognises what was captured, finishes the utterance in
    /// flight (its final is broadcast) and ends. Returns once it has, or after `timeout` (plus at most
    /// `captureCloseTimeout` for a device whose close hangs: the thread then finishes without it).
    @discardableResult
    func stop(timeout: Duration = .seconds(30)) -> Bool {
        if !capture.stop(timeout: Self.captureCloseTimeout) {
            logger.error("the capture device did not close within \(Self.captureCloseTimeout); finishing without it")
            shared.withLock { $0.captureAbandoned = true }
        }
        guard thread != nil else { return true }
        let ms = Int(timeout.components.seconds * 1000)
        return done.wait(timeout: .now() + .milliseconds(ms)) == .success
    }

    // MARK: the recognition thread

    private func run() {
        var buffer = [Float]()
        buffer.reserveCapacity(chunkSamples)
        while true {
            if let next = shared.withLock({ s -> Recognizer? in
                s.heartbeat = DispatchTime.now().uptimeNanoseconds
                defer { s.pendingRecognizer = nil }
                return s.pendingRecognizer
            }) {
                switch Result(catching: { () throws(StreamingSessionError) in try session.replaceRecognizer(next) }) {
                case .success: logger.info("microphone switches to the new model at its next utterance boundary")
                case .failure(let error): logger.error("microphone keeps its model: \(error)")
                }
            }
            logCaptureChanges()
            buffer.removeAll(keepingCapacity: true)
            let n: Int
            switch capture.readSegment(into: &buffer, maxSamples: chunkSamples, timeout: .milliseconds(100)) {
            case .gap(let seconds):
                // Audio is missing here: the utterance in flight ends (final and end_of_stream) rather
                // than being glued to the audio after the break, and later times count the lost time.
                let t0 = threadCPUTime()
                let before = session.audioSeconds
                let events = onTimeline(session.finish())
                let cpu = threadCPUTime() - t0
                server.broadcast(events)
                account(samples: 0, cpu: cpu, events: events)
                offsetSeconds += before + seconds
                offsetUtterances += sessionUtterances
                sessionUtterances = 0
                if !events.isEmpty || seconds > 0 {
                    logger.notice("microphone audio interrupted: the utterance in flight ended there", metadata: [
                        "lost_seconds": "\(String(format: "%.2f", seconds))", "at": "\(String(format: "%.2f", offsetSeconds))"])
                }
                continue
            case .samples(let count):
                n = count
            }
            if n == 0 {
                let over = capture.status.state == .stopped || shared.withLock { $0.captureAbandoned }
                if over && capture.availableSamples == 0 { break }
                continue
            }
            let t0 = threadCPUTime()
            let events = onTimeline(session.accept(buffer))
            let cpu = threadCPUTime() - t0
            server.broadcast(events)
            account(samples: n, cpu: cpu, events: events)
            logLevelChanges()
        }
        let t0 = threadCPUTime()
        let events = onTimeline(session.finish())
        let cpu = threadCPUTime() - t0
        server.broadcast(events)
        account(samples: 0, cpu: cpu, events: events)
        logCaptureChanges(force: true)
        shared.withLock { $0.finished = true }
        logger.info("microphone recognition stopped", metadata: ["audio_seconds": "\(counters.audioSeconds)"])
        done.signal()
    }

    /// A quiet microphone costs words even levelled (the first utterance after start is heard as it is,
    /// and a higher capture level has less noise), so the log says when the gain moves by 6 dB or more.
    private func logLevelChanges() {
        let gain = session.levelGainDB
        guard abs(gain - loggedGainDB) >= 6 || (gain == 0) != (loggedGainDB == 0) else { return }
        loggedGainDB = gain
        let speech = session.speechLevelDB.map { String(format: "%.0f", $0) } ?? "?"
        if gain > 0 {
            logger.notice("microphone speech is quiet: raised before the model (endpoint.auto_level); a higher capture level (alsamixer) is better still", metadata: [
                "speech_dbfs": "\(speech)", "gain_db": "\(String(format: "%.0f", gain))"])
        } else {
            logger.notice("microphone speech is at a normal level: not raised", metadata: ["speech_dbfs": "\(speech)"])
        }
    }

    /// The session's events on the microphone's timeline (see `offsetSeconds`); counts its utterances.
    private func onTimeline(_ events: [RecognitionEvent]) -> [RecognitionEvent] {
        for case .partial(let u, _, _) in events { sessionUtterances = max(sessionUtterances, u + 1) }
        for case .final(let u, _, _, _, _) in events { sessionUtterances = max(sessionUtterances, u + 1) }
        guard offsetSeconds != 0 || offsetUtterances != 0 else { return events }
        let samples = Int((offsetSeconds * Double(capture.configuration.outputRate)).rounded())
        return events.map { $0.shifted(seconds: offsetSeconds, samples: samples, utterances: offsetUtterances) }
    }

    /// Logs the capture loop's state when it changes (checked at most every 100 ms: a lock and a copy).
    private func logCaptureChanges(force: Bool = false) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard force || now &- lastCaptureCheck >= 100_000_000 else { return }
        lastCaptureCheck = now
        let status = capture.status
        var key = CaptureSummary(status).state
        if case .retrying(let reason, _, _) = status.state { key += ": " + reason.description }
        guard key != loggedCaptureState else { return }
        loggedCaptureState = key
        switch status.state {
        case .retrying(let reason, let attempt, let next):
            captureLogger.warning("capture device unavailable, retrying", metadata: [
                "reason": "\(reason)", "attempt": "\(attempt)",
                "next_in": "\(String(format: "%.2f", max(0, next.timeIntervalSinceNow))) s"])
        case .running:
            if let info = status.device {
                captureLogger.info("capture running", metadata: [
                    "device": "\(info.device)", "rate": "\(info.sampleRate)", "channels": "\(info.channels)",
                    "format": "\(info.format)", "period": "\(info.periodFrames)", "buffer": "\(info.bufferFrames)",
                    "reopen_count": "\(status.reopenCount)"])
            }
        case .stopped:
            captureLogger.info("capture stopped", metadata: [
                "overruns": "\(status.overruns)", "dropped_samples": "\(status.droppedSamples)"])
        case .starting:
            break
        }
    }

    private func account(samples: Int, cpu: Double, events: [RecognitionEvent]) {
        var finals = 0
        for event in events {
            if case .final(let utterance, let transcript, _, _, _) = event {
                finals += 1
                logger.debug("microphone final", metadata: ["utterance": "\(utterance)", "text": "\(transcript.text)"])
            }
        }
        shared.withLock {
            $0.samples += Int64(samples)
            $0.cpuSeconds += cpu
            $0.utterances += finals
        }
    }
}

