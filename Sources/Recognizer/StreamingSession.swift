import Decoding
import Foundation
import Tensors

/// Continuous recognition of an endless audio stream, split into utterances by endpointing.
///
/// Owns one `RecognitionStream` (restarted at every utterance boundary), a fixed-size history of the
/// most recent samples (enough to re-feed the look-ahead region into a restarted stream and to give
/// an utterance some leading context when the model wakes up after silence), and the endpointing
/// state. See docs/endpointing.md for the rules.
///
/// Audio is handed to the stream in blocks of one encoder frame (hop x subsampling samples, 20 ms for
/// Earshot models) and every decision is taken after a block, so the events depend only on the audio,
/// never on how it was chunked into `accept` calls. Every utterance is recognised by a stream started
/// afresh at its segment's first sample and finished at its last (a zero-padded flush, or after a
/// silence endpoint at its released frames), so its final text equals offline recognition of that
/// segment finished the same way.
///
/// A session made with `batched: true` (for whole recordings) emits no partials and steps the model in
/// blocks of several frames whenever no endpoint can fall inside one, e.g. while speech goes on: a
/// final needs `trailingSilence` of frames after the last speech frame, so until then nothing restarts
/// the stream and a longer block gives the same logits (up to float rounding: BLAS may sum a product of
/// several columns in another order, which could only flip a decision sitting on its threshold). Its
/// finals are those of a frame-by-frame session, at about 1.7 times the speed (the encoder's matrix
/// products get several columns at a time). A `replaceRecognizer` takes effect at the boundary after
/// the gathered block, up to 32 frames later than in a frame-by-frame session.
///
/// Not thread-safe and not Sendable: one owner at a time.
public final class StreamingSession {
    public let config: EndpointConfig
    /// No partials; the model stepped in blocks of up to `maxBatchFrames` frames where that is safe.
    public let batched: Bool
    /// The longest block of a batched session: 0.64 s at 20 ms frames, past which the encoder's products
    /// gain little.
    static let maxBatchFrames = 32
    /// The recogniser in use now (a replacement takes over at the next utterance boundary).
    public private(set) var recognizer: Recognizer
    /// Samples per second of the audio `accept` expects.
    public let sampleRate: Int

    private var pendingRecognizer: Recognizer?
    private var stream: RecognitionStream
    /// Whether `stream` is running; false while the audio is below `silenceLevel` (the gate is shut).
    private var active = false
    private var retiredTimings = StageTimings()
    private var totalSamples = 0

    // Positions are session sample indices.
    /// Samples accepted since the session started.
    private var received = 0
    /// Samples handed on (to the gate, and to the stream while active): whole blocks.
    private var processed = 0
    /// First sample of the running stream's segment.
    private var segmentStart = 0
    /// Start of the first encoder frame not yet classified (segmentStart + frames x frameSamples).
    private var decided = 0

    // The utterance being tracked in the running segment.
    private var speechStart: Int?
    private var speechEnd = 0
    private var utterance: Int?
    private var nextUtterance = 0
    private var lastPartial = 0
    /// Consecutive samples (whole blocks) below `silenceLevel`.
    private var quietRun = 0

    // Levelling (`config.autoLevel`): the level of the speech heard, kept across `finish()` (it belongs
    // to the microphone or client, not to one stream), and what the running segment has heard so far.
    private var speechLevel = SpeechLevel()
    private var heardMeanSquare: Float = 0
    private var heardPeak: Float = 0
    /// The gain the running segment's audio gets before the model (1: none), and in dB.
    private var segmentGain: Float = 1
    public private(set) var segmentGainDB = 0.0
    /// The gain (dB) the utterances heard so far call for: what the next segment gets. A microphone so
    /// quiet that the model hears no speech in it teaches nothing and stays as it is.
    public var levelGainDB: Double { config.autoLevel ? speechLevel.gainDB : 0 }
    /// The loudest-20-ms level (dBFS) learnt from the utterances heard; nil before one, or without `autoLevel`.
    public var speechLevelDB: Double? { speechLevel.loudest }

