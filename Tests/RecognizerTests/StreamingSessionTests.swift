import Decoding
import Features
import Foundation
import Tensors
import Model
import Testing
import TestSupport
@testable import Recognizer
import Training

/// The session on real recognition: a tiny model trained in-process on espeak-ng words, streams of
/// those words with silences between them.
@Suite struct StreamingSessionTests {
    static let sampleRate = 16000.0
    /// Encoder frame (= the session's block): 160-sample hop x 4 subsampling.
    static let block = 640

    /// Offline recognition of `final`'s segment must give its text exactly, and its words shifted to
    /// session time. Times are compared to 1e-9 s (the shift is one addition in double precision);
    /// confidences to 1e-6, though they come out equal here, in case BLAS blocks a one-frame product
    /// differently from a whole-utterance one (float rounding, far below what changes a decision).
    static func expectMatchesOffline(_ final: Final, _ samples: [Float], _ recognizer: Recognizer,
                                     sourceLocation: SourceLocation = #_sourceLocation) {
        let offline = recognizer.offlineReference(samples[final.segment], endedBy: final.reason)
        #expect(final.transcript.text == offline.text, "utterance \(final.utterance), segment \(final.segment)", sourceLocation: sourceLocation)
        let shift = Double(final.segment.lowerBound) / sampleRate
        #expect(final.transcript.words.count == offline.words.count, sourceLocation: sourceLocation)
        for (w, o) in zip(final.transcript.words, offline.words) {
            #expect(w.text == o.text && abs(w.start - (o.start + shift)) < 1e-9 && abs(w.end - (o.end + shift)) < 1e-9
                    && abs(w.confidence - o.confidence) < 1e-6, "\(w) vs offline \(o) shifted by \(shift)", sourceLocation: sourceLocation)
        }
    }

    /// Both ways silence reaches the model: digital zeros (the energy gate shuts, the model stops, the
    /// next word wakes it with 0.3 s of history) and a faint hiss at -120 dBFS with the gate disabled
    /// (the model runs throughout, segments restart at each endpoint with the look-ahead re-fed).
    static let silences: [(name: String, noise: Float, config: EndpointConfig)] = [
        ("gated zeros", 0, EndpointConfig()),
        ("model on hiss", 1e-6, EndpointConfig(silenceLevel: -140)),
    ]

    /// Both silences with the usual 40 ms frames, and gated zeros with a 20 ms model (subsampling 2),
    /// whose session steps in 320-sample blocks.
    @Test(arguments: [(0, 4), (1, 4), (0, 2)])
    func threeWordsBetweenSilencesGiveThreeFinalsEqualToOfflineRecognition(variant: Int, subsampling: Int) throws {
        let tiny = try TinyModel.shared(subsampling: subsampling)
        let (name, noise, config) = Self.silences[variant]
        let recognizer = try Recognizer(model: tiny.trained)
        try #require(recognizer.encoder.subsampling == subsampling)
        let block = 160 * subsampling
        let scene = Scene([.silence(0.5), .word("left"), .silence(1), .word("down"), .silence(1), .word("right"), .silence(1)],
                          model: tiny, noise: noise)
        let session = StreamingSession(recognizer: recognizer, config: config)
        var rng = SeededGenerator(state: 11)
        let events = run(session, scene.samples, maxChunk: 1000, rng: &rng)
        let finals = events.finals
        try #require(finals.count == 3, "\(name): \(events.events)")
        #expect(finals.map(\.transcript.text) == ["left", "down", "right"], "\(name)")
        #expect(finals.map(\.utterance) == [0, 1, 2])
        #expect(events.endpoints.map(\.reason) == [.silence, .silence, .silence])
        // Each endpoint directly follows its final.
        for (i, e) in events.enumerated() {
            if case .final(let u, _, _, _, _) = e.event {
                #expect(i + 1 < events.count && events[i + 1].event == .endpoint(utterance: u, reason: .silence, at: events.endpoints[u].at))
            }
        }
        let lookAhead = Double(recognizer.encoder.lookAheadFrames * 160 + 400 - block) / Self.sampleRate
        // The bounds below are the model's raw emission times (a calibrated model reports them earlier,
        // by its measured delays, and the endpoint's lag after the reported end grows by as much).
        #expect(recognizer.timing == nil, "the bounds below assume an uncalibrated model")
        for (final, word) in zip(finals, scene.words) {
            Self.expectMatchesOffline(final, scene.samples, recognizer)
            let wordStart = Double(word.span.lowerBound) / Self.sampleRate, wordEnd = Double(word.span.upperBound) / Self.sampleRate
            // Speech is where the model emits letters: within the spoken word, give or take a little
            // (the model may emit the last letter up to its 110 ms look-ahead late; 3 frames allowed).
            #expect(final.start >= wordStart - 0.04 && final.start < final.end && final.end <= wordEnd + 0.12,
                    "\(name): speech \(final.start)-\(final.end) for '\(word.text)' at \(wordStart)-\(wordEnd)")
            #expect(final.segment.contains(word.span.lowerBound) && final.segment.contains(word.span.upperBound - 1))
            // The endpoint fires trailingSilence after the last speech frame, plus the encoder's
            // look-ahead and up to one block of rounding.
            let at = events.endpoints[final.utterance].at
            #expect(at == Double(final.segment.upperBound) / Self.sampleRate)
            let latency = at - final.end
            #expect(latency >= config.trailingSilence && latency <= config.trailingSilence + lookAhead + Double(block) / Self.sampleRate + 1e-9,
                    "\(name): endpoint \(latency) s after speech (look-ahead \(lookAhead) s)")
            print("\(name): '\(final.transcript.text)' speech \(final.start)-\(final.end) s, segment \(final.segment), endpoint \(at) s: \(String(format: "%.3f", latency)) s after the speech")
        }
        // Utterances are disjoint in speech; segments overlap only in the silence between them: the
        // look-ahead re-fed into the next segment and up to 0.32 s of leading context before it.
        for (a, b) in zip(finals, finals.dropFirst()) {
            #expect(b.segment.lowerBound >= a.segment.upperBound - Int(lookAhead * Self.sampleRate) - block - 5120)
            #expect(Double(b.segment.lowerBound) / Self.sampleRate > a.end)
        }
    }

    /// Quiet speech (26 dB down, above the gate) is raised from the second utterance on by the gain the
    /// utterances before it call for, and each final equals offline recognition of its segment raised by
    /// that gain; a loud utterance takes the gain back to 0 at once. With `autoLevel` off nothing is raised.
    @Test(arguments: [true, false])
    func quietSpeechIsLevelledByTheUtterancesHeardBeforeIt(autoLevel: Bool) throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let soft = Scene([.silence(0.5), .word("left"), .silence(1), .word("down"), .silence(1), .word("right"), .silence(1)], model: tiny)
        let loud = Scene([.word("up"), .silence(1), .word("left"), .silence(1)], model: tiny)
        let samples = soft.samples.map { $0 * 0.05 } + loud.samples
        let session = StreamingSession(recognizer: recognizer, config: EndpointConfig(autoLevel: autoLevel))
        // One block per call, so a call returns at most one final, and the segment gain read after the
        // call before a final's is the one its segment began with (a segment needs speech and trailing
        // silence after it begins, so the final never comes in the call that began it).
        var finals: [(final: Final, gain: Double)] = [], gainAfter: [Double] = []
        var gain = session.segmentGainDB
        #expect(gain == 0)
        var at = 0
        while at <= samples.count {
            let end = min(samples.count, at + Self.block)
            let events = (end > at ? session.accept(Array(samples[at..<end])) : session.finish()).map { Timed(event: $0, received: end) }
            for f in events.finals {
                finals.append((f, gain))
                gainAfter.append(session.levelGainDB)
            }
            gain = session.segmentGainDB
            at += Self.block
        }
        try #require(finals.count >= 3, "\(finals.map(\.final.transcript.text))")
        let softFinals = finals.filter { $0.final.segment.lowerBound < soft.samples.count }
        try #require(softFinals.count >= 2)
        #expect(finals[0].gain == 0)
        if autoLevel {
            #expect(softFinals.dropFirst().allSatisfy { $0.gain > 10 }, "\(softFinals.map(\.gain))")
            // After a loud utterance nothing is raised.
            #expect(gainAfter.last == 0)
        } else {
            #expect(finals.allSatisfy { $0.gain == 0 } && gainAfter.allSatisfy { $0 == 0 })
        }
        for (final, g) in finals {
            Self.expectMatchesOffline(final, RecordingLevel.apply(g, to: samples), recognizer)
        }
    }

    /// `transcribe` (what `earshot transcribe` does with a file) is the session's finals, joined: the
    /// same text and words, each word inside its own utterance, none running across a silence.
    @Test func transcribeJoinsTheFinalsOfAWholeRecording() throws {
        let tiny = try TinyModel.shared(subsampling: 4)
        let recognizer = try Recognizer(model: tiny.trained)
        let scene = Scene([.silence(0.5), .word("left"), .silence(1), .word("down"), .silence(1), .word("right"), .silence(1)],
                          model: tiny)
        var rng = SeededGenerator(state: 5)
        let finals = run(StreamingSession(recognizer: recognizer), scene.samples, maxChunk: 1000, rng: &rng).finals
        let (transcript, utterances) = StreamingSession(recognizer: recognizer).transcribe(scene.samples)
        #expect(utterances == 3 && finals.count == 3)
        #expect(transcript.text == "left down right")
        #expect(transcript.words == finals.flatMap(\.transcript.words))
        for (word, next) in zip(transcript.words, scene.words.dropFirst()) {
            #expect(word.end <= Double(next.span.lowerBound) / Self.sampleRate, "\(word) runs into '\(next.text)'")
        }
    }

    /// A word that starts while the previous utterance's endpoint is still waiting for its look-ahead
    /// is recognised whole, and once: the next segment starts where the decided silence ends, not where
    /// the audio fed so far ends, and the ending one decodes only its released frames. Which gaps put the onset inside the look-ahead depends on where the
    /// model's letters fall, so a range of gaps is tried and at least one must do it.
    @Test func wordStartingInsideTheLookAheadOfAnEndpointKeepsItsOnset() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let config = EndpointConfig(trailingSilence: 0.3, silenceLevel: -140)
        var overran = 0
        for gap in stride(from: 0.30, through: 0.46, by: 0.02) {
            let scene = Scene([.silence(0.5), .word("left"), .silence(gap), .word("right"), .silence(1)], model: tiny, noise: 1e-6)
            var rng = SeededGenerator(state: 5)
            let events = run(StreamingSession(recognizer: recognizer, config: config), scene.samples, maxChunk: 700, rng: &rng)
            let finals = events.finals
            guard finals.count == 2 else { continue }  // too short a gap to end the utterance
            for f in finals { Self.expectMatchesOffline(f, scene.samples, recognizer) }
            #expect(finals[1].transcript.text == "right", "gap \(gap)")
            #expect(finals[1].segment.lowerBound <= scene.words[1].span.lowerBound, "gap \(gap)")
            // The first segment heard the onset too, as look-ahead, but decodes only its released
            // frames: no fragment of "right" runs onto "left" (it gave "leftr" when flushed).
            if finals[0].segment.upperBound > scene.words[1].span.lowerBound { overran += 1 }
            #expect(finals[0].transcript.text == "left", "gap \(gap)")
        }
        #expect(overran > 0, "no gap put the next word inside the endpoint's look-ahead: the test does not test the overlap")
    }

    @Test func eventsDoNotDependOnChunking() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        for (name, noise, config) in Self.silences {
            let scene = Scene([.silence(0.3), .word("yes"), .silence(0.9), .word("no"), .word("up"), .silence(0.2), .word("down"), .silence(0.8)],
                              model: tiny, noise: noise, seed: 3)
            var reference: [RecognitionEvent]?
            for (i, maxChunk) in [1, 7, 160, 641, 1000, 6000, scene.samples.count].enumerated() {
                var rng = SeededGenerator(state: UInt64(100 + i))
                let events = run(StreamingSession(recognizer: recognizer, config: config), scene.samples, maxChunk: maxChunk, rng: &rng).events
                if let reference {
                    #expect(events == reference, "\(name): chunks up to \(maxChunk) samples")
                } else {
                    reference = events
                    #expect(events.count > 4, "\(name): \(events)")
                }
            }
        }
    }

    /// While speaking, consecutive partials are at most `partialInterval` (+ the chunk in which they
    /// came back) apart, and no closer than the interval minus that chunk: they come at the cadence,
    /// changed or not. Greedy decoding never revises an emitted frame, so each is a prefix of the final.
    @Test(arguments: [0.2, 0.5])
    func partialsComeAtThePartialInterval(interval: Double) throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let config = EndpointConfig(maxUtterance: 60, partialInterval: interval)
        let scene = Scene([.silence(0.4), .word("left"), .silence(0.15), .word("right"), .silence(0.15), .word("down"), .silence(0.15),
                           .word("yes"), .silence(1)], model: tiny)
        let session = StreamingSession(recognizer: recognizer, config: config)
        var rng = SeededGenerator(state: 17)
        let maxChunk = 800
        let events = run(session, scene.samples, maxChunk: maxChunk, rng: &rng)
        let finals = events.finals
        try #require(finals.count == 1, "\(events.events)")
        let partials = events.partials
        let finalAt = events.first { if case .final = $0.event { return true } else { return false } }!.received
        #expect(partials.count >= 5)
        let positions = partials.map(\.received) + [finalAt]
        for (a, b) in zip(positions, positions.dropFirst()) {
            let gap = Double(b - a) / Self.sampleRate
            #expect(gap <= interval + Double(maxChunk) / Self.sampleRate + 1e-9, "partials \(gap) s apart")
        }
        for (a, b) in zip(partials, partials.dropFirst()) {
            // The cadence is counted in whole 40 ms blocks, rounded down.
            #expect(Double(b.received - a.received) / Self.sampleRate >= interval - 0.04 - Double(maxChunk) / Self.sampleRate - 1e-9)
        }
        for p in partials {
            #expect(p.utterance == 0 && p.start == finals[0].start)
            #expect(finals[0].transcript.text.hasPrefix(p.text), "partial '\(p.text)' vs final '\(finals[0].transcript.text)'")
        }
        #expect(partials.last!.text == finals[0].transcript.text)
    }

    @Test func maxUtteranceCutsContinuousSpeech() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let config = EndpointConfig(maxUtterance: 1.5)
        var parts: [Scene.Part] = [.silence(0.3)]
        for w in ["yes", "no", "up", "down", "left", "right", "yes", "no", "up", "down"] { parts += [.word(w), .silence(0.1)] }
        parts.append(.silence(1))
        let scene = Scene(parts, model: tiny)
        let session = StreamingSession(recognizer: recognizer, config: config)
        var rng = SeededGenerator(state: 23)
        let events = run(session, scene.samples, maxChunk: 1200, rng: &rng)
        let finals = events.finals, endpoints = events.endpoints
        // 4.5 s of speech: two cuts at 1.5 s, then the rest ends in silence.
        try #require(finals.count == 3, "\(events.events)")
        #expect(endpoints.map(\.reason) == [.maxLength, .maxLength, .silence], "\(endpoints)")
        for (f, e) in zip(finals, endpoints) {
            Self.expectMatchesOffline(f, scene.samples, recognizer)
            if e.reason == .maxLength {
                // Cut as soon as a decided frame reaches maxUtterance after the speech start.
                #expect(Double(f.segment.upperBound) / Self.sampleRate - f.start >= config.maxUtterance)
                #expect(f.end - f.start <= config.maxUtterance + 0.04 + 1e-9)
            }
        }
        // A forced cut leaves no gap and no overlap: the next segment starts where this one ends.
        for (i, e) in endpoints.enumerated() where e.reason == .maxLength && i + 1 < finals.count {
            #expect(finals[i + 1].segment.lowerBound == finals[i].segment.upperBound)
        }
        print("maxUtterance 1.5 s over \(Double(scene.samples.count) / Self.sampleRate) s of speech: " + finals.map { "'\($0.transcript.text)'" }.joined(separator: " | "))
    }

    /// "yes" gives 0.2-0.35 s of speech frames with this model (the tiny model's training rounds
    /// differently on different CPUs' BLAS kernels): above a 0.1 s minimum it is an utterance, below a
    /// minimum 0.1 s longer than its speech it is dropped without any event, and the session carries on.
    @Test func burstShorterThanMinSpeechGivesNoEvents() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let scene = Scene([.silence(0.5), .word("yes"), .silence(1)], model: tiny)
        var rng = SeededGenerator(state: 29)
        let kept = run(StreamingSession(recognizer: recognizer, config: EndpointConfig(minSpeech: 0.1)), scene.samples, maxChunk: 900, rng: &rng)
        try #require(kept.finals.count == 1, "\(kept.events)")
        // The reported span is the speech frames' span only without a timing calibration.
        #expect(recognizer.timing == nil, "the thresholds below assume an uncalibrated model")
        let speech = kept.finals[0].end - kept.finals[0].start
        #expect(speech > 0.15 && speech < 0.5, "the test needs 'yes' to give 0.15-0.5 s of speech, it gave \(speech) s")

        for hiss in [false, true] {
            let config = EndpointConfig(minSpeech: speech + 0.1, silenceLevel: hiss ? -140 : -65)
            let session = StreamingSession(recognizer: recognizer, config: config)
            let dropped = run(session, Scene([.silence(0.5), .word("yes"), .silence(1)], model: tiny, noise: hiss ? 1e-6 : 0).samples,
                              maxChunk: 900, rng: &rng, finish: false)
            #expect(dropped.isEmpty, "\(dropped.events)")
            // Still listening: a longer stretch of speech afterwards is an utterance, numbered 0.
            var parts: [Scene.Part] = []
            for w in ["left", "right", "down"] { parts += [.word(w), .silence(0.1)] }
            let after = Scene(parts + [.silence(1)], model: tiny)
            let events = run(session, after.samples, maxChunk: 900, rng: &rng)
            #expect(events.finals.count == 1 && events.finals.first?.utterance == 0, "\(events.events)")
        }
    }

    @Test func finishMidUtteranceGivesAnEndOfStreamFinal() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        // 0.25 s after the word is less than trailingSilence: the utterance is still open at the end,
        // and the stream's length is not a whole number of blocks (the tail must be recognised too).
        let scene = Scene([.silence(0.5), .word("left"), .silence(0.25)], model: tiny)
        #expect(scene.samples.count % Self.block != 0)
        let session = StreamingSession(recognizer: recognizer)
        var rng = SeededGenerator(state: 31)
        var first: [RecognitionEvent]?
        for _ in 0..<2 {
            let events = run(session, scene.samples, maxChunk: 1000, rng: &rng)
            try #require(events.finals.count == 1, "\(events.events)")
            let final = events.finals[0]
            #expect(final.transcript.text == "left")
            #expect(final.segment.upperBound == scene.samples.count)
            #expect(events.endpoints.map(\.reason) == [.endOfStream])
            #expect(events.endpoints[0].at == Double(scene.samples.count) / Self.sampleRate)
            Self.expectMatchesOffline(final, scene.samples, recognizer)
            // finish() starts the session over: the same audio again gives the same events.
            if let first { #expect(events.events == first) } else { first = events.events }
            #expect(session.audioSeconds == 0)
        }
        // Nothing in flight: finish() says nothing.
        #expect(session.finish().isEmpty)
    }

    /// A stream that stops in the middle of speech: the frames flushed over the padding past its end may
    /// still be heard as speech, but the final's speech must end within the audio, its segment and its
    /// endpoint (it ended up to a frame past all three).
    @Test func speechCutOffByTheEndOfTheStreamEndsWithinIt() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let session = StreamingSession(recognizer: recognizer)
        let word = tiny.word("left").count
        var checked = 0
        for kept in stride(from: 0.3, through: 1.0, by: 0.05) {
            let scene = Scene([.silence(0.5), .fragment("left", kept * Double(word) / Self.sampleRate)], model: tiny)
            let events = session.accept(scene.samples) + session.finish()
            let finals = events.compactMap { e -> (end: Double, segment: Range<Int>)? in
                if case .final(_, _, _, let end, let segment) = e { return (end, segment) }
                return nil
            }
            let ats = events.compactMap { e -> Double? in if case .endpoint(_, _, let at) = e { return at }; return nil }
            #expect(finals.count == ats.count, "kept \(kept): \(events)")
            checked += finals.count
            for (final, at) in zip(finals, ats) {
                #expect(final.end <= at + 1e-9, "kept \(kept): final ends at \(final.end) s, the stream at \(at) s")
                #expect(final.end * Self.sampleRate <= Double(final.segment.upperBound) + 1e-6, "kept \(kept)")
            }
        }
        #expect(checked >= 5, "only \(checked) of the cut words gave a final")
    }

    /// Speech running up to the last sample: the last frames are computed over padding, and a word could
    /// end up to a frame after the audio. `transcribe` (what earshot transcribe's JSON and subtitles
    /// show) keeps every word within the audio, split at pauses or not.
    @Test func transcribedWordTimesEndWithinTheAudio() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let word = tiny.word("left")
        var rawBeyond = 0
        for kept in stride(from: 0.5, through: 1.0, by: 0.05) {
            let samples = [Float](repeating: 0, count: 8000) + Array(word.prefix(Int(kept * Double(word.count))))
            let duration = Double(samples.count) / Self.sampleRate
            if let last = recognizer.recognize(samples).transcript.words.last, last.end > duration { rawBeyond += 1 }
            for split in [false, true] {
                for w in recognizer.transcribe(samples, splitAtPauses: split).transcript.words {
                    #expect(w.start <= w.end && w.end <= duration, "kept \(kept), split \(split): \(w) in \(duration) s")
                }
            }
        }
        #expect(rawBeyond > 0, "no cut put a word's raw end past the audio: the clamp is not tested")
    }

    @Test func endlessSilenceKeepsMemoryBounded() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let chunk = 1600  // 100 ms

        // Ten minutes of digital silence: the gate never opens, the model never runs.
        let gated = StreamingSession(recognizer: recognizer)
        let zeros = [Float](repeating: 0, count: chunk)
        _ = gated.accept(zeros)
        let held = gated.heldSamples
        for _ in 0..<(10 * 600 - 1) {
            #expect(gated.accept(zeros).isEmpty)
        }
        #expect(gated.heldSamples == held)
        #expect(!gated.isModelRunning)
        #expect(gated.timings.total == 0 && gated.timings.audioSeconds == 600)

        // Two minutes of hiss the model has to listen to: segments restart every maxLeadingSilence.
        let config = EndpointConfig(silenceLevel: -140, maxLeadingSilence: 2)
        let session = StreamingSession(recognizer: recognizer, config: config)
        var rng = SeededGenerator(state: 37)
        var hiss = [Float](repeating: 0, count: chunk)
        var longest = 0, maxHeld = 0
        for _ in 0..<1200 {
            for i in 0..<chunk { hiss[i] = 1e-6 * rng.gaussian() }
            #expect(session.accept(hiss).isEmpty)
            longest = max(longest, session.runningSegmentSamples)
            maxHeld = max(maxHeld, session.heldSamples)
        }
        #expect(session.isModelRunning)
        // A restart comes within one block of the limit; the re-fed look-ahead starts the next segment.
        #expect(longest <= Int(config.maxLeadingSilence * Self.sampleRate) + 2 * Self.block + 4000, "segment grew to \(longest) samples")
        #expect(maxHeld <= held, "history grew from \(held) to \(maxHeld) samples")
        // And it still hears the next word.
        let scene = Scene([.word("left"), .silence(1)], model: tiny, noise: 1e-6, seed: 41)
        let events = session.accept(scene.samples) + session.finish()
        #expect(events.compactMap { if case .final(_, let t, _, _, _) = $0 { t.text } else { nil } } == ["left"], "\(events)")
    }

    /// The smallest `maxLeadingSilence` allowed, on hiss the model must listen to: segments restart
    /// every 0.5 s, each keeping 0.32 s of leading context, and never move backwards (which ran the
    /// history dry and trapped), and the next word is still heard whole.
    @Test func shortestLeadingSilenceRestartsForwardAndStillHearsTheNextWord() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let config = EndpointConfig(silenceLevel: -140, maxLeadingSilence: EndpointConfig.minimumLeadingSilence)
        let session = StreamingSession(recognizer: recognizer, config: config)
        let scene = Scene([.silence(8), .word("left"), .silence(1)], model: tiny, noise: 1e-6, seed: 43)
        var rng = SeededGenerator(state: 9)
        var longest = 0
        let events = run(session, scene.samples, maxChunk: 3000, rng: &rng) { at in
            // Only the hiss before the word: the utterance's own segment is bounded by other settings.
            if at < scene.words[0].span.lowerBound { longest = max(longest, session.runningSegmentSamples) }
        }
        #expect(events.finals.map(\.transcript.text) == ["left"], "\(events.events)")
        // A restart comes within a block of the limit; the re-fed look-ahead opens the next segment.
        let limit = Int(config.maxLeadingSilence * Self.sampleRate) + 2 * Self.block + 4000
        #expect(longest <= limit, "segment grew to \(longest) samples")
        if let final = events.finals.first { Self.expectMatchesOffline(final, scene.samples, recognizer) }
    }

    /// With encoder frames as long as the leading context (0.5 s here: hop 2000 x subsampling 4),
    /// `end - preroll` is the segment's own start, so a restart that only subtracted the preroll
    /// restarted in place forever. Restarts must move on by at least a frame.
    @Test func restartsAdvanceEvenWhenFramesAreAsLongAsTheLeadingContext() throws {
        var frontend = FrontendConfig()
        frontend.hopLength = 2000
        let recognizer = try Recognizer(model: blankModel(frontend: frontend))
        try #require(recognizer.encoder.subsampling * frontend.hopLength == 8000)
        var rng = SeededGenerator(state: 17)
        let hiss = (0..<(20 * 16000)).map { _ in 1e-6 * rng.gaussian() }
        let outcome = Locked<(events: Int, longest: Int)?>(nil)
        let done = DispatchSemaphore(value: 0)
        // On a thread of its own: the failure this guards against never returns.
        Thread {
            let session = StreamingSession(recognizer: recognizer,
                                           config: EndpointConfig(silenceLevel: -140, maxLeadingSilence: EndpointConfig.minimumLeadingSilence))
            var events = 0, longest = 0
            for start in stride(from: 0, to: hiss.count, by: 4000) {
                events += session.accept(Array(hiss[start..<min(hiss.count, start + 4000)])).count
                longest = max(longest, session.runningSegmentSamples)
            }
            events += session.finish().count
            outcome.withLock { $0 = (events, longest) }
            done.signal()
        }.start()
        try #require(done.wait(timeout: .now() + 60) == .success, "accept did not return within 60 s: restarts do not advance")
        let result = try #require(outcome.withLock { $0 })
        #expect(result.events == 0, "a model that only emits blank produced events")
        #expect(result.longest <= 8000 + 40_000, "segment grew to \(result.longest) samples")
    }

    /// Feeds `samples` in 500-sample chunks until the first partial: the events so far and how many
    /// samples were fed.
    static func feedUntilFirstPartial(_ session: StreamingSession, _ samples: [Float]) -> ([Timed], Int) {
        var events: [Timed] = []
        var at = 0
        while events.partials.isEmpty && at < samples.count {
            let end = min(at + 500, samples.count)
            events += session.accept(Array(samples[at..<end])).map { Timed(event: $0, received: end) }
            at = end
        }
        return (events, at)
    }

    /// The replacement spells every letter one further along the alphabet (same weights, so the same
    /// speech decisions): which model wrote a final is visible in its text.
    @Test func replacedRecognizerTakesOverAtTheNextUtteranceBoundary() throws {
        let tiny = try TinyModel.shared()
        let first = try Recognizer(model: tiny.trained)
        var shifted = tiny.trained
        shifted.description.vocabulary = shifted.description.vocabulary.map { t in
            t.count == 1 && ("a"..."y").contains(t) ? String(UnicodeScalar(t.unicodeScalars.first!.value + 1)!) : t
        }
        let second = try Recognizer(model: shifted)
        let scene = Scene([.silence(0.5), .word("left"), .silence(1), .word("down"), .silence(1)], model: tiny)
        let session = StreamingSession(recognizer: first)
        // Up to the first partial: utterance 0 is in flight when the replacement arrives.
        var (events, at) = Self.feedUntilFirstPartial(session, scene.samples)
        try #require(!events.partials.isEmpty)
        try session.replaceRecognizer(second)
        #expect(session.recognizer === first)
        events += session.accept(Array(scene.samples[at...])).map { Timed(event: $0, received: scene.samples.count) }
        events += session.finish().map { Timed(event: $0, received: scene.samples.count) }
        let finals = events.finals
        try #require(finals.count == 2, "\(events.events)")
        #expect(finals[0].transcript.text == "left")
        #expect(finals[1].transcript.text == "epxo")
        Self.expectMatchesOffline(finals[0], scene.samples, first)
        Self.expectMatchesOffline(finals[1], scene.samples, second)
        #expect(events.partials.filter { $0.utterance == 0 }.allSatisfy { "left".hasPrefix($0.text) })
        #expect(session.recognizer === second)

        // A model for another sample rate is refused: the audio keeps arriving at the session's rate.
        var rate = first.frontendConfig
        rate.sampleRate = 8000
        var other = tiny.trained
        other.description = ModelDescription(architecture: other.description.architecture, frontend: rate,
                                             vocabulary: other.description.vocabulary)
        #expect(throws: StreamingSessionError.sampleRateMismatch(session: 16000, recognizer: 8000)) {
            try session.replaceRecognizer(try Recognizer(model: other))
        }
    }

    /// A replacement with another encoder frame (a 40 ms model replaced by a 20 ms one, and back) takes
    /// over at the boundary with its own block size: the next utterance is what offline recognition
    /// with the new model gives, and so are the utterances after it. Two ways: gated digital silence
    /// in chunks of up to 1 000 samples; and the model running through a faint hiss (gate disabled) in
    /// chunks as long as the daemon's microphone reads (300 ms), with pauses just over the 0.6 s trailing
    /// silence, so that the replacement is adopted at an endpoint inside one `accept` and the next word
    /// follows in the same chunk: the rest of it must be stepped in the new model's frames.
    @Test(arguments: [(4, 2, false), (2, 4, false), (4, 2, true), (2, 4, true)])
    func replacementWithAnotherFrameRateRecognisesLikeItsOwnOfflineRun(from: Int, to: Int, onHiss: Bool) throws {
        let first = try Recognizer(model: TinyModel.shared(subsampling: from).trained)
        let second = try Recognizer(model: TinyModel.shared(subsampling: to).trained)
        let tiny = try TinyModel.shared()
        let pauses = onHiss ? [0.75, 0.8] : [1, 1.03]
        let scene = Scene([.silence(0.5), .word("left"), .silence(pauses[0]), .word("down"), .silence(pauses[1]), .word("right"), .silence(1)],
                          model: tiny, noise: onHiss ? 1e-6 : 0)
        let session = StreamingSession(recognizer: first, config: onHiss ? EndpointConfig(silenceLevel: -140) : EndpointConfig())
        // Up to the first partial: utterance 0 is in flight when the replacement arrives.
        var (events, at) = Self.feedUntilFirstPartial(session, scene.samples)
        try #require(!events.partials.isEmpty)
        try session.replaceRecognizer(second)
        var rng = SeededGenerator(state: onHiss ? 13 : 12)
        events += run(session, Array(scene.samples[at...]), maxChunk: onHiss ? 4800 : 1000, rng: &rng).map {
            Timed(event: $0.event, received: $0.received + at)
        }
        let finals = events.finals
        try #require(finals.count == 3, "\(events.events)")
        #expect(finals.map(\.transcript.text) == ["left", "down", "right"])
        Self.expectMatchesOffline(finals[0], scene.samples, first)
        Self.expectMatchesOffline(finals[1], scene.samples, second)
        Self.expectMatchesOffline(finals[2], scene.samples, second)
        #expect(session.recognizer === second)
    }
}

