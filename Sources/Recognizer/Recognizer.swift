import Decoding
import Features
import Foundation
import Model
import Tensors

/// How to turn encoder output into words: greedy (beam width 1, no LM) or prefix beam search with an
/// optional n-gram LM and hotwords.
public struct DecodingOptions: Sendable {
    public var beam: BeamSearchConfiguration?
    public var languageModel: NGramLanguageModel?

    /// Greedy best-path decoding: the fastest, and what training validation uses.
    public static let greedy = DecodingOptions(beam: nil, languageModel: nil)

    public init(beam: BeamSearchConfiguration?, languageModel: NGramLanguageModel?) {
        self.beam = beam
        self.languageModel = languageModel
    }
}

/// CPU seconds spent in each stage (thread CPU time, so other load on the machine does not count).
public struct StageTimings: Sendable, Equatable {
    public var frontend = 0.0
    public var encoder = 0.0
    public var decoder = 0.0
    public var audioSeconds = 0.0
    public init() {}
    public var total: Double { frontend + encoder + decoder }

    public static func += (a: inout StageTimings, b: StageTimings) {
        a.frontend += b.frontend; a.encoder += b.encoder; a.decoder += b.decoder; a.audioSeconds += b.audioSeconds
    }
}

/// A loaded model ready to recognise: the frontend configuration, the encoder with its parameters,
/// the vocabulary and the decoding options. Immutable and shareable across threads; each audio stream
/// gets its own `RecognitionStream`.
public final class Recognizer: Sendable {
    public let model: ModelFile
    public let frontendConfig: FrontendConfig
    public let encoder: Encoder
    public let vocabulary: Vocabulary
    public let options: DecodingOptions
    /// Seconds of audio per encoder output frame (frontend hop x subsampling).
    public let frameDuration: Double

    /// Refuses (with `ModelError.malformedMetadata` naming the file and the `frontend` key) a model
    /// whose frontend normalises each utterance over its whole length (`perFeature`): every path
    /// through a `Recognizer` streams, and such a model can only run offline.
    public init(model: ModelFile, options: DecodingOptions = .greedy, file: String = "<memory>") throws(ModelError) {
        var config = try model.description.frontendConfig(file: file)
        // Global CMVN is applied by the encoder from the model's statistics tensors.
        if config.normalization == .global { config.normalization = .none }
        if config.normalization == .perFeature {
            throw .malformedMetadata(file: file, key: "frontend", reason: Self.perFeatureRefusal)
        }
        // Anything else the streaming frontend refuses is refused here, so `makeStream` cannot fail.
        do { try config.validate(streaming: true) } catch {
            throw .malformedMetadata(file: file, key: "frontend", reason: error.description)
        }
        self.model = model
        self.frontendConfig = config
        self.encoder = try Encoder(model: model, file: file)
        // Each stream's history is sized from these (StreamingSession.configureSizes): each is checked
        // alone by the model's own validation, but their product from a damaged file could ask every
        // session for gigabytes. No speech model has frames over a second or a look-ahead over 10 s.
        let rate = Double(config.sampleRate)
        let frameSeconds = Double(config.hopLength * encoder.subsampling) / rate
        let lookAheadSeconds = Double(encoder.lookAheadFrames * config.hopLength) / rate
        guard frameSeconds <= 1, lookAheadSeconds <= 10 else {
            throw .malformedMetadata(file: file, key: "architecture", reason: String(
                format: "encoder frames of %.3g s with a look-ahead of %.3g s (at most 1 s and 10 s): not a speech model, or a damaged file",
                frameSeconds, lookAheadSeconds))
        }
        self.vocabulary = Self.vocabulary(of: model)
        self.options = options
        self.frameDuration = Self.encoderFrameDuration(frontend: config, subsampling: encoder.subsampling)
    }

    /// The model's output tokens as a decoding vocabulary: blank at 0, the word separator where " " is.
    public static func vocabulary(of model: ModelFile) -> Vocabulary {
        Vocabulary(ctcTokens: model.description.vocabulary)
    }

    static let perFeatureRefusal = "normalization is perFeature: per-utterance normalisation is offline-only; Earshot recognises in streaming mode, so re-export the model with global statistics (frontend.mean/frontend.std tensors)"

    /// Seconds of audio per encoder output frame: the frontend's hop times the encoder's subsampling.
    public static func encoderFrameDuration(frontend: FrontendConfig, subsampling: Int) -> Double {
        frontend.encoderFrameDuration(subsampling: subsampling)
    }

    /// Loads a model file and builds a recogniser for it.
    public convenience init(modelPath: String, options: DecodingOptions = .greedy) throws(ModelError) {
        try self.init(model: try ModelFile.load(path: modelPath), options: options, file: modelPath)
    }

    public var sampleRate: Int { frontendConfig.sampleRate }

