import Decoding
import Foundation

/// The decoding choices a user writes down (CLI flags, the daemon's configuration file): beam width, an
/// ARPA language model's path and weights, hotwords as "phrase[:weight]". Owns the rules that turn them
/// into `DecodingOptions`, so `earshot` and `earshotd` decode the same way from the same settings.
public struct DecodingSettings: Sendable, Equatable {
    /// Beam width for CTC prefix beam search; 1 is greedy best-path decoding.
    public var beam: Int
    /// A word n-gram model in ARPA format, fused during beam search.
    public var languageModel: String?
    /// Weight of the language model's log-probability (alpha).
    public var lmWeight: Double
    /// Score added per word (beta) when a language model is used.
    public var wordBonus: Double
    /// Phrases to favour: "earshot" or "open terminal:4" (default weight 3).
    public var hotwords: [String]

    public static let defaultLMWeight = 0.5
    public static let defaultWordBonus = 1.0
    /// Beam width used when a language model or hotwords ask for beam search and no width is given.
    public static let defaultSearchBeam = 16
    /// Weight of a hotword given without one.
    public static let defaultHotwordWeight = 3.0

    public init(beam: Int = 1, languageModel: String? = nil, lmWeight: Double = defaultLMWeight,
                wordBonus: Double = defaultWordBonus, hotwords: [String] = []) {
        self.beam = beam
        self.languageModel = languageModel
        self.lmWeight = lmWeight
        self.wordBonus = wordBonus
        self.hotwords = hotwords
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

    /// The options a `Recognizer` decodes with. Loads the language model (which may take a while for a
    /// large one). A language model or hotwords with `beam` 1 mean `defaultSearchBeam`: greedy decoding
    /// can use neither. With `vocabulary`, a hotword character the model cannot emit is refused (it would
    /// make the hotword unreachable).
    public func makeOptions(vocabulary: Vocabulary? = nil) throws(DecodingSettingsError) -> DecodingOptions {
        guard beam >= 1 else { throw .badBeam(beam) }
        guard lmWeight.isFinite else { throw .notFinite(setting: "lm weight", value: lmWeight) }
        guard wordBonus.isFinite else { throw .notFinite(setting: "word bonus", value: wordBonus) }
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
            parsed.append(hotword)
        }
        var model: NGramLanguageModel?
        if let languageModel {
            do { model = try NGramLanguageModel(arpaFile: URL(fileURLWithPath: languageModel)) } catch {
                throw .languageModel(path: languageModel, reason: "\(error)")
            }
        }
        let width = (model != nil || !parsed.isEmpty) && beam == 1 ? Self.defaultSearchBeam : beam
        if width == 1 { return .greedy }
        let config = BeamSearchConfiguration(beamWidth: width, tokenTopK: 8, blankSkipThreshold: 0.999,
                                             lmWeight: lmWeight, wordInsertionBonus: model == nil ? 0 : wordBonus,
                                             hotwords: parsed, hotwordPrefixBonus: parsed.isEmpty ? 0 : 0.5)
        return DecodingOptions(beam: config, languageModel: model)
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

    public var description: String {
        switch self {
        case .badBeam(let beam): return "beam \(beam): the beam width must be at least 1"
        case let .notFinite(setting, value): return "\(setting) \(value): must be a finite number"
        case let .badHotwordWeight(spec, text): return "hotword '\(spec)': the weight after ':' must be a finite number, not '\(text)'"
        case .emptyHotword(let spec): return "hotword '\(spec)' has no words"
        case let .hotwordCharacter(spec, ch, letters): return "hotword '\(spec)': '\(ch)' is not in the model's vocabulary (\(letters))"
        case .languageModel(_, let reason): return "lm: \(reason)"
        }
    }
}