    // Sizes in samples, derived from the recogniser and the configuration.
    private var frameSamples = 0
    private var prerollSamples = 0
    private var gateHoldSamples = 0
    private let trailingSamples: Int
    private let maxUtteranceSamples: Int
    private let minSpeechSamples: Int
    private let partialSamples: Int
    private let maxLeadingSamples: Int
    private let silencePower: Float
    private let speechThreshold: Float

    /// The most recent samples: session sample `p` is at `ring[p % ring.count]` while
    /// `p >= received - ring.count`. Sized once (per recogniser) for look-ahead, preroll and a block.
    private var ring: [Float] = []
    /// One block (or a re-fed span) copied out of the ring for the stream; keeps its capacity.
    private var feed: [Float] = []
    private var events: [RecognitionEvent] = []

    /// A session recognising with `recognizer`; `config` must pass `validate()`. `batched`: see above.
    public init(recognizer: Recognizer, config: EndpointConfig = .init(), batched: Bool = false) {
        do { try config.validate() } catch { preconditionFailure("\(error)") }
        self.config = config
        self.batched = batched
        self.recognizer = recognizer
        self.sampleRate = recognizer.sampleRate
        self.stream = recognizer.makeStream()
        let rate = Double(recognizer.sampleRate)
        trailingSamples = Int((config.trailingSilence * rate).rounded())
        maxUtteranceSamples = Int((config.maxUtterance * rate).rounded())
        minSpeechSamples = Int((config.minSpeech * rate).rounded())
        partialSamples = Int((config.partialInterval * rate).rounded())
        maxLeadingSamples = Int((config.maxLeadingSilence * rate).rounded())
        silencePower = Float(pow(10, config.silenceLevel / 10))
        speechThreshold = Float(config.speechThreshold)
        configureSizes()
    }

    /// Seconds of audio accepted since the session started (or since the last `finish()`).
    public var audioSeconds: Double { Double(received) / Double(sampleRate) }

    /// CPU time per stage over the session's life, every stream included; `audioSeconds` is the audio
    /// accepted (re-fed look-ahead is counted once), so `total / audioSeconds` is the real-time factor.
    public var timings: StageTimings {
        var t = retiredTimings
        t += stream.timings
        t.audioSeconds = Double(totalSamples) / Double(sampleRate)
        return t
    }

    /// Pushes samples (at `sampleRate`, any count) and returns what they decided, in order.
    public func accept(_ samples: [Float]) -> [RecognitionEvent] {
        events.removeAll(keepingCapacity: true)
        totalSamples += samples.count
        // A batched session gathers its longest block before stepping; `finish` steps what is left.
        // Read after every block: a replacement recogniser adopted at a boundary inside this call may
        // have another frame size, and a block must never step past the samples received.
        var gather: Int { batched ? Self.maxBatchFrames * frameSamples : frameSamples }
        samples.withUnsafeBufferPointer { input in
            var i = 0
            while true {
                while received - processed >= gather { processBlock() }
                if i == input.count { break }
                let take = min(input.count - i, gather - (received - processed))
                store(UnsafeBufferPointer(rebasing: input[i..<(i + take)]))
                i += take
            }
        }
        return events
    }

    /// Ends the stream: the utterance in flight (if any) gets its final and an `.endOfStream` endpoint.
    /// The session then starts over (times and utterance numbers from zero; a pending recogniser
    /// replacement takes effect).
    public func finish() -> [RecognitionEvent] {
        events.removeAll(keepingCapacity: true)
        while received - processed >= frameSamples { processBlock() }
        if active {
            // The tail shorter than a block goes into the stream; its frames are decided as usual.
            let start = processed
            processed = received
            if processed > start { handle(pushRing(from: start, to: processed)) }
            let (transcript, logits) = stream.finishReturningLogits()
            // The flushed frames can still start or extend speech, but no longer end anything. The last
            // ones are computed over padding past the audio: what they hear ends with the audio.
            for r in 0..<logits.rows {
                let a = decided
                decided += frameSamples
                if a < received && isSpeech(logits, row: r) {
                    noteSpeech(frameStart: a, frameEnd: min(a + frameSamples, received), emitPartial: false)
                }
            }
            if let utterance, let speechStart {
                emitFinal(utterance: utterance, transcript: transcript, speechStart: speechStart, reason: .endOfStream,
                          at: received)
            }
        } else {
            stream.reset()
        }
        let out = events
        startOver()
        return out
    }