    /// A fresh stream: push samples (at `sampleRate`), read partial results, finish for the final one.
    public func makeStream() -> RecognitionStream { RecognitionStream(recognizer: self) }

    /// Recognises one whole utterance (samples at `sampleRate`). The audio goes into a stream in
    /// blocks of `recognizeBlockSeconds`, so the working memory of every stage is bounded by a block
    /// whatever the length of the file; the result is what any chunking gives (see `RecognitionStream`).
    public func recognize(_ samples: [Float]) -> (transcript: Transcript, timings: StageTimings) {
        let (transcript, stream) = recognizeReturningStream(samples)
        return (transcript, stream.timings)
    }

    /// Seconds of audio `recognize` pushes into its stream at a time: long enough that per-call
    /// overheads vanish, short enough that the encoder's buffers (frames x channels per layer) stay small.
    public static let recognizeBlockSeconds = 4.0

    /// `correctTiming` false keeps the model's own emission times (not corrected by its `WordTiming`):
    /// what calibration measures.
    func recognizeReturningStream(_ samples: [Float], correctTiming: Bool = true) -> (Transcript, RecognitionStream) {
        let stream = makeStream()
        Self.forEachBlock(of: samples, sampleRate: sampleRate) { stream.accept($0) }
        return (stream.finishReturningLogits(correctTiming: correctTiming).transcript, stream)
    }

    /// `recognize` with the model's own emission times: see `recognizeReturningStream`.
    func recognizeRaw(_ samples: [Float]) -> Transcript { recognizeReturningStream(samples, correctTiming: false).0 }

    /// How late the model places words (from its file; nil when never calibrated). Every transcript a
    /// stream hands out has its word times corrected by it.
    public var timing: WordTiming? { model.description.timing }

    /// `samples` in consecutive blocks of `recognizeBlockSeconds`, the last one shorter.
    static func forEachBlock(of samples: [Float], sampleRate: Int, _ body: ([Float]) -> Void) {
        let block = max(1, Int(recognizeBlockSeconds * Double(sampleRate)))
        var start = 0
        while start < samples.count {
            let end = min(samples.count, start + block)
            body(Array(samples[start..<end]))
            start = end
        }
    }

    /// A whole recording, as `earshot transcribe` reads one: split into utterances at its pauses by a
    /// `StreamingSession` with `EndpointConfig.recording`, as earshotd hears it live, or (`splitAtPauses`
    /// false) decoded as one utterance by `recognize`.
    /// Word times end within the audio: the last frames are computed over the padding past its end, so
    /// a word running up to the end would otherwise end up to a frame after it.
    /// `gainDB` raises the audio the model hears (`RecordingLevel.gainDB` levels a quiet recording);
    /// the silence level moves with it, so what counts as silence is judged on the recording as it is.
    /// It lies in 0 ... `RecordingLevel.maxGainDB`.
    public func transcribe(_ samples: [Float], splitAtPauses: Bool, gainDB: Double = 0) -> (transcript: Transcript, timings: StageTimings) {
        precondition(gainDB >= 0 && gainDB <= RecordingLevel.maxGainDB, "gain \(gainDB) dB outside 0 ... \(RecordingLevel.maxGainDB)")
        let raised = RecordingLevel.apply(gainDB, to: samples)
        let (transcript, timings): (Transcript, StageTimings)
        if splitAtPauses {
            var config = EndpointConfig.recording
            config.silenceLevel += gainDB
            let session = StreamingSession(recognizer: self, config: config, batched: true)
            (transcript, timings) = (session.transcribe(raised).transcript, session.timings)
        } else {
            (transcript, timings) = recognize(raised)
        }
        let duration = Double(samples.count) / Double(sampleRate)
        return (Transcript(text: transcript.text, words: transcript.words.map {
            Word(text: $0.text, start: min($0.start, duration), end: min($0.end, duration), confidence: $0.confidence)
        }), timings)
    }

    func makeDecoder() -> AnyDecoder {
        if let beam = options.beam {
            return .beam(BeamSearchDecoder(vocabulary: vocabulary, frameDuration: frameDuration,
                                           configuration: beam, languageModel: options.languageModel))
        }
        return .greedy(GreedyDecoder(vocabulary: vocabulary, frameDuration: frameDuration))
    }
}

/// The decoders behind one enum so the hot path has no existential boxing.
enum AnyDecoder {
    case greedy(GreedyDecoder)
    case beam(BeamSearchDecoder)

    mutating func accept(_ logits: Matrix) {
        switch self {
        case .greedy(var d): d.accept(logits); self = .greedy(d)
        case .beam(var d): d.accept(logits); self = .beam(d)
        }
    }

    func partial() -> Transcript {
        switch self {
        case .greedy(let d): return d.partial()
        case .beam(let d): return d.partial()
        }
    }

    mutating func reset() {
        switch self {
        case .greedy(var d): d.reset(); self = .greedy(d)
        case .beam(var d): d.reset(); self = .beam(d)
        }
    }

