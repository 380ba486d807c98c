import Foundation
import Testing
import TestSupport
import Tensors
@testable import Decoding

/// Inputs that used to trap, hang, grow without bound or silently lose the beam.
@Suite struct RobustnessTests {
    let vocab = Vocabulary.earshot

    // MARK: ARPA files

    @Test(arguments: ["ngram 1=5", "ngram 2=4"])
    func absurdDeclaredCountIsACountMismatchNotAHugeReservation(line: String) throws {
        let order = line.hasPrefix("ngram 1") ? 1 : 2
        let found = order == 1 ? 5 : 4
        let text = NGramLanguageModelTests.tinyARPA.replacingOccurrences(of: line, with: "ngram \(order)=1000000000000")
        #expect(throws: LanguageModelError.countMismatch(file: "huge.arpa", order: order, declared: 1_000_000_000_000, found: found)) {
            try NGramLanguageModel(arpaText: text, name: "huge.arpa")
        }
    }

    /// Latin-1 bytes in a word are refused with the line, not turned into U+FFFD (two such words would
    /// have been reported as a duplicate neither file has).
    @Test func aWordThatIsNotUTF8IsRefusedWithItsLine() throws {
        let latin1 = Array("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.5\ta\n-0.5\tcaf".utf8) + [0xE9] + Array("\n\n\\end\\\n".utf8)
        do {
            _ = try NGramLanguageModel(arpaBytes: latin1, name: "latin1.arpa")
            Issue.record("a Latin-1 word loaded")
        } catch let error as LanguageModelError {
            guard case .malformed(let file, let line, let reason) = error else { Issue.record("got \(error)"); return }
            #expect(file == "latin1.arpa" && line == 6 && reason.contains("not UTF-8"), "\(error)")
        }
    }

    @Test func aByteOrderMarkBeforeTheHeaderIsSkipped() throws {
        let plain = try NGramLanguageModel(arpaText: "\\data\\\nngram 1=2\n\n\\1-grams:\n-0.5\ta\n-0.5\tb\n\n\\end\\\n")
        let marked = try NGramLanguageModel(arpaBytes: [0xEF, 0xBB, 0xBF] + Array("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.5\ta\n-0.5\tb\n\n\\end\\\n".utf8), name: "bom.arpa")
        #expect(marked.words == plain.words && plain.words.count == 2)
    }

    @Test(.timeLimit(.minutes(1)))
    func namedPipeIsRefusedWithoutWaitingForAWriter() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-lm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("lm.arpa").path
        try #require(mkfifo(path, 0o600) == 0)
        // Both the ARPA reader and the format-sniffing loader (which peeks at the first bytes) refuse it.
        for load in [{ try NGramLanguageModel(arpaFile: $0) }, { try NGramLanguageModel(file: $0) }] as [@Sendable (URL) throws -> NGramLanguageModel] {
            let outcome = try returnsPromptly(unblocking: path) { () -> String in
                do { _ = try load(URL(fileURLWithPath: path)); return "loaded" } catch { return "\(error)" }
            }
            #expect(outcome == LanguageModelError.unreadable(file: path, reason: "not a regular file").description)
        }
    }

    // MARK: vocabulary from a model's token list

    @Test func vocabularyFromTokensNeverTakesTheBlankAsSpace() {
        #expect(Vocabulary(ctcTokens: Vocabulary.earshot.tokens) == .earshot)
        let odd = Vocabulary(ctcTokens: [" ", "a", " "])
        #expect(odd.blank == 0 && odd.space == 2)
        #expect(Vocabulary(ctcTokens: [" ", "a"]).space == nil)
    }

    // MARK: beam search

    @Test func childrenOfVocabulariesBeyond65536TokensStayDistinct() {
        // With 16-bit keys, (root, token 65538) and (node 1, token 2) collided: the second word's first
        // token was taken for a repeat of the first token.
        var tokens = ["<blank>", " "]
        for i in 2..<65_540 { tokens.append("t\(i)") }
        let big = Vocabulary(tokens: tokens, blank: 0, space: 1)
        let m = logits([[65_538: 0.99], [0: 0.99], [2: 0.99], [0: 0.99]], vocabulary: big)
        var d = BeamSearchDecoder(vocabulary: big, configuration: BeamSearchConfiguration(beamWidth: 2, tokenTopK: 1))
        d.accept(m)
        #expect(d.hypotheses().first?.tokens == [65_538, 2])
        #expect(d.finalize().text == "t65538t2")
    }

    /// Random peaky frames exercising words, the LM, hotwords and pruning.
    func randomFrames(_ rows: Int, using rng: inout SplitMix64) -> Matrix {
        var m = randomLogits(rows: rows, cols: vocab.count, scale: 3, using: &rng)
        for r in 0..<m.rows where r % 3 == 0 { m[r, vocab.blank] += 5 }
        for r in 0..<m.rows where r % 7 == 0 { m[r, vocab.space!] += 6 }
        return m
    }

    @Test func compactionNeverChangesTheResult() {
        var rng = SplitMix64(seed: 7)
        let lm = NGramLanguageModel.train(sentences: ["a b c", "the cat sat on the mat", "hello world", "a cat"], order: 3)
        let configs = [
            BeamSearchConfiguration(beamWidth: 6, lmWeight: 0.7, wordInsertionBonus: 0.5,
                                    hotwords: [Hotword("cat", weight: 2), Hotword("on the mat", weight: 1)], hotwordPrefixBonus: 0.3),
            BeamSearchConfiguration(beamWidth: 8, tokenTopK: 5, tokenCumulativeProbability: 0.95, blankSkipThreshold: 0.9,
                                    lmWeight: 0.7, hotwords: [Hotword("cat", weight: 2)], hotwordPrefixBonus: 0.3),
        ]
        for config in configs {
            for _ in 0..<4 {
                let m = randomFrames(150, using: &rng)
                var never = BeamSearchDecoder(configuration: config, languageModel: lm)
                never.compaction = .never
                var always = BeamSearchDecoder(configuration: config, languageModel: lm)
                always.compaction = .everyFrame
                for chunk in randomChunks(m, using: &rng) {
                    never.accept(chunk)
                    always.accept(chunk)
                    #expect(always.partial() == never.partial())
                    #expect(always.hypotheses() == never.hypotheses())
                }
                #expect(always.nodeCount < never.nodeCount)
                #expect(always.finalHypotheses() == never.finalHypotheses())
                let expected = never.finalize()
                #expect(always.finalize() == expected)
                #expect(!expected.text.isEmpty)
                // And the decoder starts the next utterance exactly as a fresh one.
                #expect(always.decode(m) == expected)
            }
        }
    }

    /// Speech-like frames: a token about every third frame (its posterior 0.6-0.95, a space now and
    /// then), confident blanks in between.
    func speechLikeFrames(_ rows: Int, using rng: inout SplitMix64) -> Matrix {
        var m = randomLogits(rows: rows, cols: vocab.count, scale: 1, using: &rng)
        for r in 0..<rows {
            if Int.random(in: 0..<3, using: &rng) == 0 {
                let token = Int.random(in: 0..<8, using: &rng) == 0 ? vocab.space! : Int.random(in: 2..<vocab.count, using: &rng)
                m[r, token] += Float.random(in: 3...6, using: &rng)
            } else {
                m[r, vocab.blank] += 8
            }
        }
        return m
    }

    @Test func treeStaysBoundedOverALongUtterance() {
        var rng = SplitMix64(seed: 11)
        let config = BeamSearchConfiguration(beamWidth: 4, tokenTopK: 3, blankSkipThreshold: 0.99, hotwords: [Hotword("cat", weight: 1)])
        let frames = 50_000, chunk = 1000
        var d = BeamSearchDecoder(configuration: config)
        var never = BeamSearchDecoder(configuration: config)
        never.compaction = .never
        var peak = 0
        for _ in 0..<(frames / chunk) {
            let m = speechLikeFrames(chunk, using: &rng)
            d.accept(m)
            never.accept(m)
            peak = max(peak, d.nodeCount + d.recordCount)
        }
        let depth = d.hypotheses().map(\.tokens.count).max() ?? 0
        // What the live beam can need: a chain of nodes and one of records per hypothesis. Compaction
        // runs once the trees have doubled since the last one; one frame adds at most
        // beam x (candidates + 1) entries.
        let live = 2 * config.beamWidth * (depth + 1)
        let bound = 2 * max(BeamSearchDecoder.Compaction.minimumSize, live) + config.beamWidth * 4
        #expect(peak <= bound, "peak \(peak) nodes + records, \(depth) tokens deep")
        // The input is long enough to matter: keeping every tried extension exceeds the bound.
        #expect(never.nodeCount + never.recordCount > bound)
        // Words no live hypothesis spells are forgotten too.
        #expect(d.wordCount < never.wordCount)
        #expect(d.finalize() == never.finalize())
    }

    // MARK: non-finite logits

    /// "go" spelled with the "o" held over frames 3 and 5, and frame 4 replaced by `bad`.
    func heldTokenAcross(_ bad: [Float]) -> Matrix {
        let g = vocab.tokenize("g")![0], o = vocab.tokenize("o")![0]
        var m = logits([[vocab.blank: 0.95], [g: 0.9], [vocab.blank: 0.95], [o: 0.9], [o: 0.9], [o: 0.9], [vocab.blank: 0.95]])
        for c in 0..<m.cols { m[4, c] = bad[c % bad.count] }
        return m
    }

    static let badFrames: [[Float]] = [[.nan], [.infinity, 0], [-.infinity], [1, .nan, 2]]

    @Test(arguments: badFrames)
    func beamSearchSkipsANonFiniteFrame(bad: [Float]) throws {
        var d = BeamSearchDecoder(configuration: BeamSearchConfiguration(beamWidth: 4))
        let m = heldTokenAcross(bad)
        d.accept(m.rows(0..<5))
        #expect(!d.hypotheses().isEmpty, "the beam must survive the bad frame")
        d.accept(m.rows(5..<m.rows))
        let t = d.finalize()
        #expect(t.text == "go")
        // The frame clock still counts the skipped frame: "go" ends with frame 5.
        let word = try #require(t.words.first)
        #expect(abs(word.end - 6 * 0.04) < 1e-12)
    }

    @Test(arguments: badFrames)
    func greedySkipsANonFiniteFrame(bad: [Float]) throws {
        var d = GreedyDecoder()
        let t = d.decode(heldTokenAcross(bad))
        #expect(t.text == "go")
        let word = try #require(t.words.first)
        #expect(abs(word.end - 6 * 0.04) < 1e-12)
        #expect(word.confidence.isFinite)
    }
}