@Suite struct EndpointConfigTests {
    @Test func missingKeysTakeTheDefaults() throws {
        let config = try JSONDecoder().decode(EndpointConfig.self, from: Data(#"{"trailingSilence": 0.8}"#.utf8))
        var expected = EndpointConfig()
        expected.trailingSilence = 0.8
        #expect(config == expected)
        let roundTrip = try JSONDecoder().decode(EndpointConfig.self, from: try JSONEncoder().encode(expected))
        #expect(roundTrip == expected)
    }

    @Test func validationNamesTheBadField() {
        #expect(throws: Never.self) { try EndpointConfig().validate() }
        var c = EndpointConfig()
        c.trailingSilence = 0
        #expect(throws: EndpointConfigError.self) { try c.validate() }
        c = EndpointConfig(); c.speechThreshold = 1
        #expect((try? c.validate()) == nil)
        c = EndpointConfig(); c.minSpeech = 30
        do { try c.validate(); Issue.record("minSpeech longer than maxUtterance accepted") } catch {
            #expect(error.description.contains("minSpeech") && error.description.contains("maxUtterance"))
        }
        c = EndpointConfig(); c.silenceLevel = 3
        #expect((try? c.validate()) == nil)
        // So low that its power threshold is 0 in Float: zeros would no longer be silence.
        c = EndpointConfig(); c.silenceLevel = -500
        #expect((try? c.validate()) == nil)
        c = EndpointConfig(); c.silenceLevel = -300
        #expect(throws: Never.self) { try c.validate() }
        // A restart keeps 0.32 s of leading context and must move on by a block: shorter limits are refused.
        for short in [0.04, 0.3, 0.36, 0.49] {
            c = EndpointConfig(); c.maxLeadingSilence = short
            do { try c.validate(); Issue.record("maxLeadingSilence \(short) accepted") } catch {
                #expect(error.description.contains("maxLeadingSilence"), "\(error)")
            }
        }
        c = EndpointConfig(); c.maxLeadingSilence = EndpointConfig.minimumLeadingSilence
        #expect(throws: Never.self) { try c.validate() }
    }
}

/// A stream cut into sessions (the microphone across a lost device) keeps one timeline and numbering.
@Suite struct ShiftedEventTests {
    @Test func everyTimeAndNumberMovesAndNothingElse() {
        let words = Transcript(words: [Word(text: "yes", start: 0.2, end: 0.5, confidence: 0.9)])
        let events: [RecognitionEvent] = [
            .partial(utterance: 0, text: "ye", start: 0.2),
            .final(utterance: 0, transcript: words, start: 0.2, end: 0.5, segment: 1600..<12800),
            .endpoint(utterance: 0, reason: .endOfStream, at: 0.8),
        ]
        let moved = events.map { $0.shifted(seconds: 10, samples: 160_000, utterances: 3) }
        #expect(moved == [
            .partial(utterance: 3, text: "ye", start: 10.2),
            .final(utterance: 3, transcript: words.shifted(by: 10), start: 10.2, end: 10.5, segment: 161_600..<172_800),
            .endpoint(utterance: 3, reason: .endOfStream, at: 10.8),
        ])
        #expect(words.shifted(by: 10).words[0].start == 10.2 && words.shifted(by: 10).text == "yes")
    }
}

