import Decoding

/// When a `StreamingSession` decides that an utterance starts and ends (see docs/endpointing.md for
/// the rules). All durations are seconds of audio; every key may be left out when decoding, and then
/// takes the default below.
public struct EndpointConfig: Sendable, Equatable, Codable {
    /// Non-speech after an utterance's last speech frame that ends the utterance.
    public var trailingSilence: Double = 0.6
    /// An utterance is cut (reason `.maxLength`) once this much audio has passed since its speech start.
    public var maxUtterance: Double = 20
    /// A burst whose speech (first to last speech frame) is shorter than this is not an utterance: it
    /// is dropped without a partial or a final.
    public var minSpeech: Double = 0.08
    /// While in an utterance, a partial result is emitted at least this often (in audio time).
    public var partialInterval: Double = 0.2
    /// An encoder frame is speech when its posterior mass on tokens other than blank and the word
    /// separator exceeds this.
    public var speechThreshold: Double = 0.5
    /// Audio quieter than this (RMS over one encoder frame, dB relative to full scale 1.0) is silence
    /// without consulting the model; after a run of it the model stops running until sound returns.
    /// Digital silence (zeros) is always below it.
    public var silenceLevel: Double = -65
    /// While nobody speaks, the recognition stream is restarted after this much non-speech, so a
    /// segment never carries more leading silence than this (and no stage state grows). At least
    /// `minimumLeadingSilence`: a restart keeps `leadingContext` of the silence and must move forward.
    public var maxLeadingSilence: Double = 6
    /// Whether quiet speech is raised to the level the model was trained at: each utterance gets the
    /// gain that the utterances before it call for (`SpeechLevel`); the first is heard as it is. The
    /// silence level keeps judging the audio as it arrives.
    public var autoLevel: Bool = true

    /// Seconds of audio before speech (after gated silence or a restart) that a segment keeps as
    /// leading context, rounded up to whole encoder frames (0.32 s for 40 ms frames).
    public static let leadingContext = 0.3
    /// The smallest `maxLeadingSilence` accepted: the leading context rounded up to whole frames plus
    /// one block, for encoder frames up to 100 ms.
    public static let minimumLeadingSilence = 0.5

    public init() {}

    /// For recordings transcribed whole (`earshot transcribe`, `earshot eval --split-at-pauses`): the
    /// defaults, except that speech without a pause is cut only after 60 s. The cut lands between two
    /// frames, possibly inside a word; live, it bounds how long a final can keep a listener waiting, and
    /// nobody waits on a file. A whole recording is levelled at once (`RecordingLevel`), so not
    /// utterance by utterance.
    public static let recording = EndpointConfig(maxUtterance: 60, autoLevel: false)

    public init(trailingSilence: Double = 0.6, maxUtterance: Double = 20, minSpeech: Double = 0.08,
                partialInterval: Double = 0.2, speechThreshold: Double = 0.5, silenceLevel: Double = -65,
                maxLeadingSilence: Double = 6, autoLevel: Bool = true) {
        self.trailingSilence = trailingSilence
        self.maxUtterance = maxUtterance
        self.minSpeech = minSpeech
        self.partialInterval = partialInterval
        self.speechThreshold = speechThreshold
        self.silenceLevel = silenceLevel
        self.maxLeadingSilence = maxLeadingSilence
        self.autoLevel = autoLevel
    }

