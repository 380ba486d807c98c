import Foundation
import Testing
import Tensors
@testable import Decoding

@Suite struct BeamSearchDecoderTests {
    let vocab = Vocabulary.earshot

    /// Brute force: P(labelling) = sum over all V^T frame paths that collapse to it.
    func bruteForce(_ m: Matrix, blank: Int) -> [[Int]: Double] {
        var sums: [[Int]: Double] = [:]
        let v = m.cols
        // Log posteriors in Double, the decoder's own precision.
        var lp = [[Double]](repeating: [], count: m.rows)
        for t in 0..<m.rows {
            let row = m.row(t).map(Double.init)
            let mx = row.max()!
            let lse = mx + log(row.reduce(0) { $0 + exp($1 - mx) })
            lp[t] = row.map { $0 - lse }
        }
        var path = [Int](repeating: 0, count: m.rows)
        func visit(_ t: Int) {
            if t == m.rows {
                var label: [Int] = []
                var prev = -1
                for c in path {
                    if c != blank && c != prev { label.append(c) }
                    prev = c
                }
                var logp = 0.0
                for (tt, c) in path.enumerated() { logp += lp[tt][c] }
                sums[label, default: 0] += exp(logp)
                return
            }
            for c in 0..<v { path[t] = c; visit(t + 1) }
        }
        visit(0)
        return sums
    }

