import Foundation
import Testing
@testable import Decoding

/// scripts/pocketsphinx-lm.py turns Pocketsphinx's binary English trigram into ARPA. These tests run it
/// on a small sub-model (the words of twenty sentences) and score the sentences with Pocketsphinx's own
/// scorer, `sphinx_lm_eval`, on the original binary, against Earshot's `NGramLanguageModel` on the
/// converted file.
///
/// Why a sub-model is an exact check: an n-gram query whose words are all kept consults only n-grams and
/// back-off weights made of kept words, and the converter keeps all of those, so every sentence over the
/// kept words scores exactly as in the full model.
@Suite struct PocketsphinxLMTests {
    static let binaryModel = "/usr/share/pocketsphinx/model/en-us/en-us.lm.bin"
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// sphinxbase's log base: `sphinx_lm_eval` prints log P in it, the binary stores it.
    static let logBase = 1.0001

    /// Ordinary sentences (trigram hits), apostrophes, and two word salads that force back-offs.
    static let sentences = [
        "the president said on tuesday that he would not run again",
        "i don't know what you're talking about",
        "it's going to rain tomorrow in the morning",
        "she was born in a small town near the river",
        "we need to talk about the budget for next year",
        "can you tell me where the nearest station is",
        "the company reported a loss in the third quarter",
        "they're building a new school on the other side of the city",
        "please turn off the lights when you leave the room",
        "my brother and i went fishing last summer",
        "the weather was cold and the roads were closed",
        "he asked her if she wanted to go to the movies",
        "there is no reason to believe that the market will recover",
        "the children played in the garden until dark",
        "our team won the game by three points",
        "the doctor told him to stay in bed for a week",
        "water boils at one hundred degrees",
        "music the of quickly under seven",
        "yesterday elephants were dancing politely on purple bicycles",
        "what time does the train leave",
    ]

    struct Tools {
        var python: String
        var converter: String
        var evaluator: String
    }

    /// The converter's interpreter, the converter and sphinx_lm_eval; a missing one fails the test
    /// with what to install.
    static func tools() throws -> Tools {
        let python = ProcessInfo.processInfo.environment["EARSHOT_TEST_PYTHON"]
            ?? packageRoot.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw ToolError.missing("the test Python \(python) is missing: run scripts/setup.sh")
        }
        let evaluator = ["/usr/bin/sphinx_lm_eval", "/usr/local/bin/sphinx_lm_eval"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let evaluator else {
            throw ToolError.missing("sphinx_lm_eval is missing: run scripts/setup.sh (package sphinxbase-utils)")
        }
        guard FileManager.default.fileExists(atPath: binaryModel) else {
            throw ToolError.missing("\(binaryModel) is missing: run scripts/setup.sh (package pocketsphinx-en-us)")
        }
        return Tools(python: python, converter: packageRoot.appendingPathComponent("scripts/pocketsphinx-lm.py").path,
                     evaluator: evaluator)
    }

    enum ToolError: Error, CustomStringConvertible {
        case missing(String)
        case failed(command: String, status: Int32, output: String)
        case unexpectedOutput(String)

        var description: String {
            switch self {
            case let .missing(what): return what
            case let .failed(command, status, output): return "\(command) exited with \(status):\n\(output)"
            case let .unexpectedOutput(what): return what
            }
        }
    }

