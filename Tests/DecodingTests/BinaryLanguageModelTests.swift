import Foundation
import Testing
import Tensors
@testable import Decoding

@Suite struct BinaryLanguageModelTests {
    static let missingPrefixARPA = """
    \\data\\
    ngram 1=4
    ngram 2=2
    ngram 3=2

    \\1-grams:
    -0.5 a -0.1
    -0.5 b -0.2
    -0.9 </s>
    -1.5 <unk>

    \\2-grams:
    -0.3 a b -0.05
    -0.4 b b -0.07

    \\3-grams:
    -0.01 b a b
    -0.02 a b b

    \\end\\
    """

    func temporaryURL(_ suffix: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("earshot-lm-\(UUID().uuidString).\(suffix)")
    }

    /// Every word after every history of up to `order - 1` words (and a few unknown ones) scores the same.
    func expectSameScores(_ a: NGramLanguageModel, _ b: NGramLanguageModel, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.words == b.words, sourceLocation: sourceLocation)
        #expect(a.order == b.order, sourceLocation: sourceLocation)
        let vocabulary = a.words + ["never-seen"]
        var histories: [[String]] = [[]]
        for _ in 1..<max(2, a.order) { histories = histories + histories.flatMap { h in vocabulary.map { h + [$0] } } }
        for h in Set(histories.map { $0.joined(separator: " ") }) {
            let history = h.isEmpty ? [] : h.split(separator: " ").map(String.init)
            for w in vocabulary {
                #expect(a.logProbability(w, history: history) == b.logProbability(w, history: history), "\(w) | \(h)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test(arguments: ["tiny", "missing prefixes", "trained"])
    func binaryRoundTripScoresEveryHistoryExactly(_ which: String) throws {
        let lm: NGramLanguageModel
        switch which {
        case "tiny": lm = try NGramLanguageModel(arpaText: NGramLanguageModelTests.tinyARPA)
        case "missing prefixes": lm = try NGramLanguageModel(arpaText: Self.missingPrefixARPA)
        default: lm = NGramLanguageModel.train(sentences: NGramLanguageModelTests.corpus, order: 3)
        }
        let url = temporaryURL("eslm")
        defer { try? FileManager.default.removeItem(at: url) }
        try lm.writeBinary(to: url)
        #expect(NGramLanguageModel.isBinaryFile(url))
        let reread = try NGramLanguageModel(file: url)
        expectSameScores(lm, reread)
        #expect(reread.arpaText() == lm.arpaText())
        for n in 1...lm.order { #expect(reread.count(order: n) == lm.count(order: n)) }
        // The same bytes again: the format has one encoding per model.
        #expect(reread.binaryBytes() == lm.binaryBytes())
    }

    /// The trie lookup (bisection within each context's followers) against a plain reading of the ARPA
    /// back-off rule over a dictionary of the file's n-grams, on a generated 300k n-gram model.
    @Test func trieLookupAgreesWithAPlainBackoffReference() throws {
        let (text, _) = LargeLanguageModelTests().syntheticARPA(unigrams: 5000, bigramsPerWord: 12, trigramsPerBigram: 3)
        var table: [String: (p: Double, b: Double)] = [:]
        var unigrams: [String] = []
        var followers: [String: [String]] = [:]  // "h1 h2" -> the words of its stored trigrams
        var section = 0
        for line in text.split(separator: "\n") {
            if line.hasPrefix("\\") { section = Int(String(line.dropFirst().prefix(1))) ?? 0; continue }
            let f = line.split(separator: "\t")
            guard section > 0, f.count >= 2, let p = Double(f[0]) else { continue }
            table[String(f[1])] = (p, f.count > 2 ? Double(f[2]) ?? 0 : 0)
            let words = f[1].split(separator: " ").map(String.init)
            if section == 1 { unigrams.append(words[0]) }
            if section == 3 { followers[words[0] + " " + words[1], default: []].append(words[2]) }
        }
        let trigramContexts = Array(followers.keys)
        #expect(trigramContexts.count > 10_000)
        func reference(_ w: String, _ history: [String]) -> Double {
            var context = history.suffix(2)
            var backoff = 0.0
            while true {
                if let hit = table[(Array(context) + [w]).joined(separator: " ")] { return (hit.p + backoff) * log(10.0) }
                if context.isEmpty { return -.infinity }
                backoff += table[context.joined(separator: " ")]?.b ?? 0
                context = context.dropFirst()
            }
        }
        let url = temporaryURL("eslm")
        defer { try? FileManager.default.removeItem(at: url) }
        try NGramLanguageModel(arpaText: text).writeBinary(to: url)
        let lm = try NGramLanguageModel(file: url)
        #expect(lm.count(order: 2) > 50_000)
        var rng = SplitMix64(seed: 11)
        for q in 0..<20_000 {
            // Every other query follows a stored trigram, so the deepest level is exercised too.
            var h1 = unigrams.randomElement(using: &rng)!, h2 = unigrams.randomElement(using: &rng)!
            var w = unigrams.randomElement(using: &rng)!
            if q % 2 == 0 {
                let c = trigramContexts.randomElement(using: &rng)!.split(separator: " ").map(String.init)
                h1 = c[0]; h2 = c[1]
                w = followers[c[0] + " " + c[1]]!.randomElement(using: &rng)!
            }
            let got = lm.logProbability(w, history: [h1, h2])
            #expect(abs(got - reference(w, [h1, h2])) < 1e-5, "\(w) | \(h1) \(h2)")
        }
    }

    func expectUnreadable(_ bytes: [UInt8], containing fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let url = temporaryURL("eslm")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(bytes).write(to: url)
        do {
            _ = try NGramLanguageModel(binaryFile: url)
            Issue.record("loaded a damaged file", sourceLocation: sourceLocation)
        } catch let error as LanguageModelError {
            #expect(error.description.contains(url.path), sourceLocation: sourceLocation)
            #expect(error.description.contains(fragment), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func damagedFilesAreErrorsNamingTheFileAndTheDamage() throws {
        let good = try NGramLanguageModel(arpaText: NGramLanguageModelTests.tinyARPA).binaryBytes()
        try expectUnreadable(Array(good.dropLast(3)), containing: "the file ends inside")
        try expectUnreadable(good + [0], containing: "1 bytes after the last table")
        var version = good
        version[11] = 9
        try expectUnreadable(version, containing: "format version 9")
        try expectUnreadable(Array("\\data\\\nngram 1=1\n".utf8), containing: "not a binary Earshot language model")
        // More words than the word list has room for: refused before any room is reserved for them.
        var manyWords = good
        manyWords.replaceSubrange(16..<24, with: withUnsafeBytes(of: UInt64(20).littleEndian) { Array($0) })
        try expectUnreadable(manyWords, containing: "20 words in a word list of")
        // A bigram's word id past the vocabulary: found by the bigram word array's contents.
        var badWord = good
        let lm = try NGramLanguageModel(arpaText: NGramLanguageModelTests.tinyARPA)
        let needle = lm.tables[1].word.withUnsafeBytes { Array($0) }
        let at = try #require(search(needle, in: badWord))
        badWord.replaceSubrange(at..<(at + 4), with: withUnsafeBytes(of: Int32(99).littleEndian) { Array($0) })
        try expectUnreadable(badWord, containing: "out of order or range")
    }

    func search(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for i in 0...(haystack.count - needle.count) where Array(haystack[i..<(i + needle.count)]) == needle { return i }
        return nil
    }

    /// Any single corrupted byte either still loads (a value changed) or is refused with the file named:
    /// never a crash, a hang or a model whose lookups leave their tables.
    @Test func everyCorruptedByteLoadsOrFailsCleanly() throws {
        let lm = NGramLanguageModel.train(sentences: NGramLanguageModelTests.corpus, order: 3)
        let good = lm.binaryBytes()
        var rng = SplitMix64(seed: 5)
        for i in 0..<good.count {
            var bytes = good
            bytes[i] ^= UInt8.random(in: 1...255, using: &rng)
            do {
                let damaged = try NGramLanguageModel(binaryBytes: bytes, name: "mutant")
                for w in damaged.words.prefix(8) {
                    for h in [[], [damaged.words[0]], Array(damaged.words.prefix(2))] { _ = damaged.logProbability(w, history: h) }
                }
            } catch let error as LanguageModelError {
                #expect(error.description.contains("mutant"), "byte \(i): \(error)")
            }
        }
    }

    @Test func loaderTellsTheFormatsApart() throws {
        let arpa = temporaryURL("arpa"), binary = temporaryURL("eslm")
        defer { try? FileManager.default.removeItem(at: arpa); try? FileManager.default.removeItem(at: binary) }
        let lm = try NGramLanguageModel(arpaText: NGramLanguageModelTests.tinyARPA)
        try lm.writeARPA(to: arpa)
        try lm.writeBinary(to: binary)
        #expect(!NGramLanguageModel.isBinaryFile(arpa))
        expectSameScores(try NGramLanguageModel(file: arpa), try NGramLanguageModel(file: binary))
        #expect(throws: LanguageModelError.unreadable(file: "/nonexistent/x.eslm", reason: "No such file or directory")) {
            try NGramLanguageModel(file: URL(fileURLWithPath: "/nonexistent/x.eslm"))
        }
    }

    /// What compile would write but no loader could read is refused on the way in or out.
    @Test func valuesBeyondFloatAndOrdersBeyondTheFormatAreRefused() throws {
        #expect(throws: LanguageModelError.self) {
            try NGramLanguageModel(arpaText: "\\data\\\nngram 1=1\n\n\\1-grams:\n-1e39 a\n\n\\end\\\n")
        }
        let deep = NGramLanguageModel.train(sentences: ["a b c"], order: NGramLanguageModel.maxBinaryOrder + 1)
        let url = temporaryURL("eslm")
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(throws: LanguageModelError.self) { try deep.writeBinary(to: url) }
        #expect(!FileManager.default.fileExists(atPath: url.path))
    }
}
