import Decoding
import Foundation
import Testing
import TestSupport
@testable import Recognizer

/// A batched session (what `earshot transcribe` runs) steps the model several frames at a time where no
/// endpoint can fall inside a block; its finals and endpoints must be a frame-by-frame session's,
/// whatever the endpoint rule that ends each utterance and however the audio is chunked.
@Suite struct BatchedSessionTests {
    /// The same finals (text, words, times, segments) and endpoints, and no partials from the batched one.
    /// Confidences may differ in float rounding (a product blocked differently), never decisions.
    static func expectSameResults(_ batched: [Timed], _ stepped: [Timed], _ label: String,
                                  sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(batched.partials.isEmpty, "\(label): a batched session emitted partials", sourceLocation: sourceLocation)
        let b = batched.finals, s = stepped.finals
        #expect(b.count == s.count, "\(label): \(b.map(\.transcript.text)) vs \(s.map(\.transcript.text))", sourceLocation: sourceLocation)
        for (x, y) in zip(b, s) {
            #expect(x.utterance == y.utterance && x.transcript.text == y.transcript.text && x.start == y.start && x.end == y.end
                    && x.segment == y.segment, "\(label): \(x) vs \(y)", sourceLocation: sourceLocation)
            #expect(x.transcript.words.count == y.transcript.words.count, "\(label)", sourceLocation: sourceLocation)
            for (v, w) in zip(x.transcript.words, y.transcript.words) {
                #expect(v.text == w.text && v.start == w.start && v.end == w.end && abs(v.confidence - w.confidence) < 1e-6,
                        "\(label): \(v) vs \(w)", sourceLocation: sourceLocation)
            }
        }
        #expect(batched.endpoints.map { "\($0.utterance) \($0.reason) \($0.at)" } == stepped.endpoints.map { "\($0.utterance) \($0.reason) \($0.at)" },
                "\(label)", sourceLocation: sourceLocation)
    }

    /// Each case ends utterances by a different rule: trailing silence (gated zeros, or the model kept
    /// running on hiss), the maximum length inside continuous speech, the leading-silence restart, and
    /// a trailing silence so short that the next word starts inside the endpoint's look-ahead.
    static let cases: [(name: String, parts: [Scene.Part], noise: Float, config: EndpointConfig)] = [
        ("gated zeros", [.silence(0.3), .word("yes"), .silence(0.9), .word("no"), .word("up"), .silence(0.2), .word("down"), .silence(0.8)],
         0, EndpointConfig()),
        ("model on hiss", [.silence(0.3), .word("yes"), .silence(0.9), .word("no"), .word("up"), .silence(0.2), .word("down"), .silence(0.8)],
         1e-6, EndpointConfig(silenceLevel: -140)),
        ("maximum length", [.silence(0.4), .word("left"), .word("right"), .word("down"), .word("up"), .word("yes"), .word("no"), .silence(0.5)],
         1e-6, EndpointConfig(maxUtterance: 0.7, silenceLevel: -140)),
        ("leading silence", [.silence(2.5), .word("left"), .silence(1.7), .word("up"), .silence(0.6)],
         1e-6, EndpointConfig(silenceLevel: -140, maxLeadingSilence: 0.5)),
        ("bursts", [.silence(0.5), .fragment("yes", 0.12), .silence(0.16), .fragment("up", 0.08), .silence(0.3), .word("left"), .silence(0.14),
                    .fragment("no", 0.1), .silence(0.5), .word("down"), .silence(0.6)],
         1e-6, EndpointConfig(trailingSilence: 0.1, minSpeech: 0.16, silenceLevel: -140)),
        ("gate between bursts", [.silence(0.3), .fragment("yes", 0.1), .silence(0.52), .fragment("down", 0.12), .silence(0.5), .word("up"), .silence(0.7)],
         0, EndpointConfig(trailingSilence: 0.8)),
        ("short trailing silence", [.silence(0.5), .word("left"), .silence(0.34), .word("right"), .silence(0.38), .word("down"), .silence(1)],
         1e-6, EndpointConfig(trailingSilence: 0.3, silenceLevel: -140)),
    ]

    @Test(arguments: [4, 2])
    func batchedFinalsAreFrameByFrameFinals(subsampling: Int) throws {
        let tiny = try TinyModel.shared(subsampling: subsampling)
        let recognizer = try Recognizer(model: tiny.trained)
        var enders = Set<String>()
        for (name, parts, noise, config) in Self.cases {
            let scene = Scene(parts, model: tiny, noise: noise, seed: 7)
            var rng = SeededGenerator(state: 21)
            let stepped = run(StreamingSession(recognizer: recognizer, config: config), scene.samples, maxChunk: 1000, rng: &rng)
            #expect(stepped.finals.count >= 2 || name.contains("burst"), "\(name): \(stepped.events)")
            enders.formUnion(stepped.endpoints.map { "\($0.reason)" })
            if name == "leading silence" {
                // The model ran on the hiss from the first sample, so only restarts moved the segment on.
                #expect((stepped.finals.first?.segment.lowerBound ?? 0) > 16000, "\(name): \(stepped.finals.map(\.segment))")
            }
            for maxChunk in [1, 641, 6000, scene.samples.count] {
                var rng = SeededGenerator(state: UInt64(maxChunk))
                let session = StreamingSession(recognizer: recognizer, config: config, batched: true)
                let batched = run(session, scene.samples, maxChunk: maxChunk, rng: &rng)
                Self.expectSameResults(batched, stepped, "\(name), subsampling \(subsampling), chunks up to \(maxChunk)")
                #expect(session.earlyDecisions == 0, "\(name), subsampling \(subsampling), chunks up to \(maxChunk)")
                #expect(session.batchedBlocks > 0, "\(name): every block was one frame, the batching never happened")
            }
        }
        // Otherwise the cases would not test what they are named for.
        #expect(enders.isSuperset(of: ["silence", "maxLength"]), "\(enders)")
    }
}
