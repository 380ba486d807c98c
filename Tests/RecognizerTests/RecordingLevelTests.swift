import Foundation
import Recognizer
import Testing

/// The level measures against closed forms: a sine of amplitude A has peak 20 log10 A and RMS 3.01 dB
/// below it in every whole number of periods (a 20 ms frame at 16 kHz holds 20 periods of 1 kHz).
@Suite struct RecordingLevelTests {
    func sine(_ amplitude: Float, seconds: Double = 0.5) -> [Float] {
        (0..<Int(seconds * 16000)).map { amplitude * Float(sin(2 * Double.pi * 1000 * Double($0) / 16000)) }
    }

    @Test func aNormalRecordingIsLeftAlone() {
        let level = RecordingLevel(samples: sine(0.5), sampleRate: 16000)
        #expect(abs(level.loudest! - (20 * log10(0.5) - 10 * log10(2))) < 0.01)
        #expect(abs(level.peak! - 20 * log10(0.5)) < 0.01)
        #expect(level.gainDB == 0 && !level.quietAfterGain)
    }

    @Test func aQuietRecordingIsRaisedToTheTarget() {
        let level = RecordingLevel(samples: sine(0.005), sampleRate: 16000)
        let loudest = 20 * log10(0.005) - 10 * log10(2)  // -49.03
        #expect(abs(level.gainDB - (RecordingLevel.target - loudest)) < 0.01)
        #expect(!level.quietAfterGain)
        let raised = RecordingLevel(samples: RecordingLevel.apply(level.gainDB, to: sine(0.005)), sampleRate: 16000)
        #expect(abs(raised.loudest! - RecordingLevel.target) < 0.01)
    }

    @Test func theGainIsLimitedAndSaysSo() {
        let level = RecordingLevel(samples: sine(1e-4), sampleRate: 16000)
        #expect(level.gainDB == RecordingLevel.maxGainDB && level.quietAfterGain)
    }

    /// One click in quiet audio: the click's frame is quiet on average, but raising it to the target
    /// would push the click past full scale, so the gain stops at the peak ceiling.
    @Test func noSampleIsRaisedPastThePeakCeiling() {
        var samples = sine(0.001)
        samples[4000] = 0.2
        let level = RecordingLevel(samples: samples, sampleRate: 16000)
        #expect(level.loudest! < RecordingLevel.quietBelow)
        #expect(abs(level.gainDB - (RecordingLevel.peakCeiling - 20 * log10(0.2))) < 0.01)
        let raised = RecordingLevel.apply(level.gainDB, to: samples)
        #expect(abs(20 * log10(Double(raised.map(abs).max()!)) - RecordingLevel.peakCeiling) < 0.01)
    }

    @Test func digitalSilenceHasNoLevelAndNoGain() {
        let level = RecordingLevel(samples: [Float](repeating: 0, count: 8000), sampleRate: 16000)
        #expect(level.loudest == nil && level.peak == nil && level.gainDB == 0 && !level.quietAfterGain)
        #expect(RecordingLevel(samples: [], sampleRate: 16000).gainDB == 0)
    }
}
