import Foundation
import Tensors
import Testing
@testable import Decoding

@Suite struct DomainDecodingTests {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Domain text with what normalisation must handle: capitals, punctuation, a typographic apostrophe,
    /// a blank line, digits and an accented word (unspeakable: `<unk>`).
    static let text = """
        Ada Lovelace wrote the first program.
        The program ran on the Analytical Engine!

        ada’s notes were 42 pages; the café printed them.
        the engine ran the program
        """

    /// Interpolated Witten-Bell written from its definition (not in back-off form), with its own
    /// normalisation: an independent reference for what `build` + `NGramLanguageModel.train` store.
    static let reference = #"""
import json, math, sys
order = int(sys.argv[1]); text = sys.stdin.read(); queries = json.loads(sys.argv[2])
letters = set("abcdefghijklmnopqrstuvwxyz'")
sents = []
for line in text.split("\n"):
    line = line.lower().replace("\u2019", "'")
    words = "".join(c if (c.isalpha() or c.isdigit() or c == "'") else " " for c in line).split()
    if words: sents.append([w if set(w) <= letters else "<unk>" for w in words])
counts = {}
for s in sents:
    toks = ["<s>"] + s + ["</s>"]
    for i in range(1, len(toks)):
        for n in range(1, order + 1):
            if i - n + 1 >= 0:
                g = tuple(toks[i - n + 1:i + 1]); counts[g] = counts.get(g, 0) + 1
vocab = {w for s in sents for w in s} | {"</s>", "<unk>"}
uni = {g: c for g, c in counts.items() if len(g) == 1}
N = sum(uni.values()); T = len(uni)
def p(w, h):
    h = tuple(h[-(order - 1):]) if order > 1 else ()
    if not h: return (uni.get((w,), 0) + T / len(vocab)) / (N + T)
    follow = {g[-1]: c for g, c in counts.items() if len(g) == len(h) + 1 and g[:-1] == h}
    lower = p(w, h[1:])
    if not follow: return lower
    total = sum(follow.values()); t = len(follow)
    return (follow.get(w, 0) + t * lower) / (total + t)
# A word outside the vocabulary is scored as <unk>, as ARPA readers do.
print(json.dumps([math.log(p(w if w in vocab else "<unk>", h)) for w, h in queries]))
"""#

    static func python() throws -> String {
        let path = ProcessInfo.processInfo.environment["EARSHOT_TEST_PYTHON"]
            ?? packageRoot.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failure("the test Python \(path) is missing: run scripts/setup.sh")
        }
        return path
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func runReference(order: Int, queries: [(String, [String])]) throws -> [Double] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try python())
        let q = String(decoding: try JSONSerialization.data(withJSONObject: queries.map { [$0.0, $0.1] as [Any] }), as: UTF8.self)
        process.arguments = ["-c", reference, String(order), q]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input; process.standardOutput = output; process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure("reference failed: \(String(decoding: err, as: UTF8.self))") }
        return try JSONDecoder().decode([Double].self, from: data)
    }

    @Test func domainLMMatchesAnIndependentWittenBellReference() throws {
        let queries: [(String, [String])] = [
            ("ada", []), ("the", []), ("<unk>", []), ("</s>", []), ("zebra", []),
            ("lovelace", ["<s>", "ada"]), ("program", ["the", "first"]), ("program", ["ran", "the"]),
            ("engine", ["the"]), ("ran", ["engine"]), ("the", ["<s>"]), ("</s>", ["the", "program"]),
            ("wrote", ["lovelace"]), ("notes", ["ada's"]), ("pages", ["<unk>"]), ("printed", ["the", "<unk>"]),
            ("ada", ["program", "ran"]), ("engine", ["ada", "lovelace"]),
        ]
        for order in [2, 3] {
            let built = try DomainDecoding.build(text: Self.text, vocabulary: .earshot, order: order)
            // Through the stored JSON, as a model file carries it.
            let lm = try DomainDecoding(json: built.json()).languageModel()
            let expected = try Self.runReference(order: order, queries: queries)
            for ((word, history), want) in zip(queries, expected) {
                let got = lm.logProbability(word, history: history)
                // ARPA stores log10 values as Float: ~6e-8 relative error on values below 10 in magnitude.
                #expect(abs(got - want) < 1e-5, "order \(order): ln p(\(word) | \(history)) = \(got), reference \(want)")
            }
        }
    }

    @Test func buildKeepsSpeakableWordsAndListsTheOthers() throws {
        let d = try DomainDecoding.build(text: Self.text, vocabulary: .earshot)
        #expect(d.words.contains("ada's") && d.words.contains("lovelace") && d.words.contains("engine"))
        #expect(!d.words.contains("42") && !d.words.contains("café"))
        #expect(d.skippedWords == ["42", "café"])
        #expect(d.order == 3 && d.lmWeight == DomainDecoding.defaultLMWeight && d.beam == DomainDecoding.defaultBeam)
    }

    @Test func hotwordsAreNamesAndWordsRareInTheGeneralLM() throws {
        // Without a general LM only runs of two or more capitalised words are picked ("The" alone is not).
        let alone = try DomainDecoding.build(text: Self.text, vocabulary: .earshot)
        #expect(alone.hotwords.map(\.phrase) == ["ada lovelace", "analytical engine"])
        #expect(alone.hotwords.allSatisfy { $0.weight == DomainDecoding.defaultHotwordWeight })
        // A sentence's capital is not part of the name after it, unless the word is capitalised inside
        // a line too; a two-word name starting its line keeps both words.
        let sentences = try DomainDecoding.build(text: "Call Ada Lovelace\nEmail Grace Hopper tomorrow\nI met Alan Turing\n"
                                                    + "John Ronald Tolkien wrote\nask John Smith\nGrace Hopper called", vocabulary: .earshot)
        #expect(sentences.hotwords.map(\.phrase) == ["ada lovelace", "grace hopper", "alan turing", "john ronald tolkien", "john smith"])
        // Commands written in title case are not names: a capitalised function word inside the name
        // or leading it gives it away ("The" may lead a name, "A" inside one is an initial).
        let titled = try DomainDecoding.build(text: "Turn On The Kitchen Lights\nSet An Alarm For Seven\nSet A Timer\nPlay Jazz Radio\n"
                                                  + "play The Beatles\nPlay The Rolling Stones\nmet Chester A Arthur",
                                              vocabulary: .earshot)
        #expect(titled.hotwords.map(\.phrase) == ["jazz radio", "the beatles", "the rolling stones", "chester a arthur"])
        // With one, domain words it lacks (or gives log10 p < -6) join them, rarest first, ties
        // alphabetical; words it knows well do not: seen once in 555 tokens is log10 p = -2.5.
        let general = NGramLanguageModel.train(
            sentences: Array(repeating: "the program ran on the engine and the notes were printed", count: 50)
                + ["wrote first pages them"], order: 1)
        let rare = try DomainDecoding.build(text: Self.text, vocabulary: .earshot, generalLM: general)
        #expect(rare.hotwords.map(\.phrase) == ["ada lovelace", "analytical engine", "ada", "ada's", "analytical", "lovelace"])
        // A word known with log10 p = -6.5 is rare, one with -5.5 is not (threshold -6).
        let arpa = "\\data\\\nngram 1=4\n\n\\1-grams:\n-0.01\t</s>\n-2\t<unk>\n-6.5\tlovelace\n-5.5\twrote\n\n\\end\\\n"
        let threshold = try DomainDecoding.build(text: "Lovelace wrote", vocabulary: .earshot,
                                                 generalLM: try NGramLanguageModel(arpaText: arpa))
        #expect(threshold.hotwords.map(\.phrase) == ["lovelace"])
        // Words shorter than three characters are never single hotwords, however rare.
        #expect(try DomainDecoding.build(text: "an ox", vocabulary: .earshot, generalLM: general).hotwords.isEmpty)
    }

    @Test func textWithoutUsableWordsIsRefusedNamingTheLine() {
        #expect(throws: DomainDecodingError.emptyText) { try DomainDecoding.build(text: "", vocabulary: .earshot) }
        #expect(throws: DomainDecodingError.emptyText) { try DomainDecoding.build(text: "\n -- !!\n\n", vocabulary: .earshot) }
        do {
            _ = try DomainDecoding.build(text: "open the door\n\n12 34\n", vocabulary: .earshot)
            Issue.record("a line of digits was accepted")
        } catch {
            #expect(error == .noSpeakableWords(line: 3, text: "12 34", letters: "'abcdefghijklmnopqrstuvwxyz"))
            #expect(error.description.contains("line 3") && error.description.contains("12 34"), "\(error)")
        }
        #expect(throws: DomainDecodingError.badOrder(0)) { try DomainDecoding.build(text: "a b", vocabulary: .earshot, order: 0) }
    }

    @Test func storedJSONRoundTripsAndDamageIsRefused() throws {
        var d = try DomainDecoding.build(text: Self.text, vocabulary: .earshot)
        d.tuning = .init(wordErrorRatePercent: 12.5, utterances: 4, words: 8)
        #expect(try DomainDecoding(json: d.json()) == d)

        func refused(_ edit: (inout [String: Any]) -> Void, _ expectation: String) throws {
            var object = try JSONSerialization.jsonObject(with: Data(d.json().utf8)) as! [String: Any]
            edit(&object)
            let json = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
            do {
                _ = try DomainDecoding(json: json)
                Issue.record("accepted: \(expectation)")
            } catch {
                #expect(error.description.contains(expectation), "\(error)")
            }
        }
        try refused({ $0["arpa"] = "\\data\\\nngram 1=2\n\n\\1-grams:\n-1 a\n\\end\\\n" }, "declares 2 1-grams")
        try refused({ $0["format"] = "something-else" }, "format is 'something-else'")
        try refused({ $0["beam"] = 0 }, "beam 0")
        try refused({ $0["order"] = 2 }, "the ARPA text has order 3")
        try refused({ $0.removeValue(forKey: "lm_weight") }, "lm_weight")
        try refused({ $0["format_version"] = 2 }, "format_version 2")

        let huge = String(repeating: "x", count: DomainDecoding.maximumJSONBytes + 1)
        #expect(throws: DomainDecodingError.tooLarge(bytes: huge.utf8.count, limit: DomainDecoding.maximumJSONBytes)) {
            try DomainDecoding(json: huge)
        }
    }

    /// "the do" then a last letter the acoustics call 't' with probability `t` and 'g' with 1 - t.
    static func theDog(t: Double) -> Matrix {
        let v = Vocabulary.earshot
        var frames = spelledFrames("the do")
        frames.append([v.tokenize("t")![0]: t * 0.98, v.tokenize("g")![0]: (1 - t) * 0.98])
        frames.append([v.blank: 0.95])
        return logits(frames)
    }

    @Test func tuningPicksTheWeightsWithTheLowestWER() throws {
        // The domain says "the dog" nine times as often as "the dot": ln p(dog | <s> the) - ln p(dot | <s> the)
        // is about 2. Utterance 1 is "the dog" with acoustics leaning to "dot" (ln 0.6/0.4 = 0.41);
        // utterance 2 is "the dot" said clearly (ln 0.95/0.05 = 2.9). An LM weight below 0.2 loses the
        // first, one above 1.5 loses the second; only a middle weight gets both right.
        let domain = try DomainDecoding.build(text: String(repeating: "the dog\n", count: 9) + "the dot", vocabulary: .earshot)
        let posteriors = [Self.theDog(t: 0.6), Self.theDog(t: 0.95)]
        let references = ["the dog", "The dot."]
        func wer(_ a: Double) throws -> Double {
            try domain.tuned(posteriors: posteriors, references: references, vocabulary: .earshot,
                             lmWeights: [a], wordBonuses: [0]).wer
        }
        #expect(try wer(0) == 25, "no LM: 'dot' for both")
        #expect(try wer(5) == 25, "LM dominates: 'dog' for both")
        #expect(try wer(0.5) == 0)
        let (tuned, best) = try domain.tuned(posteriors: posteriors, references: references, vocabulary: .earshot,
                                             lmWeights: [0, 5, 0.5, 0.75], wordBonuses: [0, 1])
        #expect(best == 0)
        #expect(tuned.lmWeight == 0.5 && tuned.wordBonus == 0, "ties go to the first grid point")
        #expect(tuned.tuning == .init(wordErrorRatePercent: 0, utterances: 2, words: 4))
        #expect(tuned.arpa == domain.arpa && tuned.hotwords == domain.hotwords)

        #expect(throws: DomainDecodingError.self) {
            try domain.tuned(posteriors: posteriors, references: ["the dog"], vocabulary: .earshot)
        }
        #expect(throws: DomainDecodingError.self) {
            try domain.tuned(posteriors: posteriors, references: ["", "!"], vocabulary: .earshot)
        }
    }

    @Test func wordEditDistanceCountsSubstitutionsDeletionsAndInsertions() {
        #expect(wordEditDistance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2)
        #expect(wordEditDistance([], ["a"]) == 1)
        #expect(wordEditDistance(["a", "b"], []) == 2)
        #expect(wordEditDistance(["a", "b", "c"], ["b", "c", "a"]) == 2)
    }
}
