import ArgumentParser
import Decoding
import Foundation
import Model
import Recognizer

/// Printable one-line failure for the CLI: the message a user can act on, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The model and decoding flags shared by every command that recognises speech.
struct RecognitionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Model file (.safetensors).",
        discussion: "Default: $EARSHOT_MODEL, else earshot-base-en.safetensors from the models/ folder next to the build, or /usr/local/share/earshot/models, or /usr/share/earshot/models."))
    var model: String?

    @Option(help: "Beam width for CTC prefix beam search; 1 means greedy best-path decoding (fastest).")
    var beam: Int = 1

    @Option(help: "Word n-gram language model in ARPA format, fused during beam search (implies --beam 16 unless given).")
    var lm: String?

    @Option(help: "Weight of the language model's log-probability (alpha).")
    var lmWeight: Double = 0.5

    @Option(help: "Score added per word (beta); raise it if words go missing with an LM.")
    var wordBonus: Double = 1.0

    @Option(name: .customLong("hotword"), help: ArgumentHelp(
        "A word or phrase to favour, optionally with a weight: 'earshot' or 'open terminal:4'. Repeatable.",
        valueName: "phrase[:weight]"))
    var hotwords: [String] = []

    func resolvedModelPath() throws -> String {
        if let model {
            return model
        }
        if let env = ProcessInfo.processInfo.environment["EARSHOT_MODEL"], !env.isEmpty { return env }
        let candidates = Self.defaultModelCandidates()
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw CLIError("no model found: pass --model PATH or set EARSHOT_MODEL (looked in: \(candidates.joined(separator: ", ")))")
    }

    static let defaultModelName = "earshot-base-en.safetensors"

    static func defaultModelCandidates() -> [String] {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        return [
            // A build tree: .build/<config>/earshot -> <repo>/models
            exe.appendingPathComponent("../../models/\(defaultModelName)").standardized.path,
            exe.appendingPathComponent("../../../models/\(defaultModelName)").standardized.path,
            exe.appendingPathComponent("../share/earshot/models/\(defaultModelName)").standardized.path,
            "/usr/local/share/earshot/models/\(defaultModelName)",
            "/usr/share/earshot/models/\(defaultModelName)",
        ]
    }

    func decodingOptions() throws -> DecodingOptions {
        guard beam >= 1 else { throw CLIError("--beam must be at least 1 (got \(beam))") }
        var parsedHotwords: [Hotword] = []
        for spec in hotwords {
            var phrase = spec, weight = 3.0
            if let colon = spec.lastIndex(of: ":"), let w = Double(spec[spec.index(after: colon)...]) {
                phrase = String(spec[..<colon]); weight = w
            }
            phrase = phrase.lowercased().split(separator: " ").joined(separator: " ")
            guard !phrase.isEmpty else { throw CLIError("--hotword '\(spec)' has no words") }
            parsedHotwords.append(Hotword(phrase, weight: weight))
        }
        var languageModel: NGramLanguageModel?
        if let lm {
            do { languageModel = try NGramLanguageModel(arpaFile: URL(fileURLWithPath: lm)) } catch {
                throw CLIError("cannot use the language model: \(error)")
            }
        }
        let width = (languageModel != nil || !parsedHotwords.isEmpty) && beam == 1 ? 16 : beam
        if width == 1 { return .greedy }
        let config = BeamSearchConfiguration(beamWidth: width, tokenTopK: 8, blankSkipThreshold: 0.999,
                                             lmWeight: lmWeight, wordInsertionBonus: languageModel == nil ? 0 : wordBonus,
                                             hotwords: parsedHotwords, hotwordPrefixBonus: parsedHotwords.isEmpty ? 0 : 0.5)
        return DecodingOptions(beam: config, languageModel: languageModel)
    }

    func makeRecognizer() throws -> (Recognizer, String) {
        let path = try resolvedModelPath()
        // Recognition is measured and deployed one core per stream; BLAS threads would only contend.
        BLASThreads.set(1)
        do {
            return (try Recognizer(modelPath: path, options: try decodingOptions()), path)
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
    }
}