    /// Makes `recognizer` the one used from the next utterance boundary on (an utterance in flight
    /// finishes with the old one). Its sample rate must be the session's, since audio arrives at it.
    public func replaceRecognizer(_ recognizer: Recognizer) throws(StreamingSessionError) {
        guard recognizer.sampleRate == sampleRate else {
            throw .sampleRateMismatch(session: sampleRate, recognizer: recognizer.sampleRate)
        }
        pendingRecognizer = recognizer
        if !active { adoptPendingRecognizer() }
    }

    // MARK: - Blocks

    /// Steps one block: one frame, or in a batched session as many as are safe (`safeFrames`).
    private func processBlock() {
        let start = processed
        let frames = batched ? min(safeFrames(), (received - processed) / frameSamples) : 1
        processed += frames * frameSamples
        // The gate's quiet run is counted frame by frame, as a frame-by-frame session counts it.
        var quiet = false
        for k in 0..<frames {
            let a = start + k * frameSamples
            let p = power(from: a, to: a + frameSamples)
            quiet = p < silencePower
            if config.autoLevel && !quiet {
                heardMeanSquare = max(heardMeanSquare, p)
                heardPeak = max(heardPeak, peak(from: a, to: a + frameSamples))
            }
            quietRun = quiet ? quietRun + frameSamples : 0
            // A frame-by-frame session would have shut the gate here, inside the block.
            if k < frames - 1, active, speechStart == nil, quietRun >= gateHoldSamples { earlyDecisions += 1 }
        }
        if !active {
            guard !quiet else { return }
            // Sound after gated silence: wake the model with some leading context from the history.
            let from = max(0, start - prerollSamples, received - ring.count)
            handle(begin(at: from))
        } else {
            if frames > 1 { batchedBlocks += 1 }
            handle(pushRing(from: start, to: processed), block: frames > 1)
        }
        // The cadence in whole blocks, rounded down so a partial comes at least every partialInterval.
        if !batched, let utterance, processed - lastPartial >= max(1, partialSamples / frameSamples) * frameSamples {
            emitPartial(utterance)
        }
        if active, speechStart == nil, quietRun >= gateHoldSamples {
            // Every frame still undecided lies in the quiet run (gateHold >= look-ahead), so nothing is lost.
            stream.reset()
            forgetHeard()
            active = false
            adoptPendingRecognizer()
        }
    }

    /// Classifies the new frames in order and acts on them; a restart re-feeds the look-ahead region
    /// into the new stream, whose frames are then classified in turn. `block`: `first` came from a
    /// batched block of several frames, in which only the last frame may act.
    private func handle(_ first: Matrix, block: Bool = false) {
        var logits = first
        var r = 0
        var inBlock = block
        func acting() {
            if inBlock && r < logits.rows { earlyDecisions += 1 }
            inBlock = false
        }
        while r < logits.rows {
            let a = decided
            decided += frameSamples
            let speech = isSpeech(logits, row: r)
            r += 1
            let end = a + frameSamples
            if speech { noteSpeech(frameStart: a, emitPartial: true) }
            if let s = speechStart, !speech, end - speechEnd >= trailingSamples {
                acting()
                if let utterance {
                    // Decoded up to the released frames only: the look-ahead past them belongs to the next
                    // segment, which starts before it (below).
                    let transcript = stream.finishReleased()
                    emitFinal(utterance: utterance, transcript: transcript, speechStart: s, reason: .silence, at: processed)
                } else {
                    stream.reset()  // a burst shorter than minSpeech: dropped
                    forgetHeard()
                }
                // The next segment starts inside the decided silence, with some of it as leading context
                // (the model marks speech a frame or two after its acoustic onset), but in its second
                // half: the previous word may sound on a little after its last speech frame.
                logits = begin(at: max(end - prerollSamples, speechEnd + (end - speechEnd) / 2)); r = 0
            } else if let s = speechStart, utterance != nil, end - s >= maxUtteranceSamples {
                acting()
                let transcript = stream.finish()
                emitFinal(utterance: utterance!, transcript: transcript, speechStart: s, reason: .maxLength, at: processed)
                // Speech goes on: the next segment takes over exactly where this one ends.
                logits = begin(at: processed); r = 0
            } else if speechStart == nil, end - segmentStart >= maxLeadingSamples {
                acting()
                stream.reset()
                forgetHeard()
                // Keep the preroll as leading context, but always move forward: with frames so long that
                // preroll + a frame exceeds maxLeadingSilence, `end - preroll` would restart at or before
                // the old start (an endless restart loop, or a start the history no longer holds).
                logits = begin(at: max(end - prerollSamples, segmentStart + frameSamples)); r = 0
            }
        }
    }

