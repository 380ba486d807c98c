import Decoding
import Foundation
import Model

/// The decoding choices a user writes down (CLI flags, the daemon's configuration file): beam width, an
/// ARPA language model's path and weights, hotwords as "phrase[:weight]", and whether the model's own
/// domain decoding is used. Owns the rules that turn them into `DecodingOptions`, so `earshot` and
/// `earshotd` decode the same way from the same settings and the same model.
///
/// The one rule for a model that carries a `DomainDecoding` (built by `earshot adapt --text`):
/// - it is used by default: its LM, hotwords, weights and beam;
/// - `languageModel` (`--lm`) replaces it whole (the model's LM, hotwords and weights are not used);
/// - `lmWeight`, `wordBonus` and a `beam` above 1 override its values; `hotwords` are added to its
///   hotwords (a phrase in both gets the user's weight);
/// - `useModelDecoding` false (`--no-model-lm`, `decoding.model_lm = false`) ignores it, and a damaged
///   one is then not even read;
/// - `closedVocabulary` (`--closed-vocabulary`/`--open-vocabulary`) overrides its vocabulary mode; nil
///   keeps the model's (the daemon always does). A closed vocabulary is the model's domain words, or with
///   `languageModel` that model's words, plus the hotwords' words; without either there is no word list
///   and closing is refused.
public struct DecodingSettings: Sendable, Equatable {
    /// Beam width for CTC prefix beam search; 1 is greedy best-path decoding (widened when an LM or
    /// hotwords are used: they need a search).
    public var beam: Int
    /// A word n-gram model file (ARPA or binary), fused during beam search.
    public var languageModel: String?
    /// Weight of the language model's log-probability (alpha); nil: the model's domain decoding's, else
    /// `defaultLMWeight`.
    public var lmWeight: Double?
    /// Score added per word (beta) when a language model is used; nil: the model's domain decoding's,
    /// else `defaultWordBonus`.
    public var wordBonus: Double?
    /// Phrases to favour: "earshot" or "open terminal:4" (default weight 3).
    public var hotwords: [String]
    /// Whether a model's embedded domain decoding is used when no `languageModel` is given.
    public var useModelDecoding: Bool
    /// Closed-vocabulary search (only the word list's words are recognised): nil keeps the model's
    /// domain decoding's choice (open without one).
    public var closedVocabulary: Bool?

    /// Weights for the general English trigram (pocketsphinx-en-us's, scripts/setup.sh) with the shipped
    /// model, closed vocabulary: `WEIGHTS="0.5 0.6 0.8 1.0" BONUSES="0 0.5 1" bench/tune-lm.sh` on 200
    /// validation utterances chose 0.8 and 0 (35.5 % WER; models/README.md).
    public static let generalLMWeight = 0.8
    public static let generalWordBonus = 0.0
    public static let defaultLMWeight = 0.5
    public static let defaultWordBonus = 1.0
    /// Beam width used when a language model or hotwords ask for beam search and no width is given.
    /// 32: with the general English trigram on 200 validation utterances, 16 → 32 took WER from 42.7 to
    /// 40.7 % at 350x instead of 426x real time per core; 64 gave 39.9 % at 248x (models/README.md).
    public static let defaultSearchBeam = 32
    /// Weight of a hotword given without one.
    public static let defaultHotwordWeight = 3.0

    public init(beam: Int = 1, languageModel: String? = nil, lmWeight: Double? = nil,
                wordBonus: Double? = nil, hotwords: [String] = [], useModelDecoding: Bool = true,
                closedVocabulary: Bool? = nil) {
        self.beam = beam
        self.languageModel = languageModel
        self.lmWeight = lmWeight
        self.wordBonus = wordBonus
        self.hotwords = hotwords
        self.useModelDecoding = useModelDecoding
        self.closedVocabulary = closedVocabulary
    }

