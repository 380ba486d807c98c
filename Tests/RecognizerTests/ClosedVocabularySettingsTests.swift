import Decoding
import Features
import Foundation
import Model
@testable import Recognizer
import Tensors
import Testing
import TestSupport

/// The closed-vocabulary choice through the settings rule `earshot` and `earshotd` share: taken from the
/// model's domain decoding, overridden either way by the user's setting, closed to an `--lm` model's
/// words, refused when there is no word list.
@Suite struct ClosedVocabularySettingsTests {
    static func domain(closed: Bool) throws -> DomainDecoding {
        try DomainDecoding.build(text: String(repeating: "the dog\n", count: 9) + "the dot\nA Dog barks",
                                 vocabulary: .earshot, closedVocabulary: closed)
    }

    /// Logits that clearly spell `text`.
    static func spelled(_ text: String) -> Matrix {
        let v = Vocabulary.earshot
        var rows: [[Int: Double]] = [[v.blank: 0.95]]
        for t in v.tokenize(text)! { rows += [[t: 0.9], [v.blank: 0.95]] }
        var m = Matrix(rows: rows.count, cols: v.count)
        for (r, f) in rows.enumerated() {
            let rest = (1 - f.values.reduce(0, +)) / Double(v.count - f.count)
            for c in 0..<v.count { m[r, c] = Float(log(f[c] ?? rest)) }
        }
        return m
    }

    @Test func closedVocabularyFollowsTheModelUnlessTheSettingsOverride() throws {
        let closedModel = try blankModel(frontend: FrontendConfig()).withDomainDecoding(try Self.domain(closed: true))
        let openModel = try blankModel(frontend: FrontendConfig()).withDomainDecoding(try Self.domain(closed: false))
        let words = try Self.domain(closed: true).words
        // The model's choice by default, the CLI's and the daemon's forms alike.
        #expect(try DecodingSettings().makeOptions(for: closedModel).beam?.lexicon?.words == words)
        #expect(try DecodingSettings().makeOptions(for: closedModel, base: DecodingSettings().makeOptions()).beam?.lexicon?.words == words)
        #expect(try DecodingSettings().makeOptions(for: openModel).beam?.lexicon == nil)
        // Overridden either way.
        #expect(try DecodingSettings(closedVocabulary: false).makeOptions(for: closedModel).beam?.lexicon == nil)
        let closedByUser = try DecodingSettings(hotwords: ["zebra crossing"], closedVocabulary: true).makeOptions(for: openModel)
        #expect(closedByUser.beam?.lexicon?.words == (words + ["crossing", "zebra"]).sorted(), "a user's hotword stays reachable")

        // What recognition makes of audio spelling a word outside the list.
        let audio = Self.spelled("the cat")
        let open = try ModelDomainDecodingTests.decode(audio, model: openModel, options: try DecodingSettings().makeOptions(for: openModel))
        let closed = try ModelDomainDecodingTests.decode(audio, model: closedModel, options: try DecodingSettings().makeOptions(for: closedModel))
        #expect(open == "the cat")
        #expect(!closed.isEmpty && closed.split(separator: " ").allSatisfy { words.contains(String($0)) }, "'\(closed)'")
    }

    @Test func closedVocabularyNeedsAWordList() throws {
        let plain = blankModel(frontend: FrontendConfig())
        let adapted = try plain.withDomainDecoding(try Self.domain(closed: false))
        for (settings, model) in [(DecodingSettings(closedVocabulary: true), plain),
                                  (DecodingSettings(useModelDecoding: false, closedVocabulary: true), adapted)] {
            do {
                _ = try settings.makeOptions(for: model)
                Issue.record("closed vocabulary without a word list was accepted")
            } catch {
                guard case .closedVocabularyWithoutWords = error else { Issue.record("\(error)"); continue }
                #expect(error.description.contains("earshot adapt --text") && error.description.contains("--lm"), "\(error)")
            }
        }
        // Open is simply what a model without a word list does.
        #expect(try DecodingSettings(closedVocabulary: false).makeOptions(for: plain).beam == nil)

        // An --lm model's words close it (its <s>, </s> and <unk> are not words), with the hotwords'.
        try withTemporaryDirectory { dir in
            let arpa = dir.appendingPathComponent("cmd.arpa")
            try NGramLanguageModel.train(sentences: ["open the door", "close the door"], order: 2).writeARPA(to: arpa)
            let options = try DecodingSettings(languageModel: arpa.path, hotwords: ["window"], closedVocabulary: true).makeOptions(for: plain)
            #expect(options.beam?.lexicon?.words == ["close", "door", "open", "the", "window"])
            #expect(try DecodingSettings(languageModel: arpa.path).makeOptions(for: plain).beam?.lexicon == nil)
        }
    }

    /// The daemon reads an LM once, before any model (`makeOptions()`), and fits those options to each
    /// model it loads: a closed vocabulary must come out as `makeOptions(for:)` makes it directly, even
    /// for a model whose letters sit at other output indices.
    @Test func optionsMadeWithoutAModelFitAModelWithAnotherAlphabet() throws {
        let plain = blankModel(frontend: FrontendConfig())
        var description = plain.description
        let tokens = Vocabulary.earshot.tokens
        description.vocabulary = Array(tokens[..<3]) + tokens[3...].reversed()
        let reordered = ModelFile(description: description, parameters: plain.parameters)
        #expect(Recognizer.vocabulary(of: reordered) != .earshot)
        try withTemporaryDirectory { dir in
            let arpa = dir.appendingPathComponent("cmd.arpa")
            try NGramLanguageModel.train(sentences: ["open the door", "close the door"], order: 2).writeARPA(to: arpa)
            let settings = DecodingSettings(languageModel: arpa.path, closedVocabulary: true)
            let base = try settings.makeOptions()
            let direct = try settings.makeOptions(for: reordered).beam?.lexicon
            #expect(direct?.vocabulary == Recognizer.vocabulary(of: reordered) && direct?.lookahead != nil)
            #expect(try DecodingSettings().makeOptions(for: reordered, base: base).beam?.lexicon == direct)
            #expect(try DecodingSettings().makeOptions(for: plain, base: base).beam?.lexicon == base.beam?.lexicon)
        }
        // Closing with neither an LM nor the model's word list is refused here too.
        #expect(throws: DecodingSettingsError.self) {
            try DecodingSettings(closedVocabulary: true).makeOptions(for: plain, base: .greedy)
        }
    }
}
