import Foundation
import Testing
import Tensors
@testable import Decoding

@Suite struct GreedyDecoderTests {
    let vocab = Vocabulary.earshot

    @Test func decodesSpelledTextIntoWords() {
        var d = GreedyDecoder()
        let t = d.decode(logits(spelledFrames("hello world")))
        #expect(t.text == "hello world")
        #expect(t.words.map(\.text) == ["hello", "world"])
    }

    @Test func collapsesRepeatsAndKeepsBlankSeparatedDoubles() {
        let t = vocab.tokenize("t")![0], o = vocab.tokenize("o")![0], b = vocab.blank
        var d = GreedyDecoder()
        // t t o o <b> o  -> "too";  t o o o -> "to"
        let too = d.decode(logits([[t: 0.9], [t: 0.9], [o: 0.9], [o: 0.9], [b: 0.9], [o: 0.9]]))
        #expect(too.text == "too")
        let to = d.decode(logits([[t: 0.9], [o: 0.9], [o: 0.9], [o: 0.9]]))
        #expect(to.text == "to")
        let empty = d.decode(logits([[b: 0.9], [b: 0.9]]))
        #expect(empty == .empty)
    }

    @Test func wordTimesAndConfidencesFollowTheDocumentedDefinition() {
        let b = vocab.blank, s = vocab.space!
        let h = vocab.tokenize("h")![0], i = vocab.tokenize("i")![0], y = vocab.tokenize("y")![0], o = vocab.tokenize("o")![0]
        // frames: 0 b, 1 h(.8), 2 h(.6), 3 i(.9), 4 b, 5 space, 6 y(.5), 7 o(.7), 8 o(.4), 9 b
        let frames: [[Int: Double]] = [[b: 0.9], [h: 0.8], [h: 0.6], [i: 0.9], [b: 0.9], [s: 0.9],
                                       [y: 0.5], [o: 0.7], [o: 0.4], [b: 0.9]]
        var d = GreedyDecoder(frameDuration: 0.04)
        let t = d.decode(logits(frames))
        #expect(t.words.count == 2)
        let hi = t.words[0], yo = t.words[1]
        #expect(hi.text == "hi" && yo.text == "yo")
        // "hi": first frame 1 -> 0.04 s; last frame of "i" is 3 -> ends at 4 * 0.04.
        #expect(abs(hi.start - 0.04) < 1e-12 && abs(hi.end - 0.16) < 1e-12)
        #expect(abs(yo.start - 0.24) < 1e-12 && abs(yo.end - 0.36) < 1e-12)
        // Geometric mean of per-character peak posteriors (Float logits: 1e-6 relative).
        #expect(abs(hi.confidence - sqrt(0.8 * 0.9)) < 1e-6)
        #expect(abs(yo.confidence - sqrt(0.5 * 0.7)) < 1e-6)
        #expect(yo.confidence < hi.confidence)
    }

    @Test func streamingEqualsOfflineForAnyChunking() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<20 {
            let m = randomLogits(rows: 50, cols: vocab.count, scale: 4, using: &rng)
            var offline = GreedyDecoder()
            let expected = offline.decode(m)
            var streaming = GreedyDecoder()
            for chunk in randomChunks(m, using: &rng) {
                streaming.accept(chunk)
                _ = streaming.partial()
            }
            #expect(streaming.finalize() == expected)
        }
    }
}
