import Decoding
import Features
import Foundation
import Model
@testable import Recognizer
import Tensors
import Testing
import TestSupport

/// The model's embedded domain decoding: stored in and read back from a model file, used by the
/// settings rule the CLI and the daemon share, overridden or turned off by the user's settings.
@Suite struct ModelDomainDecodingTests {
    /// The domain says "the dog" nine times as often as "the dot"; `theDog(t:)` is audio whose
    /// acoustics lean to "the dot".
    static func domain() throws -> DomainDecoding {
        try DomainDecoding.build(text: String(repeating: "the dog\n", count: 9) + "the dot\nBig Dog barks", vocabulary: .earshot)
    }

    /// Logits spelling "the do", then a letter that is 't' with probability `t` and 'g' otherwise.
    static func theDog(t: Double) -> Matrix {
        let v = Vocabulary.earshot
        var frames: [[Int: Double]] = [[v.blank: 0.95]]
        for token in v.tokenize("the do")! { frames += [[token: 0.9], [v.blank: 0.95]] }
        frames.append([v.tokenize("t")![0]: t * 0.98, v.tokenize("g")![0]: (1 - t) * 0.98])
        frames.append([v.blank: 0.95])
        var m = Matrix(rows: frames.count, cols: v.count)
        for (r, f) in frames.enumerated() {
            let rest = max(1 - f.values.reduce(0, +), 0) / Double(v.count - f.count)
            for c in 0..<v.count { m[r, c] = Float(log(max(f[c] ?? rest, 1e-30))) }
        }
        return m
    }

    /// What a recogniser built with `options` makes of `logits`: its own decoder, as streams use it.
    static func decode(_ logits: Matrix, model: ModelFile, options: DecodingOptions) throws -> String {
        let recognizer = try Recognizer(model: model, options: options)
        var decoder = recognizer.makeDecoder()
        decoder.accept(logits)
        return decoder.finalize().text
    }

    static func model(withDomain: Bool) throws -> ModelFile {
        let base = blankModel(frontend: FrontendConfig())
        return withDomain ? try base.withDomainDecoding(try domain()) : base
    }

    @Test func domainDecodingSurvivesSaveAndLoad() throws {
        try withTemporaryDirectory { dir in
            var domain = try Self.domain()
            domain.lmWeight = 0.8
            domain.tuning = .init(wordErrorRatePercent: 3.5, utterances: 10, words: 20)
            let path = dir.appendingPathComponent("adapted.safetensors").path
            try blankModel(frontend: FrontendConfig()).withDomainDecoding(domain).save(path: path)
            let loaded = try ModelFile.load(path: path)
            #expect(try loaded.domainDecoding(file: path) == domain)
            let lm = try #require(try loaded.domainDecoding(file: path)?.languageModel())
            #expect(lm.logProbability("dog", history: ["the"]) == (try domain.languageModel()).logProbability("dog", history: ["the"]))
            // Removing it gives a plain model again.
            #expect(try loaded.withDomainDecoding(nil).domainDecoding() == nil)
        }
    }