    @Test func topPrefixMatchesBruteForceOnTinyRandomCases() throws {
        var rng = SplitMix64(seed: 42)
        let tiny = Vocabulary(tokens: ["-", "a", "b"], blank: 0, space: nil)
        for caseIndex in 0..<40 {
            let t = 1 + caseIndex % 5
            let v = 2 + caseIndex % 2
            let voc = Vocabulary(tokens: Array(tiny.tokens.prefix(v)), blank: 0, space: nil)
            let m = randomLogits(rows: t, cols: v, scale: 3, using: &rng)
            let exact = bruteForce(m, blank: 0)
            let best = exact.max { $0.value < $1.value || ($0.value == $1.value && $0.key.lexicographicallyPrecedes($1.key)) }!
            // At most sum_{k<=5} 2^k = 63 labellings, so width 64 keeps everything: exact search.
            for width in [1, 2, 3, 5, 8, 64] {
                var d = BeamSearchDecoder(vocabulary: voc, configuration: BeamSearchConfiguration(beamWidth: width))
                d.accept(m)
                let hyps = d.hypotheses()
                let top = try #require(hyps.first)
                // A pruned beam can only lose alignments, never invent probability.
                for h in hyps {
                    let truth = try #require(exact[h.tokens])
                    #expect(h.acousticLogProbability <= log(truth) + 1e-9)
                }
                if width == 64 {
                    #expect(abs(exp(top.acousticLogProbability) - best.value) < 1e-5, "T=\(t) V=\(v)")
                    #expect(abs(top.acousticLogProbability - log(exact[top.tokens]!)) < 1e-5)
                    // Every prefix in an unpruned beam carries its exact probability.
                    for h in hyps { #expect(abs(exp(h.acousticLogProbability) - exact[h.tokens]!) < 1e-5) }
                    if abs(best.value - (exact.values.filter { $0 != best.value }.max() ?? 0)) > 1e-9 {
                        #expect(top.tokens == best.key)
                    }
                }
            }
        }
    }

    /// "the bat" vs "the cat": the c/b frame is slightly in favour of b.
    func ambiguousCatBat() -> Matrix {
        var frames = spelledFrames("the ")
        let b = vocab.tokenize("b")![0], c = vocab.tokenize("c")![0]
        frames.append([b: 0.5, c: 0.45])
        frames.append([vocab.blank: 0.95])
        frames += spelledFrames("at").dropFirst()
        return logits(frames)
    }

    @Test func languageModelFlipsAnAcousticallyCloseDecision() {
        let m = ambiguousCatBat()
        var plain = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8))
        #expect(plain.decode(m).text == "the bat")
        let lm = NGramLanguageModel.train(sentences: ["the cat sat", "the cat ran", "a cat", "the dog ate the cat"], order: 3)
        var fused = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, lmWeight: 0.5), languageModel: lm)
        #expect(fused.decode(m).text == "the cat")
        // With alpha = 0 the LM has no say.
        var muted = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, lmWeight: 0, unknownWordPenalty: 0), languageModel: lm)
        #expect(muted.decode(m).text == "the bat")
    }

    @Test func wreckANiceBeachBecomesRecogniseSpeechWithTheLM() {
        // Spaces are the acoustically unsure part: each word boundary has a space at 0.5 vs blank.
        let s = vocab.space!, blank = vocab.blank
        var frames: [[Int: Double]] = [[blank: 0.95]]
        let plan = "wreck a nice beach"
        for ch in plan {
            if ch == " " {
                frames.append([s: 0.55, blank: 0.44])
            } else {
                frames.append([vocab.tokenize(String(ch))![0]: 0.95])
                frames.append([blank: 0.95])
            }
        }
        let m = logits(frames)
        var plain = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 16))
        #expect(plain.decode(m).text == "wreck a nice beach")
        let lm = NGramLanguageModel.train(sentences: ["wreckanice beach", "wreckanice day", "we wreckanice beach"], order: 2)
        var fused = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 16, lmWeight: 1, unknownWordPenalty: -5), languageModel: lm)
        #expect(fused.decode(m).text == "wreckanice beach")
    }

    /// Frames spelling `text`, each letter at `letter`, with every word boundary unsure: a space at
    /// `space`, else blank.
    func unsureSpaces(_ text: String, space: Double, letter: Double = 0.95) -> Matrix {
        var frames: [[Int: Double]] = [[vocab.blank: 0.95]]
        for ch in text {
            if ch == " " {
                frames.append([vocab.space!: space, vocab.blank: 0.99 - space])
            } else {
                frames.append([vocab.tokenize(String(ch))![0]: letter])
                frames.append([vocab.blank: 0.95])
            }
        }
        return logits(frames)
    }

    @Test func openVocabularyKeepsKnownWordsApartAndStillSpellsUnknownOnes() {
        let lm = NGramLanguageModel.train(sentences: ["the cat sat on the mat", "a dog sat on a cat", "the mat"], order: 2)
        // Every boundary is unsure, so one invented word spelling the sentence would pay the flat
        // unknown-word penalty once instead of six words' LM scores and five unsure spaces; its letters'
        // cost, charged while it grows, keeps the words apart.
        let m = unsureSpaces("the cat sat on the mat on the mat", space: 0.3)
        var open = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 16, lmWeight: 1), languageModel: lm)
        #expect(open.decode(m).text == "the cat sat on the mat on the mat")
        var flat = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 16, lmWeight: 1, unknownLetterLogProbability: 0),
                                     languageModel: lm)
        #expect(flat.decode(m).text == "thecatsatonthematonthemat", "without the letter cost the words run together")
        // A word the LM lacks, clearly spoken, is still written as heard; the letter cost, like the rest of
        // the LM's score, goes with the LM weight.
        let zyx = unsureSpaces("the zyx sat", space: 0.9, letter: 0.999)
        var oov = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 16, lmWeight: 1), languageModel: lm)
        #expect(oov.decode(zyx).text == "the zyx sat")
        var heavy = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 16, lmWeight: 1, unknownLetterLogProbability: -8),
                                      languageModel: lm)
        #expect(heavy.decode(zyx).text == "the sat", "a costlier spelling drops the unknown word")
    }

    @Test func hotwordBoostFlipsADecision() {
        let m = ambiguousCatBat()
        var boosted = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, hotwords: [Hotword("cat", weight: 1)]))
        #expect(boosted.decode(m).text == "the cat")
        // A phrase only fires after its earlier words.
        var wrongPhrase = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, hotwords: [Hotword("a cat", weight: 1)]))
        #expect(wrongPhrase.decode(m).text == "the bat")
        var rightPhrase = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, hotwords: [Hotword("the cat", weight: 1)]))
        #expect(rightPhrase.decode(m).text == "the cat")
    }

    /// A hotword is usually a word the LM lacks (a name, jargon): it is scored as the LM's unknown words
    /// are, without the penalty for an invented spelling, which left a default-weight hotword below an
    /// ordinary rare word.
    @Test func aHotwordTheLanguageModelLacksPaysNoUnknownWordPenalty() {
        let m = ambiguousCatBat()
        let lm = NGramLanguageModel.train(sentences: ["the bat", "a bat"], order: 2)
        #expect(lm.wordID("cat") == nil)
        var plain = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, lmWeight: 1), languageModel: lm)
        #expect(plain.decode(m).text == "the bat")
        var hot = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, lmWeight: 1, hotwords: [Hotword("cat", weight: 5)]),
                                    languageModel: lm)
        #expect(hot.decode(m).text == "the cat")
        // A negative weight asks for the word less often: no exemption for it.
        var cold = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8, lmWeight: 1, hotwords: [Hotword("cat", weight: -5)]),
                                     languageModel: lm)
        #expect(cold.decode(m).text == "the bat")
    }

    /// A frame whose every possible continuation has probability 0 (blank and every letter the closed
    /// vocabulary allows at -inf, as a masked logit gives) is skipped, not the end of the search.
    @Test func aFrameThatAllowsNothingIsSkipped() {
        var frames = spelledFrames("the ")
        let dead = frames.count
        frames.append([:])
        frames += spelledFrames("cat").dropFirst()
        var m = logits(frames)
        let q = vocab.tokenize("q")![0]
        for c in 0..<vocab.count { m[dead, c] = c == q ? 0 : -.infinity }
        var d = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 4, lexicon: Lexicon(words: ["the", "cat"], vocabulary: vocab)))
        #expect(d.decode(m).text == "the cat")
    }

    @Test func hotwordPrefixBonusKeepsAPartialHotwordInANarrowBeam() {
        // "zo" is likelier than "zu" at the second letter, but "zulu" is a hotword; with beam 1 only
        // the prefix bonus can keep "zu" alive until the word is complete.
        let z = vocab.tokenize("z")![0], u = vocab.tokenize("u")![0], o = vocab.tokenize("o")![0], l = vocab.tokenize("l")![0]
        let blank = vocab.blank
        let m = logits([[z: 0.9], [blank: 0.9], [o: 0.5, u: 0.45], [blank: 0.9], [l: 0.9], [blank: 0.9], [u: 0.9], [blank: 0.9]])
        let hot = [Hotword("zulu", weight: 2)]
        var noPrefix = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 1, hotwords: hot))
        #expect(noPrefix.decode(m).text == "zolu")
        var withPrefix = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 1, hotwords: hot, hotwordPrefixBonus: 0.2))
        #expect(withPrefix.decode(m).text == "zulu")
        // A negative weight gives its letters no prefix bonus.
        var negative = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 1, hotwords: [Hotword("zulu", weight: -2)],
                                                                                hotwordPrefixBonus: 0.2))
        #expect(negative.decode(m).text == "zolu")
    }

    @Test func wordTimesAndConfidencesMatchTheGreedyPathOnPeakyInput() {
        let b = vocab.blank, s = vocab.space!
        let h = vocab.tokenize("h")![0], i = vocab.tokenize("i")![0], y = vocab.tokenize("y")![0], o = vocab.tokenize("o")![0]
        let frames: [[Int: Double]] = [[b: 0.9], [h: 0.8], [h: 0.6], [i: 0.9], [b: 0.9], [s: 0.9],
                                       [y: 0.5], [o: 0.7], [o: 0.6], [b: 0.9]]
        var d = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8))
        let t = d.decode(logits(frames))
        #expect(t.text == "hi yo")
        #expect(t.words.count == 2)
        guard t.words.count == 2 else { return }
        // Same definition as the greedy decoder (see Word): start of first frame, end of last frame.
        #expect(abs(t.words[0].start - 0.04) < 1e-12 && abs(t.words[0].end - 0.16) < 1e-12)
        #expect(abs(t.words[1].start - 0.24) < 1e-12 && abs(t.words[1].end - 0.36) < 1e-12)
        #expect(abs(t.words[0].confidence - sqrt(0.8 * 0.9)) < 1e-6)
        #expect(abs(t.words[1].confidence - sqrt(0.5 * 0.7)) < 1e-6)
    }

    /// A prefix can enter the beam frames before its character is the likeliest state; its timing starts
    /// when the path carrying most of the mass enters it. Here the space after "hi", and the "h", get a
    /// little probability early: the words' times and confidences must still be the greedy path's
    /// (they used to end "hi" two frames early, and start it one frame early).
    @Test(arguments: [8, 32])
    func wordTimesFollowTheDominantPathWhenAPrefixEntersTheBeamEarly(width: Int) {
        let b = vocab.blank, s = vocab.space!
        let h = vocab.tokenize("h")![0], i = vocab.tokenize("i")![0], y = vocab.tokenize("y")![0], o = vocab.tokenize("o")![0]
        let cases: [[[Int: Double]]] = [
            [[b: 0.9], [h: 0.9], [i: 0.9], [i: 0.8, s: 0.15], [i: 0.8, s: 0.15], [s: 0.9], [b: 0.9], [y: 0.9], [o: 0.9], [b: 0.9]],
            [[b: 0.8, h: 0.15], [h: 0.9], [i: 0.9], [b: 0.9]],
        ]
        for frames in cases {
            let m = logits(frames)
            var beam = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: width))
            var greedy = GreedyDecoder(frameDuration: 0.04)
            let t = beam.decode(m), g = greedy.decode(m)
            #expect(t.text == g.text)
            #expect(t.words.count == g.words.count)
            for (w, r) in zip(t.words, g.words) {
                #expect(w.text == r.text && abs(w.start - r.start) < 1e-9 && abs(w.end - r.end) < 1e-9
                        && abs(w.confidence - r.confidence) < 1e-6, "beam \(w) against greedy \(r)")
            }
        }
    }

    /// A character's confidence is the peak over its own frames: a shorter prefix that stays on a
    /// letter after a longer one moved on ("b" while "bo" became "bob") must not raise the first
    /// letter's peak in the longer one's history.
    @Test func aPrefixStayingOnALetterDoesNotRaiseItsChildsHistory() {
        let blank = vocab.blank
        let b = vocab.tokenize("b")![0], o = vocab.tokenize("o")![0]
        let m = logits([[b: 0.6, blank: 0.3], [o: 0.9], [b: 0.95], [blank: 0.9]])
        var d = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 8))
        let t = d.decode(m)
        #expect(t.text == "bob")
        guard t.words.count == 1 else { Issue.record("\(t.words)"); return }
        #expect(abs(t.words[0].confidence - pow(0.6 * 0.9 * 0.95, 1.0 / 3)) < 1e-6, "\(t.words[0].confidence)")
    }

    @Test func streamingEqualsOfflineForRandomChunkings() {
        var rng = SplitMix64(seed: 99)
        let lm = NGramLanguageModel.train(sentences: ["a b c", "the cat sat on the mat", "hello world", "a cat"], order: 3)
        let configs = [
            BeamSearchConfiguration(beamWidth: 4),
            BeamSearchConfiguration(beamWidth: 8, tokenTopK: 5, tokenCumulativeProbability: 0.95, blankSkipThreshold: 0.9,
                                    lmWeight: 0.7, wordInsertionBonus: 0.5, hotwords: [Hotword("cat", weight: 2)], hotwordPrefixBonus: 0.3),
        ]
        for config in configs {
            for _ in 0..<6 {
                // Peaky random frames: a dominant blank or space now and then make words.
                var m = randomLogits(rows: 60, cols: vocab.count, scale: 3, using: &rng)
                for r in 0..<m.rows where r % 3 == 0 { m[r, vocab.blank] += 5 }
                for r in 0..<m.rows where r % 7 == 0 { m[r, vocab.space!] += 6 }
                var offline = BeamSearchDecoder(configuration: config, languageModel: lm)
                let expected = offline.decode(m)
                var streaming = BeamSearchDecoder(configuration: config, languageModel: lm)
                for chunk in randomChunks(m, using: &rng) {
                    streaming.accept(chunk)
                    _ = streaming.partial()
                }
                #expect(streaming.finalize() == expected)
                #expect(!expected.text.isEmpty)
            }
        }
    }

    @Test func partialDoesNotChangeTheDecoderAndFinalizeResets() {
        let m = logits(spelledFrames("go home"))
        var d = BeamSearchDecoder()
        d.accept(m.rows(0..<5))
        let p1 = d.partial()
        #expect(d.partial() == p1)
        d.accept(m.rows(5..<m.rows))
        #expect(d.partial().text == "go home")
        #expect(d.finalize().text == "go home")
        #expect(d.partial() == .empty)
        #expect(d.finalize() == .empty)
    }
}