    /// Runs a tool with stdout and stderr in one pipe (read to the end before waiting, so a full pipe
    /// cannot deadlock) and returns that text; a non-zero exit throws with it.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw ToolError.failed(command: ([executable] + arguments).joined(separator: " "),
                                   status: process.terminationStatus, output: output)
        }
        return output
    }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-pslm-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Per-word log P (base 1.0001, as printed) of each sentence of a `-lsn` file, in sentence order
    /// (`</s>` last). sphinx_lm_eval prints each sentence's words last to first, `</s>` first.
    static func sphinxScores(_ tools: Tools, model: String, sentences: [String], in dir: URL) throws -> [[(String, Int)]] {
        let lsn = dir.appendingPathComponent("sentences.lsn")
        try Data(sentences.map { "<s> \($0) </s>\n" }.joined().utf8).write(to: lsn)
        let output = try run(tools.evaluator, ["-lm", model, "-lsn", lsn.path, "-verbose", "yes"])
        var blocks: [[(String, Int)]] = []
        for line in output.split(separator: "\n") where line.hasPrefix("log P(") {
            guard let bar = line.firstIndex(of: "|"), let equals = line.range(of: " = "),
                  let value = Int(line[equals.upperBound...].trimmingCharacters(in: .whitespaces)) else {
                throw ToolError.unexpectedOutput("cannot parse sphinx_lm_eval line '\(line)'")
            }
            let word = String(line[line.index(line.startIndex, offsetBy: 6)..<bar])
            if word == NGramLanguageModel.sentenceEnd { blocks.append([]) }
            guard !blocks.isEmpty else { throw ToolError.unexpectedOutput("sphinx_lm_eval output does not start with </s>: '\(line)'") }
            blocks[blocks.count - 1].append((word, value))
        }
        return blocks.map { Array($0.reversed()) }
    }

    /// Converts the binary model restricted to `words` (plus options) into `dir`, and loads the result.
    static func convert(_ tools: Tools, words: [String], options: [String] = [], in dir: URL) throws -> (URL, NGramLanguageModel) {
        let list = dir.appendingPathComponent("words.txt")
        try Data(words.joined(separator: "\n").utf8).write(to: list)
        let arpa = dir.appendingPathComponent("sub.arpa")
        try run(tools.python, [tools.converter, binaryModel, arpa.path, "--vocabulary", list.path] + options)
        // The reader rejects a \data\ count that differs from its section, so loading checks the counts.
        return (arpa, try NGramLanguageModel(arpaFile: arpa))
    }

    @Test func convertedSubModelScoresSentencesAsPocketsphinxDoesOnTheBinary() throws {
        let tools = try Self.tools()
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let words = Array(Set(Self.sentences.flatMap { $0.split(separator: " ").map(String.init) })).sorted()
        let (_, lm) = try Self.convert(tools, words: words, in: dir)
        for w in words { #expect(lm.wordID(w) != nil, "'\(w)' missing from the converted model") }

        let reference = try Self.sphinxScores(tools, model: Self.binaryModel, sentences: Self.sentences, in: dir)
        try #require(reference.count == Self.sentences.count, "sphinx_lm_eval scored \(reference.count) sentences")
        // sphinx_lm_eval truncates each word's float score toward zero (int32 cast), so its value s and
        // the exact score x satisfy s - 1 < x <= s. Our ARPA stores log10 values to 6 decimals (0.012
        // units) read as Float (< 0.011 units each); a score sums at most three of them: 0.1 units
        // (4e-6 in log10) covers that.
        let epsilon = 0.1
        var worstWord = 0.0, worstSentenceLog10 = 0.0  // distance outside (s - 1, s]; |sum - sum|
        for (sentence, scores) in zip(Self.sentences, reference) {
            let words = sentence.split(separator: " ").map(String.init) + [NGramLanguageModel.sentenceEnd]
            try #require(scores.map(\.0) == words, "sphinx_lm_eval scored \(scores.map(\.0)) for '\(sentence)'")
            var history = [NGramLanguageModel.sentenceStart]
            var ours = 0.0, theirs = 0
            for (word, sphinx) in scores {
                let units = lm.logProbability(word, history: history) / log(Self.logBase)
                #expect(units > Double(sphinx) - 1 - epsilon && units <= Double(sphinx) + epsilon,
                        "log P(\(word) | \(history.suffix(2).joined(separator: " "))): Earshot \(units), sphinx_lm_eval \(sphinx) (units of log 1.0001)")
                worstWord = max(worstWord, units - Double(sphinx), Double(sphinx) - 1 - units)
                ours += units
                theirs += sphinx
                history.append(word)
            }
            worstSentenceLog10 = max(worstSentenceLog10, abs(ours - Double(theirs)) * log10(Self.logBase))
        }
        print("PocketsphinxLM: \(reference.joined().count) words in \(Self.sentences.count) sentences; worst word outside sphinx's truncation interval by \(String(format: "%.4f", worstWord)) units (\(String(format: "%.1e", worstWord * log10(Self.logBase))) log10); worst sentence |Earshot - sphinx| \(String(format: "%.2e", worstSentenceLog10)) log10")
    }

    @Test func sphinxReadsTheConvertedARPAAndScoresItLikeTheBinary() throws {
        // An independent ARPA reader (sphinxbase's) must accept the file and give the same scores:
        // it re-quantises on loading, so allow one unit (4.3e-5 in log10) per word.
        let tools = try Self.tools()
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sentences = Array(Self.sentences.prefix(8))
        let words = Array(Set(sentences.flatMap { $0.split(separator: " ").map(String.init) })).sorted()
        let (arpa, _) = try Self.convert(tools, words: words, in: dir)
        let fromBinary = try Self.sphinxScores(tools, model: Self.binaryModel, sentences: sentences, in: dir)
        let fromARPA = try Self.sphinxScores(tools, model: arpa.path, sentences: sentences, in: dir)
        try #require(fromBinary.count == sentences.count && fromARPA.count == sentences.count)
        for (b, a) in zip(fromBinary, fromARPA) {
            try #require(b.map(\.0) == a.map(\.0))
            for ((word, x), (_, y)) in zip(b, a) { #expect(abs(x - y) <= 1, "\(word): binary \(x), ARPA \(y)") }
        }
    }

    @Test func vocabularyLimitKeepsTheMostProbableWordsAndGivesUnkTheRest() throws {
        let tools = try Self.tools()
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // "e-mail" and "a." are in the model but outside Earshot's alphabet; zucchini and aardvark are rare.
        let (_, lm) = try Self.convert(tools, words: ["zucchini", "the", "aardvark", "of", "e-mail", "a."],
                                       options: ["--vocab-limit", "2"], in: dir)
        #expect(Set(lm.words) == ["<s>", "</s>", "<unk>", "the", "of"])
        // <unk> carries the unigram mass of every dropped word, so the unigrams still sum to one (the
        // binary's unigrams sum to one within 1e-3: 72k values rounded to 4 decimals in log10).
        let unigramSum = lm.words.map { pow(10, Double(lm.tables[0].logProb[Int(lm.wordID($0)!)])) }.reduce(0, +)
        #expect(abs(unigramSum - 1) < 1e-3, "unigrams sum to \(unigramSum)")
        // The bigram 'of the' is kept: English prefers it to 'the of'.
        #expect(lm.logProbability("the", history: ["of"]) > lm.logProbability("of", history: ["the"]) + 2)
    }
}
