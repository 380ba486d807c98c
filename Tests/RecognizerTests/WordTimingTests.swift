import Decoding
import Features
import Foundation
import Model
@testable import Recognizer
import Tensors
import Testing
import TestSupport

/// A model's `WordTiming`: the correction every reported word time gets, and its measurement.
@Suite struct WordTimingTests {
    static func word(_ text: String, _ start: Double, _ end: Double) -> Word {
        Word(text: text, start: start, end: end, confidence: 0.5)
    }

    /// Figures worked by hand: starts move 160 ms earlier and ends 40 ms, never below 0; "a" would then
    /// end after "b" starts, so its end is cut back to that start.
    @Test func correctionMovesWordsEarlierAndKeepsThemApart() {
        let raw = Transcript(words: [Self.word("a", 0.10, 0.30), Self.word("b", 0.32, 0.50), Self.word("c", 0.90, 1.00)])
        let corrected = raw.correctingTiming(WordTiming(startDelayMs: 160, endDelayMs: 40))
        #expect(corrected.text == "a b c")
        let times = corrected.words.map { [$0.start, $0.end] }
        let expected: [[Double]] = [[0, 0.16], [0.16, 0.46], [0.74, 0.96]]
        for (t, e) in zip(times, expected) {
            #expect(abs(t[0] - e[0]) < 1e-12 && abs(t[1] - e[1]) < 1e-12, "\(times) != \(expected)")
        }
        #expect(corrected.words.map(\.confidence) == [0.5, 0.5, 0.5])
        // A model that emits early (a negative delay) moves words later; an end never precedes its start.
        let early = Transcript(words: [Self.word("d", 0.2, 0.21)]).correctingTiming(WordTiming(startDelayMs: -50, endDelayMs: 100))
        #expect(early.words.map { [$0.start, $0.end] } == [[0.25, 0.25]])
        // Uncalibrated: untouched.
        #expect(raw.correctingTiming(nil) == raw)
    }

