import Foundation
import Tensors
import Testing
@testable import Decoding

/// Closed-vocabulary beam search: the lexicon trie, the search's guarantee (only listed words, and the
/// best-scoring such transcript when nothing is pruned), its reach past the frame's global top-k, and
/// the stored setting.
@Suite struct ClosedVocabularyTests {
    /// blank, space and three letters: small enough to enumerate every transcript.
    static let tiny = Vocabulary(tokens: ["-", " ", "a", "b", "c"], blank: 0, space: 1)
    static let tinyWords = ["ab", "ba", "abc"]

    /// log P_ctc(label | frames) by the forward recursion over the blank-interleaved label, in linear
    /// probabilities (7 frames cannot underflow): written from the CTC definition, sharing nothing with
    /// the prefix search.
    static func ctcLogProbability(_ label: [Int], _ lp: [[Double]], blank: Int) -> Double {
        var ext = [blank]
        for t in label { ext += [t, blank] }
        var alpha = [Double](repeating: 0, count: ext.count)
        alpha[0] = exp(lp[0][ext[0]])
        if ext.count > 1 { alpha[1] = exp(lp[0][ext[1]]) }
        for t in 1..<lp.count {
            var next = [Double](repeating: 0, count: ext.count)
            for s in ext.indices {
                var a = alpha[s]
                if s >= 1 { a += alpha[s - 1] }
                if s >= 2 && ext[s] != blank && ext[s] != ext[s - 2] { a += alpha[s - 2] }
                next[s] = a * exp(lp[t][ext[s]])
            }
            alpha = next
        }
        let end = alpha[ext.count - 1] + (ext.count > 1 ? alpha[ext.count - 2] : 0)
        return log(end)
    }

    static func logSoftmaxRows(_ m: Matrix) -> [[Double]] {
        (0..<m.rows).map { t in
            let row = m.row(t).map(Double.init)
            let mx = row.max()!
            let lse = mx + log(row.reduce(0) { $0 + exp($1 - mx) })
            return row.map { $0 - lse }
        }
    }

    @Test func closedSearchReturnsTheBestScoringInVocabularyTranscript() throws {
        let v = Self.tiny
        let lm = NGramLanguageModel.train(sentences: ["ab ba", "abc", "ba abc ab", "ab", "ba ba"], order: 2)
        let alpha = 0.7, beta = 0.3
        // A beam wide enough to keep every prefix the trie allows in 7 frames: the search is exact.
        let config = BeamSearchConfiguration(beamWidth: 100_000, lmWeight: alpha, wordInsertionBonus: beta,
                                             lexicon: Lexicon(words: Self.tinyWords, vocabulary: v))
        // Every transcript the search can output in 7 frames: 0, 1 or 2 words (three words need 8
        // tokens), each word sequence spelled with and without a trailing space.
        var sequences: [[String]] = [[]]
        for a in Self.tinyWords {
            sequences.append([a])
            for b in Self.tinyWords { sequences.append([a, b]) }
        }
        var rng = SplitMix64(seed: 7)
        var decisive = 0
        for caseIndex in 0..<30 {
            // Sharper frames for some cases, so the winner is sometimes two words, sometimes none.
            let m = randomLogits(rows: 7, cols: v.count, scale: caseIndex % 2 == 0 ? 3 : 6, using: &rng)
            let lp = Self.logSoftmaxRows(m)
            var scored: [(words: [String], score: Double)] = []
            for words in sequences {
                var lmScore = 0.0
                var history = [NGramLanguageModel.sentenceStart]
                for w in words {
                    lmScore += alpha * lm.logProbability(w, history: history) + beta
                    history.append(w)
                }
                lmScore += alpha * lm.logProbability(NGramLanguageModel.sentenceEnd, history: history)
                let spelled = v.tokenize(words.joined(separator: " "))!
                var acoustic = Self.ctcLogProbability(spelled, lp, blank: v.blank)
                if !words.isEmpty {
                    acoustic = max(acoustic, Self.ctcLogProbability(spelled + [v.space!], lp, blank: v.blank))
                }
                scored.append((words, acoustic + lmScore))
            }
            scored.sort { $0.score > $1.score }
            var d = BeamSearchDecoder(vocabulary: v, configuration: config, languageModel: lm)
            d.accept(m)
            let top = try #require(d.finalHypotheses().first)
            // Both sides are sums of a few Double logs of the same Float logits: 1e-9 leaves room only
            // for rounding order.
            #expect(abs(top.score - scored[0].score) < 1e-9, "case \(caseIndex): search \(top.score) '\(top.text)', reference \(scored[0].score) \(scored[0].words)")
            let text = d.finalize().text
            if scored[0].score - scored[1].score > 1e-6 {
                decisive += 1
                #expect(text == scored[0].words.joined(separator: " "), "case \(caseIndex)")
            }
        }
        #expect(decisive >= 25, "the random cases should mostly have a unique winner")
    }