/// Subtitle cues stay up long enough to read: a one-word cue lasts a second, or until just before the
/// next cue, or the end of the audio, and never less than its word.
@Suite struct SubtitleCueTests {
    func word(_ text: String, _ start: Double, _ end: Double) -> Word { Word(text: text, start: start, end: end, confidence: 1) }

    @Test func shortCuesAreLengthenedWithinTheirNeighbours() {
        // Pauses over 0.8 s: one cue per word.
        let t = Transcript(words: [word("i", 0.14, 0.25), word("five", 2.0, 2.1), word("seven", 2.95, 3.1), word("nine", 5.0, 5.4)])
        let cues = TranscriptFormat.cues(t, duration: 5.6)
        #expect(cues.map(\.text) == ["i", "five", "seven", "nine"])
        #expect(abs(cues[0].end - 1.14) < 1e-9)                // a full second
        #expect(abs(cues[1].end - (2.95 - TranscriptFormat.cueGapSeconds)) < 1e-9)  // up to the next cue
        #expect(abs(cues[2].end - 3.95) < 1e-9)
        #expect(abs(cues[3].end - 5.6) < 1e-9)                 // the audio's end
        for (a, b) in zip(cues, cues.dropFirst()) { #expect(a.end < b.start) }
        // A cue already a second long is left as it is.
        let long = TranscriptFormat.cues(Transcript(words: [word("hello", 0, 1.2)]), duration: 3)
        #expect(long[0].end == 1.2)
    }
}
