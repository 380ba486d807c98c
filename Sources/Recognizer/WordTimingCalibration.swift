import Decoding
import Features
import Model

extension Transcript {
    /// The words moved to where the audio has them: each start `timing.startDelayMs` earlier and each end
    /// `timing.endDelayMs` earlier (a CTC model emits letters after their sound), never before 0, an end
    /// never before its start. Starts move more than ends, so a word could begin before the previous one
    /// ends: that end is cut back to the start (not below its own start), as word spans never overlap.
    public func correctingTiming(_ timing: WordTiming?) -> Transcript {
        guard let timing, !words.isEmpty else { return self }
        let startShift = timing.startDelayMs / 1000, endShift = timing.endDelayMs / 1000
        var corrected: [Word] = []
        corrected.reserveCapacity(words.count)
        for w in words {
            var start = max(0, w.start - startShift)
            if let previous = corrected.last {
                // Raw starts are in order and move by the same amount, so this only guards float rounding.
                start = max(start, previous.start)
                corrected[corrected.count - 1].end = max(previous.start, min(previous.end, start))
            }
            corrected.append(Word(text: w.text, start: start, end: max(start, w.end - endShift), confidence: w.confidence))
        }
        return Transcript(text: text, words: corrected)
    }
}

/// Measuring a model's word timing (`WordTiming`) on recordings whose speech is known: each recording is
/// recognised whole, and its first word's start and last word's end are compared with where its sound
/// begins and ends (`speechBounds`: the 10 ms frames within 40 dB of the loudest). That rule needs
/// quiet around the speech, so only clean recordings with silence at both ends count; noisy ones,
/// tightly cut ones and ones the model hears no word in are skipped. The medians over the recordings
/// are the delays: the model's emission lag is much the same for every word (on espeak-ng words spoken
/// with pauses between them, the first word's start and the inner words' starts lagged by a median of
/// 165 and 160 ms), so a file's edges measure it for all of them.
public enum WordTimingCalibration {
    /// Quiet needed before the first loud frame for a recording to count.
    public static let minimumLeadingSeconds = 0.05
    /// Quiet needed after the last loud frame: more than the end delay being measured (the shipped
    /// model's is 70 ms) plus a frame, so that a recording ending soon after its speech cannot cap it.
    public static let minimumTrailingSeconds = 0.15

    /// One recording's measurement: how late the model placed the first word's start and the last word's
    /// end (seconds), or why it was skipped.
    public enum Measurement: Sendable, Equatable {
        case delays(start: Double, end: Double)
        case noQuietEdges
        case noWords
    }

    /// Measures one recording (samples at the recogniser's rate). The recogniser's own correction, if its
    /// model has one, is left out: this measures the raw emission times.
    public static func measure(_ samples: [Float], with recognizer: Recognizer) -> Measurement {
        let rate = recognizer.sampleRate
        guard let speech = speechBounds(samples, sampleRate: rate) else { return .noQuietEdges }
        guard speech.lowerBound >= Int(minimumLeadingSeconds * Double(rate)),
              samples.count - speech.upperBound >= Int(minimumTrailingSeconds * Double(rate)) else { return .noQuietEdges }
        // The model hears the recording as `earshot transcribe` gives it: a quiet one levelled.
        let gain = RecordingLevel(samples: samples, sampleRate: rate).gainDB
        let words = recognizer.recognizeRaw(RecordingLevel.apply(gain, to: samples)).words
        guard let first = words.first, let last = words.last else { return .noWords }
        return .delays(start: first.start - Double(speech.lowerBound) / Double(rate),
                       end: last.end - Double(speech.upperBound) / Double(rate))
    }

    /// The median of `values` (the mean of the middle two for an even count); nil when empty.
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted(), mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}
