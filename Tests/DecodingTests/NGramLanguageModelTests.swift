import Foundation
import Testing
@testable import Decoding

@Suite struct NGramLanguageModelTests {
    static let tinyARPA = """
    Some header text that loaders must skip.

    \\data\\
    ngram 1=5
    ngram 2=4
    ngram 3=2

    \\1-grams:
    -1.0\t<s>\t-0.5
    -0.7\t</s>
    -0.6\ta\t-0.3
    -0.8\tb\t-0.2
    -1.2\t<unk>

    \\2-grams:
    -0.3\t<s> a\t-0.1
    -0.4\ta b\t-0.25
    -0.5\tb </s>
    -0.2\ta a

    \\3-grams:
    -0.15\t<s> a b
    -0.05\ta b </s>

    \\end\\
    """

    /// Expected values worked out by hand from the file above (log10), following ARPA back-off.
    @Test func scoresHandComputedCasesWithBackoff() throws {
        let lm = try NGramLanguageModel(arpaText: Self.tinyARPA)
        #expect(lm.order == 3)
        let cases: [(String, [String], Double)] = [
            ("b", ["<s>", "a"], -0.15),             // trigram stored
            ("</s>", ["a", "b"], -0.05),            // trigram stored
            ("a", ["<s>", "a"], -0.1 + -0.2),       // bo(<s> a) + p(a | a)
            ("</s>", ["<s>", "a"], -0.1 + -0.3 + -0.7), // bo(<s> a) + bo(a) + p(</s>)
            ("b", ["b", "a"], -0.4),                // context "b a" absent: no back-off weight, p(b | a)
            ("a", ["b"], -0.2 + -0.6),              // bo(b) + p(a)
            ("a", ["a", "b"], -0.25 + -0.2 + -0.6), // bo(a b) + bo(b) + p(a)
            ("zebra", ["a"], -0.3 + -1.2),          // unknown word scored as <unk>
            ("a", [], -0.6),
            ("b", ["x", "y", "<s>", "a"], -0.15),   // only the last order-1 words count
        ]
        for (word, history, log10p) in cases {
            let got = lm.logProbability(word, history: history)
            // Values are stored as Float log10: ~1e-7 relative.
            #expect(abs(got - log10p * log(10.0)) < 1e-6, "p(\(word) | \(history))")
        }
    }

    func expectMalformed(_ text: String, line: Int, containing fragment: String) {
        do {
            _ = try NGramLanguageModel(arpaText: text, name: "bad.arpa")
            Issue.record("expected a malformed-line error")
        } catch let error as LanguageModelError {
            guard case let .malformed(file, l, reason) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(file == "bad.arpa")
            #expect(l == line, "\(error)")
            #expect(reason.contains(fragment), "\(reason)")
            #expect(error.description.hasPrefix("bad.arpa:\(line): "))
        } catch {
            Issue.record("untyped error \(error)")
        }
    }

    @Test func malformedLinesAreReportedWithFileAndLineNumber() {
        let lines = Self.tinyARPA.components(separatedBy: "\n")
        func replacing(_ index: Int, with s: String) -> String {
            var l = lines
            l[index] = s
            return l.joined(separator: "\n")
        }
        let unigramLine = lines.firstIndex { $0.contains("\tb\t-0.2") }!
        expectMalformed(replacing(unigramLine, with: "-0.8x\tb\t-0.2"), line: unigramLine + 1, containing: "not a number")
        let bigramLine = lines.firstIndex { $0.contains("a b\t-0.25") }!
        expectMalformed(replacing(bigramLine, with: "-0.4\ta"), line: bigramLine + 1, containing: "fields")
        expectMalformed(replacing(bigramLine, with: "-0.4\ta zz\t-0.2"), line: bigramLine + 1, containing: "'zz'")
        expectMalformed(replacing(bigramLine, with: "-0.3\t<s> a"), line: bigramLine + 1, containing: "duplicate")
        let countLine = lines.firstIndex { $0.hasPrefix("ngram 2") }!
        expectMalformed(replacing(countLine, with: "ngram two=4"), line: countLine + 1, containing: "ngram N=count")
    }