    /// Every path that reports words (a stream's final and partial, whole-recording transcription split
    /// at pauses, a session's finals and their speech spans) reports them corrected, and calibration's
    /// own path reads the raw times.
    @Test func everyReportedTimeIsCorrected() throws {
        let tiny = try TinyModel.shared()
        let raw = try Recognizer(model: tiny.trained)
        var timedModel = tiny.trained
        let timing = WordTiming(startDelayMs: 60, endDelayMs: 30)
        timedModel.description.timing = timing
        let timed = try Recognizer(model: timedModel)
        let samples = RecognizerTests.longSpeech(tiny)

        let before = raw.recognize(samples).transcript, after = timed.recognize(samples).transcript
        try #require(before.words.contains { $0.start > 0.1 }, "the test needs words to move: '\(before.text)'")
        #expect(after == before.correctingTiming(timing))
        #expect(after != before)
        #expect(timed.recognizeRaw(samples) == before)

        let split = (raw.transcribe(samples, splitAtPauses: true).transcript, timed.transcribe(samples, splitAtPauses: true).transcript)
        try #require(split.0.words.count >= 6, "split at pauses, the words should come one by one: '\(split.0.text)'")
        #expect(split.1.text == split.0.text)
        for (b, a) in zip(split.0.words, split.1.words) {
            // Each utterance is corrected on its own, then placed in the recording: a start moves by the
            // delay unless that would cross its utterance's start (clamped there), an end by its delay.
            #expect(a.start <= b.start && a.start >= b.start - 0.06 - 1e-9, "\(b) -> \(a)")
            #expect(a.end <= max(a.start, b.end - 0.03) + 1e-9, "\(b) -> \(a)")
        }
        #expect(zip(split.0.words, split.1.words).contains { abs($1.start - ($0.start - 0.06)) < 1e-9 })

        var rng = SeededGenerator(state: 5)
        let rawEvents = run(StreamingSession(recognizer: raw), samples, maxChunk: 3000, rng: &rng)
        rng = SeededGenerator(state: 5)
        let timedEvents = run(StreamingSession(recognizer: timed), samples, maxChunk: 3000, rng: &rng)
        let (rawFinals, timedFinals) = (rawEvents.finals, timedEvents.finals)
        try #require(rawFinals.count >= 6 && rawFinals.count == timedFinals.count)
        for (b, a) in zip(rawFinals, timedFinals) {
            #expect(a.segment == b.segment && a.transcript.text == b.transcript.text)
            let segmentStart = Double(b.segment.lowerBound) / Double(raw.sampleRate)
            #expect(abs(a.start - max(segmentStart, b.start - 0.06)) < 1e-9, "start \(b.start) -> \(a.start)")
            #expect(abs(a.end - max(a.start, b.end - 0.03)) < 1e-9, "end \(b.end) -> \(a.end)")
            let expected = b.transcript.shifted(by: -segmentStart).correctingTiming(timing).shifted(by: segmentStart)
            // (Shifting to the segment and back rounds in the last bits.)
            #expect(a.transcript.words.count == expected.words.count && zip(a.transcript.words, expected.words).allSatisfy {
                $0.text == $1.text && abs($0.start - $1.start) < 1e-9 && abs($0.end - $1.end) < 1e-9 && $0.confidence == $1.confidence
            }, "\(a.transcript) != \(expected)")
        }
        let (rawPartials, timedPartials) = (rawEvents.partials, timedEvents.partials)
        try #require(!rawPartials.isEmpty && rawPartials.count == timedPartials.count)
        for (b, a) in zip(rawPartials, timedPartials) { #expect(a.start <= b.start && a.start >= b.start - 0.06 - 1e-9) }
    }

    /// Calibration counts only recordings with quiet at both ends and a word heard, and measures the
    /// first start and last end against the sound's edges.
    @Test func measurementNeedsQuietEdgesAndAWord() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let rate = recognizer.sampleRate
        let yes = tiny.word("yes")
        let lead = [Float](repeating: 0, count: rate * 3 / 10), tail = [Float](repeating: 0, count: rate / 2)
        let padded = lead + yes + tail
        let sound = try #require(speechBounds(padded, sampleRate: rate))
        #expect(abs(sound.lowerBound - lead.count) <= rate / 50, "the word's sound starts where it was put")
        let transcript = recognizer.recognizeRaw(padded)
        let first = try #require(transcript.words.first), last = try #require(transcript.words.last)
        let onset = Double(sound.lowerBound) / Double(rate), offset = Double(sound.upperBound) / Double(rate)
        let measured = WordTimingCalibration.measure(padded, with: recognizer)
        #expect(measured == .delays(start: first.start - onset, end: last.end - offset))

        // Speech from the first sample (a tightly cut clip), silence, and noise have no edges to measure.
        #expect(WordTimingCalibration.measure(yes + tail, with: recognizer) == .noQuietEdges)
        #expect(WordTimingCalibration.measure(tail, with: recognizer) == .noQuietEdges)
        var rng = SeededGenerator(state: 9)
        let noise = (0..<rate).map { _ in Float.random(in: -0.3...0.3, using: &rng) }
        #expect(WordTimingCalibration.measure(noise, with: recognizer) == .noQuietEdges)
        // A model that hears nothing.
        let deaf = try Recognizer(model: blankModel(frontend: recognizer.frontendConfig))
        #expect(WordTimingCalibration.measure(padded, with: deaf) == .noWords)
        // A calibrated model is measured raw: its correction is not subtracted twice.
        var timedModel = tiny.trained
        timedModel.description.timing = WordTiming(startDelayMs: 100, endDelayMs: 100)
        #expect(WordTimingCalibration.measure(padded, with: try Recognizer(model: timedModel)) == measured)

        #expect(WordTimingCalibration.median([3, 1, 2]) == 2)
        #expect(WordTimingCalibration.median([4, 1, 2, 3]) == 2.5)
        #expect(WordTimingCalibration.median([]) == nil)
    }
}