    /// Parses "phrase[:weight]": the text after the last ':' must be a finite number; the phrase is
    /// lower-cased with its spaces collapsed.
    public static func parseHotword(_ spec: String) throws(DecodingSettingsError) -> Hotword {
        var phrase = Substring(spec), weight = defaultHotwordWeight
        if let colon = spec.lastIndex(of: ":") {
            let text = spec[spec.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard let w = Double(text), w.isFinite else { throw .badHotwordWeight(spec, text) }
            phrase = spec[..<colon]
            weight = w
        }
        let words = phrase.lowercased().split(separator: " ")
        guard !words.isEmpty else { throw .emptyHotword(spec) }
        return Hotword(words.joined(separator: " "), weight: weight)
    }

    /// The domain decoding these settings take from `model`: nil when `useModelDecoding` is off, when a
    /// `languageModel` replaces it, or when the model has none. A damaged one is an error naming `file`.
    public func modelDecoding(of model: ModelFile, file: String = "<memory>") throws(DecodingSettingsError) -> DomainDecoding? {
        guard useModelDecoding, languageModel == nil else { return nil }
        do { return try model.domainDecoding(file: file) } catch { throw .modelDecoding(file: file, reason: error.description) }
    }

    /// The options a `Recognizer` for `model` decodes with: these settings over the model's domain
    /// decoding (see the type's rule). The one entry point for the CLI and the daemon.
    public func makeOptions(for model: ModelFile, file: String = "<memory>") throws(DecodingSettingsError) -> DecodingOptions {
        try makeOptions(vocabulary: Recognizer.vocabulary(of: model), modelDecoding: try modelDecoding(of: model, file: file))
    }

    /// `base`, made once by `makeOptions()` without a model (so a large `languageModel` is read once, not
    /// at every model reload), for `model`: `base` itself unless the model's domain decoding applies,
    /// then the options the rule gives with it. Equal to `makeOptions(for:)` but for the hotword
    /// character check, which `base` made without a vocabulary skipped. A word trie (closed vocabulary or
    /// known words) made for another alphabet is spelled again in the model's, and scored again, as
    /// `makeOptions` would have.
    public func makeOptions(for model: ModelFile, file: String = "<memory>", base: DecodingOptions) throws(DecodingSettingsError) -> DecodingOptions {
        let vocabulary = Recognizer.vocabulary(of: model)
        guard let domain = try modelDecoding(of: model, file: file) else {
            if closedVocabulary == true && base.beam?.lexicon == nil {
                throw .closedVocabularyWithoutWords(reason: useModelDecoding ? "the model \(file) has no domain decoding and no language model is given"
                                                                            : "the model's domain decoding is turned off and no language model is given")
            }
            guard let lm = base.languageModel else { return base }
            var options = base
            if let known = base.beam?.knownWords, known.vocabulary != vocabulary {
                options.beam?.knownWords = known.respelled(for: vocabulary).scored(by: lm)
            }
            guard let lexicon = base.beam?.lexicon, lexicon.vocabulary != vocabulary else { return options }
            options.beam?.lexicon = lexicon.respelled(for: vocabulary).scored(by: lm)
            guard options.beam?.lexicon?.spellableCount ?? 0 > 0 else {
                throw .closedVocabularyWithoutWords(reason: "the language model has no word the model \(file) can spell")
            }
            return options
        }
        return try makeOptions(vocabulary: vocabulary, modelDecoding: domain)
    }

    /// These settings decoding with the general English LM at `path` (`GeneralLanguageModel`): at the
    /// weights measured for it unless given, with a closed vocabulary unless chosen. For when nothing else
    /// asks for an LM: no `languageModel`, and no domain decoding in the model (which takes precedence).
    public func usingGeneralLanguageModel(_ path: String) -> DecodingSettings {
        var settings = self
        settings.languageModel = path
        settings.lmWeight = lmWeight ?? Self.generalLMWeight
        settings.wordBonus = wordBonus ?? Self.generalWordBonus
        settings.closedVocabulary = closedVocabulary ?? true
        return settings
    }

    /// The options a `Recognizer` decodes with. Loads the language model (which may take a while for a
    /// large one). A language model or hotwords with `beam` 1 mean the search beam (`modelDecoding`'s, else
    /// `defaultSearchBeam`): greedy decoding can use neither. With `vocabulary`, a hotword character the
    /// model cannot emit is refused (it would make the hotword unreachable). `modelDecoding` is used as
    /// the type's rule says (it is ignored when `languageModel` is set).
    public func makeOptions(vocabulary: Vocabulary? = nil, modelDecoding: DomainDecoding? = nil) throws(DecodingSettingsError) -> DecodingOptions {
        guard beam >= 1 else { throw .badBeam(beam) }
        if let lmWeight, !lmWeight.isFinite { throw .notFinite(setting: "lm weight", value: lmWeight) }
        if let wordBonus, !wordBonus.isFinite { throw .notFinite(setting: "word bonus", value: wordBonus) }
        var parsed: [Hotword] = []
        for spec in hotwords {
            let hotword = try Self.parseHotword(spec)
            if let vocabulary {
                for ch in hotword.phrase where ch != " " && vocabulary.tokenize(String(ch)) == nil {
                    let letters = vocabulary.tokens.enumerated()
                        .filter { $0.offset != vocabulary.blank && $0.offset != vocabulary.space }.map(\.element).joined()
                    throw .hotwordCharacter(spec, ch, letters)
                }
            }
            // The same phrase twice (`cat` and `Cat`, or `cat` then `cat:-3`): the later one replaces
            // the earlier, as the user's weight replaces a model's, rather than adding up.
            parsed.removeAll { $0.phrase == hotword.phrase }
            parsed.append(hotword)
        }
        if let languageModel {
            let model: NGramLanguageModel
            do { model = try NGramLanguageModel(file: URL(fileURLWithPath: languageModel)) } catch {
                throw .languageModel(path: languageModel, reason: "\(error)")
            }
            // The model's words (and the hotwords') as a trie, built once for every decoder: the closed
            // vocabulary, or in an open search the words spelled without the unknown-letter cost.
            let words = Lexicon.knownWords(of: model, hotwords: parsed, vocabulary: vocabulary ?? .earshot)
            // Open as well as closed: with no word spellable (an upper-case ARPA file, another alphabet)
            // every word would be decoded as unknown, the LM only a cost.
            // The LM's own words: a hotword must not make an unusable LM pass.
            let spellable = vocabulary ?? .earshot
            if !model.words.contains(where: { !$0.hasPrefix("<") && spellable.tokenize($0) != nil }) {
                let reason = "the language model \(languageModel) has no word the model can spell (its words must be in lower case, in the model's letters)"
                if closedVocabulary == true { throw .closedVocabularyWithoutWords(reason: reason) }
                throw .languageModel(path: languageModel, reason: reason)
            }
            var config = BeamSearchConfiguration.recognition(
                beamWidth: beam == 1 ? Self.defaultSearchBeam : beam, lmWeight: lmWeight ?? Self.defaultLMWeight,
                wordBonus: wordBonus ?? Self.defaultWordBonus, hotwords: parsed, withLanguageModel: true,
                lexicon: closedVocabulary == true ? words : nil)
            if closedVocabulary != true { config.knownWords = words }
            return DecodingOptions(beam: config, languageModel: model)
        }
        if useModelDecoding, let domain = modelDecoding {
            let model: NGramLanguageModel
            do { model = try domain.languageModel() } catch { throw .modelDecoding(file: "model", reason: error.description) }
            var config = domain.searchConfiguration(lmWeight: lmWeight, wordBonus: wordBonus, beam: beam == 1 ? nil : beam,
                                                    extraHotwords: parsed, closedVocabulary: closedVocabulary,
                                                    vocabulary: vocabulary ?? .earshot)
            // Once here, not in every decoder the recogniser makes.
            config.lexicon = config.lexicon?.scored(by: model)
            return DecodingOptions(beam: config, languageModel: model)
        }
        if closedVocabulary == true {
            throw .closedVocabularyWithoutWords(reason: useModelDecoding ? "the model has no domain decoding and no language model is given"
                                                                        : "the model's domain decoding is turned off and no language model is given")
        }
        let width = !parsed.isEmpty && beam == 1 ? Self.defaultSearchBeam : beam
        if width == 1 { return .greedy }
        let config = BeamSearchConfiguration.recognition(beamWidth: width, lmWeight: lmWeight ?? Self.defaultLMWeight,
                                                         wordBonus: 0, hotwords: parsed, withLanguageModel: false)
        return DecodingOptions(beam: config, languageModel: nil)
    }
}

/// Why decoding settings cannot be used. Messages name the hotword or value; the CLI prefixes "--" to
/// the setting, the daemon names its configuration key.
public enum DecodingSettingsError: Error, CustomStringConvertible, Equatable, Sendable {
    case badBeam(Int)
    case notFinite(setting: String, value: Double)
    case badHotwordWeight(String, String)
    case emptyHotword(String)
    case hotwordCharacter(String, Character, String)
    case languageModel(path: String, reason: String)
    /// The model's embedded domain decoding cannot be used.
    case modelDecoding(file: String, reason: String)
    /// A closed vocabulary was asked for, but there is no word list to close it to.
    case closedVocabularyWithoutWords(reason: String)

    public var description: String {
        switch self {
        case .badBeam(let beam): return "beam \(beam): the beam width must be at least 1"
        case let .notFinite(setting, value): return "\(setting) \(value): must be a finite number"
        case let .badHotwordWeight(spec, text): return "hotword '\(spec)': the weight after ':' must be a finite number, not '\(text)'"
        case .emptyHotword(let spec): return "hotword '\(spec)' has no words"
        case let .hotwordCharacter(spec, ch, letters): return "hotword '\(spec)': '\(ch)' is not in the model's vocabulary (\(letters))"
        case .languageModel(_, let reason): return "lm: \(reason)"
        case let .modelDecoding(file, reason): return "model \(file): \(reason) (--no-model-lm, or decoding.model_lm = false, decodes without it)"
        case .closedVocabularyWithoutWords(let reason):
            return "closed-vocabulary: \(reason), so there is no word list to keep to; adapt the model with 'earshot adapt --text' or give --lm"
        }
    }
}