    @Test func damagedOrOversizedDecodingEntriesAreRefusedNamingTheFileAndKey() throws {
        #expect(ModelDescription.maximumDecodingJSONBytes == DomainDecoding.maximumJSONBytes)
        try withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("damaged.safetensors").path
            var model = try Self.model(withDomain: true)
            // Valid JSON, but its ARPA text is cut short: the file loads, decoding with it is refused.
            var object = try JSONSerialization.jsonObject(with: Data(model.description.decodingJSON!.utf8)) as! [String: Any]
            object["arpa"] = String((object["arpa"] as! String).prefix(40))
            model.description.decodingJSON = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
            try model.save(path: path)
            let loaded = try ModelFile.load(path: path)
            do {
                _ = try loaded.domainDecoding(file: path)
                Issue.record("a truncated domain LM was accepted")
            } catch {
                #expect("\(error)".contains(path) && "\(error)".contains("decoding"), "\(error)")
            }
            do {
                _ = try DecodingSettings().makeOptions(for: loaded, file: path)
                Issue.record("decoding with a truncated domain LM was accepted")
            } catch {
                #expect("\(error)".contains(path) && "\(error)".contains("--no-model-lm"), "\(error)")
            }
            // The way out the message names works: without the model's decoding it is never read.
            #expect(try DecodingSettings(useModelDecoding: false).makeOptions(for: loaded, file: path).beam == nil)

            // Not a JSON object, or over the size limit: the model file itself is refused.
            model.description.decodingJSON = "[1, 2]"
            #expect(throws: ModelError.malformedMetadata(file: path, key: "decoding", reason: "not a JSON object")) {
                try model.save(path: path)
            }
            model.description.decodingJSON = #"{"x":""# + String(repeating: "a", count: ModelDescription.maximumDecodingJSONBytes) + #""}"#
            #expect(throws: ModelError.self) { try model.save(path: path) }
        }
    }

    @Test func recognizerUsesTheEmbeddedLMUnlessTheUserOverridesOrDisablesIt() throws {
        let adapted = try Self.model(withDomain: true)
        let plain = try Self.model(withDomain: false)
        let audio = Self.theDog(t: 0.6)
        func text(_ settings: DecodingSettings, _ model: ModelFile) throws -> String {
            try Self.decode(audio, model: model, options: try settings.makeOptions(for: model))
        }
        // The acoustics alone say "dot"; the embedded domain LM flips it to "dog", by default.
        #expect(try text(DecodingSettings(), plain) == "the dot")
        #expect(try text(DecodingSettings(), adapted) == "the dog")
        let options = try DecodingSettings().makeOptions(for: adapted)
        #expect(options.beam?.beamWidth == DomainDecoding.defaultBeam && options.languageModel != nil)
        #expect(options.beam?.hotwords.map(\.phrase) == ["big dog"], "the model's hotwords come with its LM")
        // Turned off: greedy again.
        #expect(try text(DecodingSettings(useModelDecoding: false), adapted) == "the dot")
        #expect(try DecodingSettings(useModelDecoding: false).makeOptions(for: adapted).beam == nil)
        // The user's weights override the model's: with no LM weight the acoustics win.
        #expect(try text(DecodingSettings(lmWeight: 0), adapted) == "the dot")
        #expect(try DecodingSettings(beam: 4, lmWeight: 0.3).makeOptions(for: adapted).beam?.lmWeight == 0.3)
        #expect(try DecodingSettings(beam: 4).makeOptions(for: adapted).beam?.beamWidth == 4)
        // User hotwords are added to the model's; the same phrase takes the user's weight.
        let merged = try DecodingSettings(hotwords: ["big dog:5", "barks"]).makeOptions(for: adapted).beam?.hotwords
        #expect(merged == [Hotword("big dog", weight: 5), Hotword("barks", weight: 3)])
        // A user --lm replaces the model's decoding whole: an LM that knows "the dot" gives "the dot".
        try withTemporaryDirectory { dir in
            let arpa = dir.appendingPathComponent("dot.arpa")
            try NGramLanguageModel.train(sentences: ["the dot", "a dot"], order: 2).writeARPA(to: arpa)
            let user = DecodingSettings(languageModel: arpa.path, lmWeight: 1)
            #expect(try text(user, adapted) == "the dot")
            #expect(try user.makeOptions(for: adapted).beam?.hotwords.isEmpty == true)
        }
        // The daemon's form (options made once without the model) resolves the same way.
        let base = try DecodingSettings().makeOptions()
        #expect(try Self.decode(audio, model: adapted, options: try DecodingSettings().makeOptions(for: adapted, base: base)) == "the dog")
        #expect(try DecodingSettings().makeOptions(for: plain, base: base).beam == nil)
    }

    @Test func modelSummaryDescribesTheDomainDecoding() throws {
        var domain = try Self.domain()
        domain.tuning = .init(wordErrorRatePercent: 3.5, utterances: 10, words: 20)
        let summary = try blankModel(frontend: FrontendConfig()).withDomainDecoding(domain).summaryWithDecoding(file: "m")
        let lm = try domain.languageModel()
        #expect(summary.contains("domain LM:     order 3, n-grams \(lm.count(order: 1))/\(lm.count(order: 2))/\(lm.count(order: 3))"), "\(summary)")
        #expect(summary.contains("domain words:  5: barks big dog dot the"), "\(summary)")
        #expect(summary.contains("hotwords:      1: 'big dog':2"), "\(summary)")
        #expect(summary.contains("weights:       lm weight 0.5, word bonus 1, beam 16, unknown-word penalty -10"), "\(summary)")
        #expect(summary.contains("tuned on:      10 utterances, 20 words: WER 3.50%"), "\(summary)")
        #expect(!summary.contains("\\data\\"), "the ARPA text itself is not printed")
        #expect(blankModel(frontend: FrontendConfig()).summaryWithDecoding().contains("decoding:      (none"))
    }

    /// The same hotword twice (in another case, or with another weight) is one hotword, the later weight
    /// winning: `cat` and `Cat` used to add up to twice the bonus, and `cat` then `cat:-3` to none.
    @Test func aRepeatedHotwordTakesItsLastWeight() throws {
        let options = try DecodingSettings(hotwords: ["cat", "dog", "Cat:2"]).makeOptions()
        #expect(options.beam?.hotwords == [Hotword("dog", weight: DecodingSettings.defaultHotwordWeight), Hotword("cat", weight: 2)])
    }

    /// A language model whose words the model cannot spell (upper case, as some published ARPA files
    /// are) would make every word unknown and the LM only a cost: refused, saying why.
    @Test func aLanguageModelWithNoSpellableWordIsRefused() throws {
        try withTemporaryDirectory { dir in
            let arpa = dir.appendingPathComponent("upper.arpa")
            try NGramLanguageModel.train(sentences: ["THE CAT", "A DOG"], order: 2).writeARPA(to: arpa)
            #expect {
                _ = try DecodingSettings(languageModel: arpa.path).makeOptions()
            } throws: { error in
                "\(error)".contains("no word the model can spell") && "\(error)".contains("lower case")
            }
            // A hotword is spellable, but the LM still is not.
            #expect {
                _ = try DecodingSettings(languageModel: arpa.path, hotwords: ["cat"]).makeOptions()
            } throws: { error in
                "\(error)".contains("no word the model can spell")
            }
        }
    }
}