    @Test func structuralErrorsNameTheProblem() {
        #expect(throws: LanguageModelError.countMismatch(file: "x.arpa", order: 2, declared: 5, found: 4)) {
            try NGramLanguageModel(arpaText: Self.tinyARPA.replacingOccurrences(of: "ngram 2=4", with: "ngram 2=5"), name: "x.arpa")
        }
        #expect(throws: LanguageModelError.missingSection(file: "x.arpa", section: "\\end\\")) {
            try NGramLanguageModel(arpaText: Self.tinyARPA.replacingOccurrences(of: "\\end\\", with: ""), name: "x.arpa")
        }
        #expect(throws: LanguageModelError.missingSection(file: "x.arpa", section: "\\data\\")) {
            try NGramLanguageModel(arpaText: "just text\n", name: "x.arpa")
        }
        // A section past the declared order (the header lost its 'ngram 3=' line), with n-grams in it or
        // empty, is refused, naming the section: the tables are sized by the header.
        for arpa in [Self.tinyARPA.replacingOccurrences(of: "ngram 3=2\n", with: ""),
                     "\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0 a\n\n\\2-grams:\n\n\\end\\\n"] {
            #expect {
                try NGramLanguageModel(arpaText: arpa, name: "x.arpa")
            } throws: { error in
                guard case .malformed(let file, _, let reason) = error as? LanguageModelError else { return false }
                return file == "x.arpa" && reason.contains("expected \\end\\ after the") && reason.contains("-grams:")
            }
        }
        let missing = URL(fileURLWithPath: "/nonexistent/earshot.arpa")
        #expect {
            try NGramLanguageModel(arpaFile: missing)
        } throws: { error in
            (error as? LanguageModelError)?.description.contains("/nonexistent/earshot.arpa") == true
        }
    }

    static let corpus = [
        "the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
        "the cat ate", "on the mat the cat slept", "dogs and cats",
    ]

    @Test func trainedModelMatchesHandComputedWittenBell() throws {
        // Corpus "a b" / "a": predicted tokens a b </s> a </s>: c(a)=2 c(b)=1 c(</s>)=2, N=5, 3 types,
        // vocabulary {</s>, <unk>, a, b} of 4.
        let lm = NGramLanguageModel.train(sentences: ["a b", "a"], order: 2)
        let pa = (2 + 3.0 / 4) / (5 + 3)
        let pb = (1 + 3.0 / 4) / (5 + 3)
        let punk = (0 + 3.0 / 4) / (5 + 3)
        #expect(abs(lm.logProbability("a", history: []) - log(pa)) < 1e-6)
        #expect(abs(lm.logProbability("<unk>", history: []) - log(punk)) < 1e-6)
        // After "a": c(a b)=1, c(a .)=2, T(a)=2.
        #expect(abs(lm.logProbability("b", history: ["a"]) - log((1 + 2 * pb) / 4)) < 1e-6)
    }

    @Test func trainedModelProbabilitiesSumToOneForAnyHistory() throws {
        for order in [1, 2, 3, 4, 5] {
            let trained = NGramLanguageModel.train(sentences: Self.corpus, order: order)
            // Through ARPA text and back, as `earshot adapt --text` will use it.
            let lm = try NGramLanguageModel(arpaText: trained.arpaText())
            let predicted = lm.words.filter { $0 != NGramLanguageModel.sentenceStart }
            let histories: [[String]] = [[], ["<s>"], ["the"], ["<s>", "the"], ["the", "cat"], ["sat", "on", "the"],
                                         ["mat", "mat", "mat"], ["<unk>", "cat"], ["dogs", "and"]]
            for h in histories {
                let sum = predicted.reduce(0.0) { $0 + exp(lm.logProbability($1, history: h)) }
                // Log10 values are stored as Float (7 digits): the sum is exact to ~1e-6.
                #expect(abs(sum - 1) < 1e-4, "order \(order) history \(h): \(sum)")
            }
        }
    }

    @Test func arpaRoundTripPreservesEveryProbability() throws {
        let trained = NGramLanguageModel.train(sentences: Self.corpus, order: 3)
        let text = trained.arpaText()
        let reread = try NGramLanguageModel(arpaText: text)
        #expect(reread.arpaText() == text)
        for n in 1...3 { #expect(reread.count(order: n) == trained.count(order: n)) }
        for w in trained.words {
            for h in [["the"], ["on", "the"], ["a"], []] {
                #expect(reread.logProbability(w, history: h) == trained.logProbability(w, history: h))
            }
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-\(UUID()).arpa")
        defer { try? FileManager.default.removeItem(at: url) }
        try trained.writeARPA(to: url)
        let fromFile = try NGramLanguageModel(arpaFile: url)
        #expect(fromFile.arpaText() == text)
    }

    @Test func missingPrefixesBecomeContextsWithoutProbability() throws {
        // The trigram "b a b" has no "b a" bigram: it must still be reachable, and "b a" must not
        // become a probability.
        let text = """
        \\data\\
        ngram 1=3
        ngram 2=1
        ngram 3=1

        \\1-grams:
        -0.5 a -0.1
        -0.5 b -0.2
        -0.9 </s>

        \\2-grams:
        -0.3 a b -0.05

        \\3-grams:
        -0.01 b a b

        \\end\\
        """
        let lm = try NGramLanguageModel(arpaText: text)
        #expect(abs(lm.logProbability("b", history: ["b", "a"]) - (-0.01 * log(10.0))) < 1e-6)
        #expect(abs(lm.logProbability("a", history: ["b"]) - ((-0.2 - 0.5) * log(10.0))) < 1e-6)
        #expect(lm.count(order: 2) == 1)
    }
}