    mutating func finalize() -> Transcript {
        switch self {
        case .greedy(var d): let t = d.finalize(); self = .greedy(d); return t
        case .beam(var d): let t = d.finalize(); self = .beam(d); return t
        }
    }
}

/// One audio stream through the whole pipeline: its own frontend, streaming encoder state and decoder
/// beams. Push any number of samples; `partial()` gives the current best; `finish()` ends the
/// utterance and gives its final transcript: the same words and word times as offline recognition of
/// the same samples, with confidences equal to float32 rounding (about 1e-8 here). Every stage computes
/// the same values under any chunking, but the encoder's matrix products are blocked by the rows each
/// call gets (and by OpenBLAS's thread count), so logits differ in their last bits; see
/// EndToEndTests' `confidenceTolerance`. Not thread-safe: one owner at a time.
public final class RecognitionStream {
    public let recognizer: Recognizer
    private let frontend: LogMelFrontend
    private var encoderState: StreamingEncoder
    private var decoder: AnyDecoder
    /// CPU time per stage since the stream was made.
    public private(set) var timings = StageTimings()
    /// The most samples one `accept` handed on (tests check that `recognize` keeps it to a block).
    private(set) var largestPush = 0

    init(recognizer: Recognizer) {
        self.recognizer = recognizer
        // `Recognizer.init` validated the configuration for streaming, so this cannot fail.
        self.frontend = try! LogMelFrontend(config: recognizer.frontendConfig, mode: .streaming)
        self.encoderState = recognizer.encoder.makeStream()
        self.decoder = recognizer.makeDecoder()
    }

    /// Pushes samples at the recogniser's sample rate.
    public func accept(_ samples: [Float]) {
        pushSamples(samples)
    }

    /// `accept`, also handing back the encoder logits (frames x vocabulary) the samples completed:
    /// endpointing (`StreamingSession`) reads the CTC posteriors of the very stream it decodes.
    @discardableResult
    func pushSamples(_ samples: [Float]) -> Matrix {
        timings.audioSeconds += Double(samples.count) / Double(recognizer.sampleRate)
        largestPush = max(largestPush, samples.count)
        var t = threadCPUTime()
        frontend.accept(samples)
        let frames = frontend.pullFrames()
        var now = threadCPUTime(); timings.frontend += now - t; t = now
        let logits = encoderState.accept(frames)
        now = threadCPUTime(); timings.encoder += now - t; t = now
        decoder.accept(logits)
        timings.decoder += threadCPUTime() - t
        return logits
    }

    /// Forgets the utterance in flight without flushing or decoding it (cheaper than `finish` when the
    /// audio is to be discarded, as endpointing does with non-speech).
    func reset() {
        frontend.reset()
        encoderState.reset()
        decoder.reset()
    }

    /// The current best transcript of the utterance so far.
    public func partial() -> Transcript { decoder.partial().correctingTiming(recognizer.timing) }

    /// Ends the utterance: flushes every stage and returns the final transcript. The stream is then
    /// ready for the next utterance (times restart at zero).
    public func finish() -> Transcript {
        finishReturningLogits().transcript
    }

    /// Ends the utterance at the frames released so far, without flushing: the audio after them, heard
    /// only as their look-ahead, is left undecoded, and the stream is ready for the next utterance.
    /// Endpointing ends an utterance this way in silence, where the next segment starts before that
    /// audio and decodes it: flushed here, a word starting just after the pause would be decoded twice,
    /// its onset run onto this utterance's last word ("leftr", then "right").
    public func finishReleased() -> Transcript {
        let t = threadCPUTime()
        let transcript = decoder.finalize()
        timings.decoder += threadCPUTime() - t
        frontend.reset()
        encoderState.reset()
        return transcript.correctingTiming(recognizer.timing)
    }

    /// `finish`, also handing back the logits of the flushed tail frames; word times corrected by the
    /// model's `WordTiming` unless `correctTiming` is false.
    func finishReturningLogits(correctTiming: Bool = true) -> (transcript: Transcript, logits: Matrix) {
        var t = threadCPUTime()
        frontend.finish()
        let frames = frontend.pullFrames()
        var now = threadCPUTime(); timings.frontend += now - t; t = now
        var logits = encoderState.accept(frames)
        logits.append(rowsOf: encoderState.finish())
        now = threadCPUTime(); timings.encoder += now - t; t = now
        decoder.accept(logits)
        let transcript = decoder.finalize()
        timings.decoder += threadCPUTime() - t
        frontend.reset()
        return (correctTiming ? transcript.correctingTiming(recognizer.timing) : transcript, logits)
    }
}

/// CPU time of the calling thread, in seconds (CLOCK_THREAD_CPUTIME_ID: other load on the machine
/// does not count, which is what per-stage timings and benchmarks want).
public func threadCPUTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