    // Missing keys take the defaults; Swift's synthesised decoding would reject them.
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        trailingSilence = try c.decodeIfPresent(Double.self, forKey: .trailingSilence) ?? d.trailingSilence
        maxUtterance = try c.decodeIfPresent(Double.self, forKey: .maxUtterance) ?? d.maxUtterance
        minSpeech = try c.decodeIfPresent(Double.self, forKey: .minSpeech) ?? d.minSpeech
        partialInterval = try c.decodeIfPresent(Double.self, forKey: .partialInterval) ?? d.partialInterval
        speechThreshold = try c.decodeIfPresent(Double.self, forKey: .speechThreshold) ?? d.speechThreshold
        silenceLevel = try c.decodeIfPresent(Double.self, forKey: .silenceLevel) ?? d.silenceLevel
        maxLeadingSilence = try c.decodeIfPresent(Double.self, forKey: .maxLeadingSilence) ?? d.maxLeadingSilence
        autoLevel = try c.decodeIfPresent(Bool.self, forKey: .autoLevel) ?? d.autoLevel
    }

    /// The longest any of the durations may be, in seconds.
    public static let longestSetting = 86_400.0

    /// Checks every field; a `StreamingSession` refuses (traps on) a configuration that fails this,
    /// so call it where the configuration is read.
    public func validate() throws(EndpointConfigError) {
        func positive(_ value: Double, _ name: String) throws(EndpointConfigError) {
            guard value.isFinite, value > 0 else { throw .invalidField(name, value: value, reason: "must be a positive number of seconds") }
            // These become sample counts in integers: a day is far beyond any use and far from overflow.
            guard value <= Self.longestSetting else {
                throw .invalidField(name, value: value, reason: "must be at most \(Int(Self.longestSetting)) seconds (a day)")
            }
        }
        try positive(trailingSilence, "trailingSilence")
        try positive(maxUtterance, "maxUtterance")
        try positive(partialInterval, "partialInterval")
        try positive(maxLeadingSilence, "maxLeadingSilence")
        guard maxLeadingSilence >= Self.minimumLeadingSilence else {
            throw .invalidField("maxLeadingSilence", value: maxLeadingSilence,
                                reason: "must be at least \(Self.minimumLeadingSilence) s: a restart keeps \(Self.leadingContext) s (rounded up to whole encoder frames) of the silence as leading context and must still move on by a block")
        }
        guard minSpeech.isFinite, minSpeech >= 0, minSpeech <= Self.longestSetting else {
            throw .invalidField("minSpeech", value: minSpeech, reason: "must be zero or a positive number of seconds")
        }
        guard minSpeech < maxUtterance else {
            throw .invalidField("minSpeech", value: minSpeech, reason: "must be shorter than maxUtterance (\(maxUtterance) s), or no utterance could ever start")
        }
        guard speechThreshold.isFinite, speechThreshold > 0, speechThreshold < 1 else {
            throw .invalidField("speechThreshold", value: speechThreshold, reason: "is a probability and must lie strictly between 0 and 1")
        }
        guard silenceLevel.isFinite, silenceLevel <= 0 else {
            throw .invalidField("silenceLevel", value: silenceLevel, reason: "is in dB below full scale and must be 0 or negative (e.g. -65)")
        }
        // Below about -450 dB the power threshold is 0 in Float, and digital silence would no longer be
        // below it: the model would run through every zero.
        guard silenceLevel >= -300 else {
            throw .invalidField("silenceLevel", value: silenceLevel, reason: "must be at least -300 dB (no audio is quieter than that but digital silence, which is always below the level)")
        }
    }
}

/// A bad `EndpointConfig` field, named with its value and what is expected.
public enum EndpointConfigError: Error, CustomStringConvertible, Equatable {
    case invalidField(String, value: Double, reason: String)

    public var description: String {
        switch self {
        case .invalidField(let name, let value, let reason): "endpoint setting \(name) = \(value) \(reason)"
        }
    }
}

/// Why an utterance ended.
public enum EndpointReason: String, Sendable, Equatable, Codable {
    /// `trailingSilence` of non-speech followed its speech.
    case silence
    /// It reached `maxUtterance`.
    case maxLength
    /// `finish()` was called with the utterance in flight.
    case endOfStream
}

/// What a `StreamingSession` reports. Times are seconds from the session's start (the first sample
/// after `init` or the last `finish()`); utterances are numbered 0, 1, 2, ... in that time.
public enum RecognitionEvent: Sendable, Equatable {
    /// The current best text of utterance `utterance`, whose speech started at `start`.
    case partial(utterance: Int, text: String, start: Double)
    /// The utterance's final result. `start` and `end` bound its speech (first and last speech frame);
    /// word times are session times. `segment` is the span of session samples (at the recogniser's
    /// sample rate) that was recognised: `transcript.text` is exactly what a fresh stream fed
    /// `samples[segment]` gives when finished as the utterance ended (`finishReleased()` after `.silence`,
    /// else `finish()`, i.e. `recognizer.recognize`), and the words are that transcript's words shifted by
    /// `segment.lowerBound / sampleRate` seconds. The segment may start
    /// before `start` (leading context) and ends after `end` (the trailing silence that ended it).
    /// `start` and `end` are the first and last speech frames, moved by the model's `WordTiming` when it
    /// has one (as its words are; `start` not before the segment).
    case final(utterance: Int, transcript: Transcript, start: Double, end: Double, segment: Range<Int>)
    /// The utterance ended; `at` is how much audio had been accepted when that was decided.
    /// Always follows the utterance's `final` in the same batch of events.
    case endpoint(utterance: Int, reason: EndpointReason, at: Double)

    /// The same event from a session that began `seconds` (`samples` at the recogniser's rate) into a
    /// longer stream, after `utterances` utterances of earlier sessions: how a stream cut into sessions
    /// (the microphone across a lost device) keeps one timeline and one numbering.
    public func shifted(seconds: Double, samples: Int, utterances: Int) -> RecognitionEvent {
        switch self {
        case .partial(let u, let text, let start):
            return .partial(utterance: u + utterances, text: text, start: start + seconds)
        case .final(let u, let transcript, let start, let end, let segment):
            return .final(utterance: u + utterances, transcript: transcript.shifted(by: seconds), start: start + seconds,
                          end: end + seconds, segment: (segment.lowerBound + samples)..<(segment.upperBound + samples))
        case .endpoint(let u, let reason, let at):
            return .endpoint(utterance: u + utterances, reason: reason, at: at + seconds)
        }
    }
}