    @Test func wordsOutsideTheListNeverAppear() throws {
        let words = ["yes", "no", "stop", "go", "left", "right"]
        let lexicon = Lexicon(words: words, vocabulary: .earshot)
        let lm = NGramLanguageModel.train(sentences: ["go left", "stop", "yes", "no go right"], order: 2)
        var rng = SplitMix64(seed: 11)
        var produced = Set<String>()
        for caseIndex in 0..<24 {
            // Noisy frames that spell nothing in particular, then ones that spell words around the list.
            let m: Matrix
            if caseIndex < 12 {
                m = randomLogits(rows: 30, cols: Vocabulary.earshot.count, scale: 5, using: &rng)
            } else {
                let said = ["go lef", "yes nope", "stopped", "gone right", "no", "rights", "lefty go", "ye", "s", "go sto", "yess", "noyes"][caseIndex - 12]
                m = logits(spelledFrames(said, p: 0.7))
            }
            for config in [
                BeamSearchConfiguration.recognition(beamWidth: 4, lmWeight: 0.5, wordBonus: 1, hotwords: [], withLanguageModel: true, lexicon: lexicon),
                BeamSearchConfiguration(beamWidth: 2, tokenTopK: 1, lexicon: lexicon),
            ] {
                var d = BeamSearchDecoder(configuration: config, languageModel: config.beamWidth == 4 ? lm : nil)
                // Streamed in random chunks, as a live stream would give it.
                for chunk in randomChunks(m, using: &rng) { d.accept(chunk) }
                let t = d.finalize()
                for w in t.words {
                    #expect(words.contains(w.text), "case \(caseIndex): '\(w.text)' in '\(t.text)'")
                    produced.insert(w.text)
                }
                #expect(!t.text.hasPrefix(" ") && !t.text.contains("  "))
            }
        }
        #expect(produced.count >= 4, "the cases should reach several words, not collapse to silence: \(produced)")
    }