    private func noteSpeech(frameStart a: Int, frameEnd: Int? = nil, emitPartial: Bool) {
        if speechStart == nil { speechStart = a }
        speechEnd = frameEnd ?? a + frameSamples
        if utterance == nil, speechEnd - speechStart! >= minSpeechSamples {
            utterance = nextUtterance
            nextUtterance += 1
            if emitPartial && !batched { self.emitPartial(utterance!) }
        }
    }

    /// How many frames a batched session may step at once: so many that only the block's last frame
    /// could end anything (`handle`'s rules, and the gate). Pushing `n` frames' samples releases at most
    /// `n` frames, the first of them at `decided`, so each rule's earliest frame follows from the state:
    /// - an utterance ends `trailingSilence` after its last speech frame, or at `maxUtterance`; before any
    ///   speech, the earliest speech frame is the first one;
    /// - before speech, the segment restarts at `maxLeadingSilence`, and the gate shuts when the quiet run
    ///   (computed here from the gathered audio) reaches `gateHold`.
    /// While the gate is shut no model runs, and the session steps frame by frame.
    private func safeFrames() -> Int {
        guard active else { return 1 }
        // Frame k (starting at decided + k x frame) is the first that can act once its end reaches `limit`.
        func firstFrame(endingAt limit: Int) -> Int {
            max(0, (limit - decided + frameSamples - 1) / frameSamples - 1)
        }
        let available = (received - processed) / frameSamples
        var first: Int
        if let s = speechStart {
            first = min(firstFrame(endingAt: speechEnd + trailingSamples), firstFrame(endingAt: s + maxUtteranceSamples))
        } else {
            first = min(firstFrame(endingAt: decided + frameSamples + trailingSamples),
                        firstFrame(endingAt: decided + maxUtteranceSamples),
                        firstFrame(endingAt: segmentStart + maxLeadingSamples))
            // The gate can shut after any block while no speech has been heard.
            var run = quietRun
            for k in 0..<min(first + 1, available) {
                let a = processed + k * frameSamples
                run = power(from: a, to: a + frameSamples) < silencePower ? run + frameSamples : 0
                if run >= gateHoldSamples { first = k; break }
            }
        }
        return min(Self.maxBatchFrames, first + 1)
    }

    private func emitPartial(_ utterance: Int) {
        events.append(.partial(utterance: utterance, text: stream.partial().text, start: reportedSpan(speechStart!, speechEnd).start))
        lastPartial = processed
    }

    private func emitFinal(utterance: Int, transcript: Transcript, speechStart: Int, reason: EndpointReason, at: Int) {
        // An utterance's level is what its segment heard: the loudest stretch of a segment is its speech.
        if config.autoLevel { speechLevel.hear(meanSquare: heardMeanSquare, peakSample: heardPeak) }
        forgetHeard()
        let span = reportedSpan(speechStart, speechEnd)
        events.append(.final(utterance: utterance, transcript: transcript.shifted(by: seconds(segmentStart)),
                             start: span.start, end: span.end, segment: segmentStart..<at))
        events.append(.endpoint(utterance: utterance, reason: reason, at: seconds(at)))
    }

