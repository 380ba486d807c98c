import Foundation

/// The level of a whole recording, and the gain that brings a quiet one up to the levels the model
/// was trained on. The training corpus is peak-normalised to -1 ... -20 dBFS (corpus/augment.py), and
/// the model's features are log-mels without per-utterance normalisation, so a recording far below
/// that reaches the model as an unfamiliar offset on every feature: it loses words (on one file, 65
/// words at full level, 29 at -37 dBFS, none at -51). Only a whole recording can be levelled this
/// way, with one gain known before the first sample: live audio has no future to measure. Loud
/// recordings are left alone: lowering them to the target measured no better (fsdd 6 dB up: 79.0 %
/// as is, 77.0 % lowered; as recorded: 75.5 % and 76.5 %).
public struct RecordingLevel: Sendable, Equatable {
    /// RMS level (dBFS) of the loudest 20 ms; nil for digital silence.
    public let loudest: Double?
    /// Level (dBFS) of the largest sample; nil for digital silence.
    public let peak: Double?

    /// Below this loudest-20-ms level a recording is quiet enough to cost words. Measured with
    /// `earshot eval --split-at-pauses` (greedy) on fsdd's 200 test recordings made quieter with sox:
    /// 75.5 % WER as they are; 10 dB down, 82.5 % as is and 76.0 % raised; 20 dB down 85.5 % and 75.5 %;
    /// 40 dB down 100 % and 80.5 %. -35 left the 10 dB case unraised; -24 also gained 0.5 points on the
    /// synthetic test subset (54.06 % to 53.53 %), whose quieter voices fall under it.
    public static let quietBelow = -24.0
    /// Where a quiet recording's loudest 20 ms is brought: inside the range of the training corpus
    /// (its peaks at -1 ... -20 dBFS put the loudest 20 ms at about -8 ... -30).
    public static let target = -18.0
    /// The largest gain applied: beyond it is mostly the noise floor, and a transcript of that is no help.
    public static let maxGainDB = 45.0
    /// No sample is raised above this (dBFS): the corpus never clips, and neither should we.
    public static let peakCeiling = -1.0

    public init(samples: [Float], sampleRate: Int) {
        let frame = max(1, sampleRate / 50)
        var loudest = 0.0, peak: Float = 0
        var start = 0
        while start < samples.count {
            let end = min(start + frame, samples.count)
            var sum = 0.0
            for i in start..<end {
                sum += Double(samples[i]) * Double(samples[i])
                peak = max(peak, abs(samples[i]))
            }
            loudest = max(loudest, sum / Double(end - start))
            start = end
        }
        self.loudest = loudest > 0 ? 10 * log10(loudest) : nil
        self.peak = peak > 0 ? 20 * log10(Double(peak)) : nil
    }

    /// The gain (dB, 0 or more) that levels this recording: 0 unless it is quiet, else what brings its
    /// loudest 20 ms to `target`, limited by `maxGainDB` and by the peak's headroom to `peakCeiling`.
    public var gainDB: Double {
        guard let loudest, let peak else { return 0 }
        return Self.gainDB(loudest: loudest, peak: peak)
    }

    /// The levelling rule for speech whose loudest 20 ms and largest sample are at these levels (dBFS).
    public static func gainDB(loudest: Double, peak: Double) -> Double {
        guard loudest < quietBelow else { return 0 }
        return max(0, min(target - loudest, maxGainDB, peakCeiling - peak))
    }

    /// Whether the recording is still quiet after `gainDB` (the gain was limited).
    public var quietAfterGain: Bool {
        guard let loudest else { return false }
        return loudest + gainDB < Self.quietBelow
    }

    /// `samples` raised by `gainDB` (the same array when it is 0).
    public static func apply(_ gainDB: Double, to samples: [Float]) -> [Float] {
        guard gainDB > 0 else { return samples }
        let factor = Float(pow(10, gainDB / 20))
        return samples.map { $0 * factor }
    }
}

/// The level of live speech, learnt from the utterances heard so far, for levelling the next ones as
/// `RecordingLevel` levels a whole recording: a live stream has no future to measure, but a microphone's
/// level changes slowly, so what the last utterances had is what the next will have. A louder
/// utterance is taken at once (raising loud speech would push it past what the model knows, and past
/// full scale); a quieter one moves the level half way, so one soft word does not raise the next.
public struct SpeechLevel: Sendable, Equatable {
    /// Averaged loudest-20-ms level and peak (dBFS) of the utterances heard; nil before the first.
    public private(set) var loudest: Double?
    public private(set) var peak: Double?

    public init() {}

    /// Takes in one utterance's loudest 20 ms (mean square) and largest sample (absolute value);
    /// digital silence is ignored.
    public mutating func hear(meanSquare: Float, peakSample: Float) {
        guard meanSquare > 0, peakSample > 0 else { return }
        let l = 10 * log10(Double(meanSquare)), p = 20 * log10(Double(peakSample))
        func follow(_ old: Double?, _ new: Double) -> Double { old.map { new >= $0 ? new : ($0 + new) / 2 } ?? new }
        loudest = follow(loudest, l)
        peak = follow(peak, p)
    }

    /// The gain (dB) for the next utterance: 0 until one was heard.
    public var gainDB: Double {
        guard let loudest, let peak else { return 0 }
        return RecordingLevel.gainDB(loudest: loudest, peak: peak)
    }
}
