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

    public init(beam: Int = 1, languageModel: String? = nil, lmWeight: Double = 0.5, wordBonus: Double = 1.0,
                hotwords: [String] = []) {
        self.beam = beam
        self.languageModel = languageModel
        self.lmWeight = lmWeight
        self.wordBonus = wordBonus
        self.hotwords = hotwords
    }

    /// Weight of a hotword given without one.
    public static let defaultHotwordWeight = 3.0

    /// Parses "phrase[:weight]"; the phrase is lower-cased with its spaces normalised.
    public static func parseHotword(_ spec: String) throws(DecodingSettingsError) -> Hotword {
        var phrase = spec, weight = defaultHotwordWeight
        if let colon = spec.lastIndex(of: ":"), let w = Double(spec[spec.index(after: colon)...]) {
            phrase = String(spec[..<colon])
            weight = w
        }
        phrase = phrase.lowercased().split(separator: " ").joined(separator: " ")
        guard !phrase.isEmpty else { throw .emptyHotword(spec) }
        return Hotword(phrase, weight: weight)
    }

    /// The options a `Recognizer` decodes with. Loads the language model (which may take a while for a
    /// large one). A language model or hotwords with `beam` 1 mean beam 16: greedy decoding can use neither.
    public func makeOptions() throws(DecodingSettingsError) -> DecodingOptions {
        guard beam >= 1 else { throw .badBeam(beam) }
        var parsed: [Hotword] = []
        for spec in hotwords { parsed.append(try Self.parseHotword(spec)) }
        var model: NGramLanguageModel?
        if let languageModel {
            do { model = try NGramLanguageModel(arpaFile: URL(fileURLWithPath: languageModel)) } catch {
                throw .languageModel(path: languageModel, reason: "\(error)")
            }
        }
        let width = (model != nil || !parsed.isEmpty) && beam == 1 ? 16 : beam
        if width == 1 { return .greedy }
        let config = BeamSearchConfiguration(beamWidth: width, tokenTopK: 8, blankSkipThreshold: 0.999,
                                             lmWeight: lmWeight, wordInsertionBonus: model == nil ? 0 : wordBonus,
                                             hotwords: parsed, hotwordPrefixBonus: parsed.isEmpty ? 0 : 0.5)
        return DecodingOptions(beam: config, languageModel: model)
    }
}

/// Why decoding settings cannot be used; the CLI and the daemon prefix the flag or key.
public enum DecodingSettingsError: Error, CustomStringConvertible, Equatable, Sendable {
    case badBeam(Int)
    case emptyHotword(String)
    case languageModel(path: String, reason: String)

    public var description: String {
        switch self {
        case .badBeam(let beam): return "beam must be at least 1 (got \(beam))"
        case .emptyHotword(let spec): return "hotword '\(spec)' has no words"
        case .languageModel(_, let reason): return "cannot use the language model: \(reason)"
        }
    }
}