    /// Starts a new segment at `start` (a stream that was reset or finished) and feeds it the history
    /// from there up to what has been processed; returns the logits that gave.
    private func begin(at start: Int) -> Matrix {
        adoptPendingRecognizer()
        active = true
        // The learnt level says how much; what this segment has already heard (the block that woke
        // the gate) may be louder than the utterances it was learnt from, and is never raised past the
        // peak ceiling.
        var gain = levelGainDB
        if heardPeak > 0 { gain = min(gain, max(0, RecordingLevel.peakCeiling - 20 * log10(Double(heardPeak)))) }
        segmentGainDB = gain
        segmentGain = Float(pow(10, gain / 20))
        segmentStart = start
        decided = start
        speechStart = nil
        utterance = nil
        return pushRing(from: start, to: processed)
    }

    /// Only utterances teach the level (noise the model did not take for speech must not be raised), so
    /// what a segment heard is dropped when it ends without one.
    private func forgetHeard() {
        heardMeanSquare = 0
        heardPeak = 0
    }

    private func adoptPendingRecognizer() {
        guard let next = pendingRecognizer else { return }
        pendingRecognizer = nil
        retiredTimings += stream.timings
        retiredTimings.audioSeconds = 0
        recognizer = next
        stream = next.makeStream()
        configureSizes()
    }

    private func startOver() {
        active = false
        received = 0; processed = 0; segmentStart = 0; decided = 0
        speechStart = nil; utterance = nil; nextUtterance = 0; lastPartial = 0; quietRun = 0
        forgetHeard()
        adoptPendingRecognizer()
    }

    /// Derives the block size and the history's capacity from the recogniser's geometry.
    private func configureSizes() {
        let frontend = recognizer.frontendConfig
        frameSamples = frontend.hopLength * recognizer.encoder.subsampling
        let rate = Double(sampleRate)
        prerollSamples = Int((EndpointConfig.leadingContext * rate / Double(frameSamples)).rounded(.up)) * frameSamples
        // An encoder frame is released once the input frame `lookAheadFrames` beyond its own is complete,
        // i.e. its window's last sample has arrived; blocks add at most one frame more.
        let window = frontend.center ? frontend.fftSize / 2 : frontend.windowLength
        let lookAhead = recognizer.encoder.lookAheadFrames * frontend.hopLength + window + 2 * frameSamples
        gateHoldSamples = max(Int(0.5 * rate), lookAhead)
        // A batched session also holds the block it gathers.
        let capacity = lookAhead + prerollSamples + 2 * frameSamples + (batched ? Self.maxBatchFrames * frameSamples : 0)
        if capacity > ring.count {
            // Keep what the old ring held (a replacement recogniser may need a longer history).
            var bigger = [Float](repeating: 0, count: capacity)
            for p in max(0, received - ring.count)..<received { bigger[p % capacity] = ring[p % ring.count] }
            ring = bigger
        }
        feed.reserveCapacity(capacity)
    }

    // MARK: - History

    private func store(_ samples: UnsafeBufferPointer<Float>) {
        let n = ring.count
        var p = received
        for x in samples { ring[p % n] = x; p += 1 }
        received = p
    }

    /// Feeds history samples `from ..< to` to the stream and returns the logits they completed.
    private func pushRing(from: Int, to: Int) -> Matrix {
        precondition(from >= received - ring.count, "endpointing history too short: needs sample \(from), holds from \(received - ring.count)")
        feed.removeAll(keepingCapacity: true)
        let n = ring.count
        var p = from
        while p < to {
            let i = p % n, run = min(to - p, n - i)
            feed.append(contentsOf: ring[i..<(i + run)])
            p += run
        }
        if segmentGain != 1 {
            let g = segmentGain
            for i in feed.indices { feed[i] *= g }
        }
        return stream.pushSamples(feed)
    }

