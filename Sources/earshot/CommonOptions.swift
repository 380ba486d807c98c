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

    @Option(help: ArgumentHelp(
        "Beam width of CTC prefix beam search (at least 1).",
        discussion: "Default: 1, greedy best-path decoding (the fastest), without --lm and --hotword; 16 with either. --lm and --hotword need beam search, so they refuse an explicit --beam 1."))
    var beam: Int?

    @Option(help: "Word n-gram language model in ARPA format, fused during beam search.")
    var lm: String?

    @Option(help: ArgumentHelp("Weight of the language model's log-probability (alpha); only with --lm.",
                               discussion: "Default: \(RecognitionOptions.defaultLMWeight)."))
    var lmWeight: Double?

    @Option(help: ArgumentHelp("Score added per recognised word (beta), offsetting the language model's per-word cost; only with --lm. Raise it if words go missing.",
                               discussion: "Default: \(RecognitionOptions.defaultWordBonus)."))
    var wordBonus: Double?

    @Option(name: .customLong("hotword"), help: ArgumentHelp(
        "A word or phrase to favour, optionally with a weight: 'earshot' or 'open terminal:4'. Repeatable.",
        discussion: "The phrase may only use the model's characters (letters a-z, apostrophe, spaces; upper case is lowered). The weight is a natural-log bonus per occurrence, default \(RecognitionOptions.defaultHotwordWeight); a negative one discourages the phrase. Hotwords switch decoding to beam search.",
        valueName: "phrase[:weight]"))
    var hotwords: [String] = []

    static let defaultLMWeight = DecodingSettings.defaultLMWeight
    static let defaultWordBonus = DecodingSettings.defaultWordBonus
    static let defaultHotwordWeight = DecodingSettings.defaultHotwordWeight

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

    /// Checks the flag combinations without reading anything: one-line errors naming the flag and value.
    func checkFlags() throws {
        if let beam {
            guard beam >= 1 else { throw CLIError("--beam \(beam): the beam width must be at least 1") }
            if beam == 1 && (lm != nil || !hotwords.isEmpty) {
                throw CLIError("--beam 1 is greedy decoding, which cannot use \(lm != nil ? "--lm" : "--hotword"); give a width of 2 or more, or leave --beam out (\(DecodingSettings.defaultSearchBeam))")
            }
        }
        for (flag, value) in [("--lm-weight", lmWeight), ("--word-bonus", wordBonus)] {
            guard let value else { continue }
            guard value.isFinite else { throw CLIError("\(flag) \(value): must be a finite number") }
            guard lm != nil else { throw CLIError("\(flag) \(value) only applies with --lm (it weighs the language model's scores)") }
        }
        for spec in hotwords {
            do { _ = try DecodingSettings.parseHotword(spec) } catch { throw CLIError("--" + error.description) }
        }
    }

    /// The decoding the flags ask for, with hotwords checked against `vocabulary`.
    func decodingOptions(vocabulary: Vocabulary) throws -> DecodingOptions {
        try checkFlags()
        let searching = lm != nil || !hotwords.isEmpty
        let settings = DecodingSettings(beam: beam ?? (searching ? DecodingSettings.defaultSearchBeam : 1), languageModel: lm,
                                        lmWeight: lmWeight ?? Self.defaultLMWeight, wordBonus: wordBonus ?? Self.defaultWordBonus,
                                        hotwords: hotwords)
        do { return try settings.makeOptions(vocabulary: vocabulary) } catch {
            if case .languageModel(let path, let reason) = error { throw CLIError("--lm \(path): \(reason)") }
            throw CLIError("--" + error.description)
        }
    }

    func makeRecognizer() throws -> (Recognizer, String) {
        // Flag mistakes first: they cost nothing to find, a model or an LM may take seconds to read.
        try checkFlags()
        let path = try resolvedModelPath()
        // Recognition is measured and deployed one core per stream; BLAS threads would only contend.
        BLASThreads.set(1)
        do {
            let model = try ModelFile.load(path: path)
            let options = try decodingOptions(vocabulary: Recognizer.vocabulary(of: model))
            return (try Recognizer(model: model, options: options, file: path), path)
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
    }
}