    @Test func closedSearchReachesLettersOutsideTheFramesTopK() throws {
        let v = Vocabulary.earshot
        let digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        func id(_ s: String) -> Int { v.tokenize(s)![0] }
        // "zero" whose 'z' frame gives 8% to each of nine letters no digit starts with and 5% to 'z':
        // 'z' is tenth of the frame, outside the recognition search's top 8.
        var frames: [[Int: Double]] = [[v.blank: 0.95]]
        var first: [Int: Double] = [id("z"): 0.05]
        for c in ["a", "b", "c", "d", "g", "h", "i", "j", "k"] { first[id(c)] = 0.08 }
        frames.append(first)
        frames.append([v.blank: 0.95])
        for c in ["e", "r", "o"] { frames += [[id(c): 0.9], [v.blank: 0.95]] }
        let m = logits(frames)
        let lm = NGramLanguageModel.train(sentences: digits, order: 2)
        func decode(_ lexicon: Lexicon?) -> String {
            let config = BeamSearchConfiguration.recognition(beamWidth: 16, lmWeight: 0.5, wordBonus: 1, hotwords: [],
                                                             withLanguageModel: true, lexicon: lexicon)
            var d = BeamSearchDecoder(configuration: config, languageModel: lm)
            return d.decode(m).text
        }
        #expect(decode(nil) != "zero", "open search: 'z' is never tried")
        // The root of the digits' trie has 7 letters (z o t f s e n), within top 8: all are tried.
        #expect(decode(Lexicon(words: digits, vocabulary: v)) == "zero")

        // A root with more letters than top-k: the likeliest allowed ones are tried, here 'k', which is
        // eleventh of its frame behind ten letters no word starts with.
        let letters = ["b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
        var k: [Int: Double] = [id("k"): 0.06]
        for c in ["l", "m", "n", "o", "p", "q", "r", "s", "t", "u"] { k[id(c)] = 0.08 }
        let single = logits([[v.blank: 0.95], k, [v.blank: 0.95]])
        let lexicon = Lexicon(words: letters, vocabulary: v)
        var d = BeamSearchDecoder(configuration: .init(beamWidth: 4, tokenTopK: 2, lexicon: lexicon))
        #expect(d.decode(single).text == "k")
    }

    @Test func aNarrowBeamKeepsACompleteWordWhenHalfSpelledOnesScoreHigher() throws {
        // "zer" said clearly, then an 'o' the acoustics barely hear (1e-4). Every prefix of "zero" scores
        // above "zero" itself, so a beam of two holds "zer" and "ze" and, unless slots are kept for
        // prefixes a transcript may end with, loses "zero": the audio would end mid-word, with nothing.
        let v = Vocabulary.earshot
        var frames = spelledFrames("zer")
        frames += [[v.tokenize("o")![0]: 1e-4, v.blank: 0.99], [v.blank: 0.95], [v.blank: 0.95]]
        let lexicon = Lexicon(words: ["zero", "one", "two"], vocabulary: v)
        var d = BeamSearchDecoder(configuration: .init(beamWidth: 2, tokenTopK: 8, wordInsertionBonus: 5, lexicon: lexicon))
        #expect(d.decode(logits(frames)).text == "zero")
    }

    @Test func lexiconTrieHoldsExactlyTheSpellableWords() {
        let lexicon = Lexicon(words: ["two", "to", "too", "tool", "t", "", "café", "two", "it's"], vocabulary: .earshot)
        #expect(lexicon.words == ["café", "it's", "t", "to", "too", "tool", "two"])
        #expect(lexicon.unspellable == ["café"])
        #expect(lexicon.spellableCount == 6)
        for w in ["two", "to", "too", "tool", "t", "it's"] { #expect(lexicon.contains(w), "\(w)") }
        for w in ["tw", "tools", "it", "café", "", "o"] { #expect(!lexicon.contains(w), "\(w)") }
        // root, t, to, too, tool, tw, two, i, it, it', it's
        #expect(lexicon.stateCount == 11)
        // Another vocabulary respells the same words.
        let upper = Vocabulary(tokens: ["_", " ", "T", "O", "W"], blank: 0, space: 1)
        #expect(Lexicon(words: ["TWO", "TO", "two"], vocabulary: upper).respelled(for: .earshot).contains("two"))
    }

    /// A negative hotword asks for a phrase less often: its words are not added to the words a search
    /// spells (the closed vocabulary, or the open search's list exempt from the letter cost).
    @Test func negativeHotwordsAddNoWords() throws {
        let lm = NGramLanguageModel.train(sentences: ["zero one", "two"], order: 2)
        let known = Lexicon.knownWords(of: lm, hotwords: [Hotword("foo", weight: -3), Hotword("bar", weight: 2)], vocabulary: .earshot)
        #expect(!known.contains("foo") && known.contains("bar"))
        let domain = try DomainDecoding.build(text: "zero\none\ntwo", vocabulary: .earshot, closedVocabulary: true)
        let lexicon = domain.lexicon(vocabulary: .earshot, extraHotwords: [Hotword("foo", weight: -3), Hotword("bar", weight: 2)])
        #expect(!lexicon.contains("foo") && lexicon.contains("bar") && lexicon.contains("zero"))
    }

    @Test func closedVocabularySettingRoundTripsAndDefaultsToOpenWhenAbsent() throws {
        let text = "zero\none\ntwo\nthree"
        let open = try DomainDecoding.build(text: text, vocabulary: .earshot)
        #expect(!open.closedVocabulary)
        #expect(open.searchConfiguration().lexicon == nil)
        let closed = try DomainDecoding.build(text: text, vocabulary: .earshot, closedVocabulary: true)
        #expect(closed.closedVocabulary)
        #expect(try DomainDecoding(json: closed.json()) == closed)
        #expect(closed.json().contains(#""closed_vocabulary":true"#))
        #expect(closed.summary().contains { $0.contains("closed") && $0.contains("4 domain words") })

        // JSON written before the key existed reads as open.
        var object = try JSONSerialization.jsonObject(with: Data(closed.json().utf8)) as! [String: Any]
        object.removeValue(forKey: "closed_vocabulary")
        let old = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        #expect(try DomainDecoding(json: old) == open)

        // The search it configures: closed to its words plus the hotwords' (a user's included), or open
        // when the caller overrides.
        let lexicon = try #require(closed.searchConfiguration(extraHotwords: [Hotword("hello world", weight: 3)]).lexicon)
        #expect(lexicon.words == ["hello", "one", "three", "two", "world", "zero"])
        #expect(closed.searchConfiguration(closedVocabulary: false).lexicon == nil)
        #expect(open.searchConfiguration(closedVocabulary: true).lexicon?.words == ["one", "three", "two", "zero"])
    }

    /// "zero" whose last frame says 'q' (60%), with 4% each on eight other letters and 2% on 'o': the
    /// open search's top 8 never holds the 'o'.
    static func garbledZero() -> Matrix {
        let v = Vocabulary.earshot
        func id(_ s: String) -> Int { v.tokenize(s)![0] }
        var frames = spelledFrames("zer")
        var last: [Int: Double] = [id("q"): 0.6, id("o"): 0.02]
        for c in ["a", "b", "c", "d", "g", "h", "i", "j"] { last[id(c)] = 0.04 }
        frames += [last, [v.blank: 0.95]]
        return logits(frames)
    }

    @Test func tuningChoosesTheVocabularyModeOnlyWhenAsked() throws {
        let domain = try DomainDecoding.build(text: "zero\none\ntwo\nzero one", vocabulary: .earshot)
        let posteriors = [Self.garbledZero(), logits(spelledFrames("one two"))]
        let references = ["zero", "one two"]
        let asStored = try domain.tuned(posteriors: posteriors, references: references, vocabulary: .earshot,
                                        lmWeights: [0.5], wordBonuses: [1])
        #expect(!asStored.decoding.closedVocabulary && asStored.wer > 0, "open: 'zero' cannot be reached")
        let both = try domain.tuned(posteriors: posteriors, references: references, vocabulary: .earshot,
                                    lmWeights: [0.5], wordBonuses: [1], closedVocabulary: [false, true])
        #expect(both.decoding.closedVocabulary && both.wer == 0)
        #expect(both.decoding.tuning?.wordErrorRatePercent == 0)
        #expect(both.decoding.beam == domain.beam, "a wider beam is kept only when it does better")
    }

    @Test func aTieBetweenModesGoesToClosedOnlyWhenTheReferencesStayInTheWordList() throws {
        let domain = try DomainDecoding.build(text: "zero\none\ntwo\nzero one", vocabulary: .earshot)
        // Cleanly spoken: both modes decode it perfectly.
        let clean = [logits(spelledFrames("one two")), logits(spelledFrames("zero"))]
        let listed = try domain.tuned(posteriors: clean, references: ["one two", "zero"], vocabulary: .earshot,
                                      lmWeights: [0.5], wordBonuses: [1], closedVocabulary: [false, true])
        #expect(listed.wer == 0 && listed.decoding.closedVocabulary)
        // The same tie (a recording of "zero" transcribed "cat": one error either way), but a reference word
        // outside the list: the data do not say the domain is closed, so the first mode listed stays.
        let unlisted = try domain.tuned(posteriors: clean + [logits(spelledFrames("zero"))], references: ["one two", "zero", "cat"],
                                        vocabulary: .earshot, lmWeights: [0.5], wordBonuses: [1], closedVocabulary: [false, true])
        #expect(unlisted.wer > 0)
        // It was a tie: closed alone does exactly as well.
        let closedOnly = try domain.tuned(posteriors: clean + [logits(spelledFrames("zero"))], references: ["one two", "zero", "cat"],
                                          vocabulary: .earshot, lmWeights: [0.5], wordBonuses: [1], closedVocabulary: [true])
        #expect(closedOnly.wer == unlisted.wer && closedOnly.decoding.closedVocabulary)
        #expect(!unlisted.decoding.closedVocabulary)
    }

    @Test func tuningSearchesTheUnknownWordPenalty() throws {
        // The domain never says "cat"; the audio does, faintly: each letter frame is the letter (60%) or
        // blank (40%), nothing else, so the beam holds every prefix and the empty transcript competes.
        // Saying "cat" gains ln 1.5 per letter (1.2 in all) plus the word bonus, less alpha times the
        // LM's <unk> costs (about 1): about +0.2 against the empty transcript's -0.8 end-of-sentence
        // term. The default penalty of -10 (and -5) deletes it, none lets it through.
        let domain = try DomainDecoding.build(text: "zero\none\ntwo", vocabulary: .earshot)
        let v = Vocabulary.earshot
        var frames: [[Int: Double]] = [[v.blank: 1]]
        for t in v.tokenize("cat")! { frames += [[t: 0.6, v.blank: 0.4], [v.blank: 1]] }
        let posteriors = [logits(frames)]
        func tune(_ penalties: [Double]) throws -> (decoding: DomainDecoding, wer: Double) {
            try domain.tuned(posteriors: posteriors, references: ["cat"], vocabulary: .earshot,
                             lmWeights: [0.5], wordBonuses: [1], unknownWordPenalties: penalties, beams: [])
        }
        let untuned = try tune([])
        #expect(untuned.wer == 100 && untuned.decoding.unknownWordPenalty == DomainDecoding.defaultUnknownWordPenalty)
        let tuned = try tune([-10, -5, 0])
        #expect(tuned.wer == 0)
        #expect(tuned.decoding.unknownWordPenalty == 0)
    }

    @Test func aTieInAClosedVocabularyGoesToTheLargestBonus() throws {
        // Cleanly spoken words decode perfectly at every grid point: the tie goes to the largest bonus in
        // a closed vocabulary (first weight), and to the first grid point in an open one.
        let domain = try DomainDecoding.build(text: "zero\none\ntwo\nzero one", vocabulary: .earshot)
        let clean = [logits(spelledFrames("one two")), logits(spelledFrames("zero"))]
        func tuned(_ closed: Bool) throws -> DomainDecoding {
            let r = try domain.tuned(posteriors: clean, references: ["one two", "zero"], vocabulary: .earshot,
                                     lmWeights: [0.5, 1], wordBonuses: [-1, 0, 5, 2], beams: [], closedVocabulary: [closed])
            #expect(r.wer == 0)
            return r.decoding
        }
        let closed = try tuned(true), open = try tuned(false)
        #expect(closed.closedVocabulary && closed.lmWeight == 0.5 && closed.wordBonus == 5)
        #expect(!open.closedVocabulary && open.lmWeight == 0.5 && open.wordBonus == -1)
    }
}