    /// Largest absolute value of history samples `from ..< to`.
    private func peak(from: Int, to: Int) -> Float {
        let n = ring.count
        var m: Float = 0
        ring.withUnsafeBufferPointer { r in
            for p in from..<to { m = max(m, abs(r[p % n])) }
        }
        return m
    }

    /// Mean square of history samples `from ..< to`.
    private func power(from: Int, to: Int) -> Float {
        let n = ring.count
        var sum: Float = 0
        ring.withUnsafeBufferPointer { r in
            for p in from..<to { let x = r[p % n]; sum += x * x }
        }
        return sum / Float(max(1, to - from))
    }

    private func seconds(_ sample: Int) -> Double { Double(sample) / Double(sampleRate) }

    /// An utterance's speech span in session seconds as reported: the speech frames come from the model's
    /// posteriors, which lag the sound as its letters do, so the model's `WordTiming` moves them as it
    /// moves word times (the start not before the segment's first sample, the end not before the start).
    private func reportedSpan(_ start: Int, _ end: Int) -> (start: Double, end: Double) {
        guard let timing = stream.recognizer.timing else { return (seconds(start), seconds(end)) }
        let s = max(seconds(segmentStart), seconds(start) - timing.startDelayMs / 1000)
        return (s, max(s, seconds(end) - timing.endDelayMs / 1000))
    }

    /// Speech when the posterior mass outside blank and the word separator exceeds the threshold.
    private func isSpeech(_ logits: Matrix, row r: Int) -> Bool {
        let v = logits.cols
        let blank = recognizer.vocabulary.blank, space = recognizer.vocabulary.space ?? -1
        return logits.data.withUnsafeBufferPointer { all in
            let row = all.baseAddress! + r * v
            var m = row[0]
            for i in 1..<v { m = max(m, row[i]) }
            var total: Float = 0, other: Float = 0
            for i in 0..<v {
                let e = expf(row[i] - m)
                total += e
                if i != blank && i != space { other += e }
            }
            return other > speechThreshold * total
        }
    }

    // MARK: - Whole recordings

    /// A whole recording recognised as the daemon hears it live: split into utterances at pauses by
    /// `config`'s endpointing, each decoded on its own, their words in one transcript in the recording's
    /// time. (`Recognizer.recognize` decodes it as one utterance: across a long pause a word can then
    /// run on, and the decoder's context carries over.) The session is finished and starts over.
    public func transcribe(_ samples: [Float]) -> (transcript: Transcript, utterances: Int) {
        var words: [Word] = [], texts: [String] = [], utterances = 0
        func collect(_ events: [RecognitionEvent]) {
            for case let .final(_, transcript, _, _, _) in events where !transcript.text.isEmpty {
                words += transcript.words
                texts.append(transcript.text)
                utterances += 1
            }
        }
        Recognizer.forEachBlock(of: samples, sampleRate: sampleRate) { collect(accept($0)) }
        collect(finish())
        return (Transcript(text: texts.joined(separator: " "), words: words), utterances)
    }

    // MARK: - Inspection (tests)

    /// Samples held by the session itself (the fixed history), and the samples fed to the running
    /// stream since its segment started: both must stay bounded on an endless stream.
    var heldSamples: Int { ring.count + feed.capacity }
    var runningSegmentSamples: Int { active ? processed - segmentStart : 0 }
    /// Endpoint decisions (or gate closures) a batched session took before its block's last frame,
    /// where a frame-by-frame session would have acted with less audio fed: `safeFrames` must keep it 0.
    private(set) var earlyDecisions = 0
    /// Blocks of more than one frame a batched session stepped (the speed-up exists only if some were).
    private(set) var batchedBlocks = 0
    var isModelRunning: Bool { active }
}

/// Why a `StreamingSession` refused a request.
public enum StreamingSessionError: Error, CustomStringConvertible, Equatable {
    case sampleRateMismatch(session: Int, recognizer: Int)

    public var description: String {
        switch self {
        case .sampleRateMismatch(let session, let recognizer):
            "the replacement model expects \(recognizer) Hz audio but this session receives \(session) Hz; load a \(session) Hz model or start a new session at \(recognizer) Hz"
        }
    }
}
