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
        discussion: "Default: 1, greedy best-path decoding (the fastest), without --lm, --hotword or transcribe's general LM; \(DecodingSettings.defaultSearchBeam) with any of them; a model adapted with --text decodes with the beam stored with its domain LM. --lm and --hotword need beam search, so they refuse an explicit --beam 1."))
    var beam: Int?

    @Option(help: ArgumentHelp("Word n-gram language model, fused during beam search: ARPA text, or Earshot's binary format (earshot lm compile), which loads about 20x faster.",
                               discussion: "Replaces the model's own domain decoding (its LM, hotwords and weights), if it has one, and transcribe's general LM."))
    var lm: String?

    @Option(help: ArgumentHelp("Weight of the language model's log-probability (alpha); only with --lm or a model with a domain LM.",
                               discussion: "Default: the model's domain decoding's; with --lm \(RecognitionOptions.defaultLMWeight); with the general English LM (transcribe's default) \(DecodingSettings.generalLMWeight)."))
    var lmWeight: Double?

    // .unconditional: a negative bonus ("-1") must not be taken for a flag.
    @Option(parsing: .unconditional, help: ArgumentHelp("Score added per recognised word (beta), offsetting the language model's per-word cost; only with --lm or a model with a domain LM. Raise it if words go missing.",
                               discussion: "Default: the model's domain decoding's; with --lm \(RecognitionOptions.defaultWordBonus); with the general English LM (transcribe's default) \(DecodingSettings.generalWordBonus)."))
    var wordBonus: Double?

    @Flag(name: .customLong("no-model-lm"), help: ArgumentHelp(
        "Ignore the model's own domain decoding (the LM, hotwords and weights 'earshot adapt --text' stores in it).",
        discussion: "Without this, a model that carries one decodes with it by default (beam search), unless --lm replaces it. `earshot model info` shows whether a model has one."))
    var noModelLM = false

    @Option(name: .customLong("hotword"), help: ArgumentHelp(
        "A word or phrase to favour, optionally with a weight: 'earshot' or 'open terminal:4'. Repeatable.",
        discussion: "The phrase may only use the model's characters (letters a-z, apostrophe, spaces; upper case is lowered). The weight is a natural-log bonus per occurrence, default \(RecognitionOptions.defaultHotwordWeight); a negative one discourages the phrase. With a language model, a favoured word it lacks is scored as the model's rarest words are, with no penalty for an unknown word. Repeating a phrase replaces its weight. Hotwords switch decoding to beam search.",
        valueName: "phrase[:weight]"))
    var hotwords: [String] = []

    /// `--closed-vocabulary` / `--open-vocabulary`; neither: the model's choice.
    enum VocabularyMode: String, EnumerableFlag {
        case closedVocabulary, openVocabulary

        static func help(for value: VocabularyMode) -> ArgumentHelp? {
            switch value {
            case .closedVocabulary:
                return ArgumentHelp("Recognise only words of the word list: the model's domain words (earshot adapt --text), or with --lm that model's words, plus the hotwords'.",
                                    discussion: "For speech that never leaves a fixed vocabulary (digits, commands, a roster of names). Default: the model's domain decoding's choice (`earshot model info` shows it); closed with the general English LM (transcribe's default); open with --lm.")
            case .openVocabulary:
                return ArgumentHelp("Allow any spelling, even if the model's domain decoding is closed-vocabulary.")
            }
        }
    }

    @Flag var vocabularyMode: VocabularyMode?

    static let defaultLMWeight = DecodingSettings.defaultLMWeight
    static let defaultWordBonus = DecodingSettings.defaultWordBonus
    static let defaultHotwordWeight = DecodingSettings.defaultHotwordWeight

    func resolvedModelPath() throws -> String {
        if let model {
            return model
        }
        if let env = ProcessInfo.processInfo.environment["EARSHOT_MODEL"], !env.isEmpty { return env }
        var candidates: [String] = []
        for path in Self.defaultModelCandidates() where !candidates.contains(path) { candidates.append(path) }
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw CLIError("no model found: pass --model PATH or set EARSHOT_MODEL (looked in: \(candidates.joined(separator: ", ")))")
    }

    static let defaultModelName = "earshot-base-en.safetensors"

    static func defaultModelCandidates() -> [String] {
        let exe = URL(fileURLWithPath: GeneralLanguageModel.currentExecutable).resolvingSymlinksInPath().deletingLastPathComponent()
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
            if beam == 1 && (lm != nil || !hotwords.isEmpty || vocabularyMode == .closedVocabulary) {
                let flag = lm != nil ? "--lm" : !hotwords.isEmpty ? "--hotword" : "--closed-vocabulary"
                throw CLIError("--beam 1 is greedy decoding, which cannot use \(flag); give a width of 2 or more, or leave --beam out (\(DecodingSettings.defaultSearchBeam))")
            }
        }
        if vocabularyMode == .closedVocabulary && lm == nil && noModelLM {
            throw CLIError("--closed-vocabulary needs a word list, and --no-model-lm turns off the model's; give --lm, or drop --no-model-lm")
        }
        for (flag, value) in [("--lm-weight", lmWeight), ("--word-bonus", wordBonus)] {
            guard let value else { continue }
            guard value.isFinite else { throw CLIError("\(flag) \(value): must be a finite number") }
            if lm == nil && noModelLM {
                throw CLIError("\(flag) \(value) only applies with a language model (it weighs the language model's scores), and --no-model-lm turns the model's off")
            }
        }
        for spec in hotwords {
            do { _ = try DecodingSettings.parseHotword(spec) } catch { throw CLIError("--" + error.description) }
        }
    }

    /// The settings the flags ask for (`DecodingSettings` resolves them against the model).
    var settings: DecodingSettings {
        DecodingSettings(beam: beam ?? 1, languageModel: lm, lmWeight: lmWeight, wordBonus: wordBonus,
                         hotwords: hotwords, useModelDecoding: !noModelLM,
                         closedVocabulary: vocabularyMode.map { $0 == .closedVocabulary })
    }

    /// The decoding the flags ask for with `model` (loaded from `path`): hotwords checked against its
    /// vocabulary, its domain decoding used as `DecodingSettings` rules. `generalLM`: an LM to decode
    /// with when nothing else is asked for (no --lm, --beam 1 or --no-model-lm, and the model has no domain
    /// decoding), with the weights measured for the general English LM unless given.
    func decodingOptions(model: ModelFile, path: String, generalLM: String? = nil) throws -> DecodingOptions {
        try checkFlags()
        var settings = settings
        let domain: DomainDecoding?
        do { domain = try settings.modelDecoding(of: model, file: path) } catch { throw CLIError(error.description) }
        if let generalLM, lm == nil, domain == nil, !noModelLM, beam != 1 {
            settings = settings.usingGeneralLanguageModel(generalLM)
        }
        if settings.languageModel == nil && domain == nil {
            for (flag, value) in [("--lm-weight", lmWeight), ("--word-bonus", wordBonus)] {
                guard let value else { continue }
                throw CLIError("\(flag) \(value) only applies with --lm or a model with a domain LM (it weighs the language model's scores); \(path) has none")
            }
        }
        if domain != nil && beam == 1 {
            throw CLIError("--beam 1 is greedy decoding, which cannot use the model's domain LM; give a width of 2 or more, leave --beam out (\(domain!.beam)), or add --no-model-lm for greedy decoding")
        }
        do { return try settings.makeOptions(vocabulary: Recognizer.vocabulary(of: model), modelDecoding: domain) } catch {
            if case .languageModel(let path, let reason) = error {
                throw CLIError(lm == nil ? "general language model \(path) (transcribe's default; EARSHOT_LM= or --no-general-lm decodes without it): \(reason)" : "--lm \(path): \(reason)")
            }
            if case .modelDecoding = error { throw CLIError(error.description) }
            if case .closedVocabularyWithoutWords = error, lm == nil, let general = settings.languageModel {
                throw CLIError("general language model \(general) (transcribe's default; EARSHOT_LM= or --no-general-lm decodes without it): \(error.description) (model: \(path))")
            }
            if case .closedVocabularyWithoutWords = error { throw CLIError("--" + error.description + " (model: \(path))") }
            throw CLIError("--" + error.description)
        }
    }

    /// The recogniser the flags ask for; `generalLM` as in `decodingOptions`.
    func makeRecognizer(generalLM: String? = nil) throws -> (Recognizer, String) {
        // Flag mistakes first: they cost nothing to find, a model or an LM may take seconds to read.
        try checkFlags()
        let path = try resolvedModelPath()
        // Recognition is measured and deployed one core per stream; BLAS threads would only contend.
        BLASThreads.set(1)
        do {
            let model = try ModelFile.load(path: path)
            let options = try decodingOptions(model: model, path: path, generalLM: generalLM)
            return (try Recognizer(model: model, options: options, file: path), path)
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
    }
}

/// Whether two paths name one file (through links, `./`, or another spelling); false when either does not
/// exist yet. An output that is one of the inputs is refused with this, not by comparing strings.
func sameFile(_ a: String, _ b: String) -> Bool {
    if a == b { return true }
    var x = stat(), y = stat()
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
}

/// Refuses, before any work, a file to write (`flag`'s value) that could not be written at the end: an
/// empty name or one ending in '/', a folder, a folder that is missing or not writable. The file itself
/// is written later, to a temporary name that is then renamed.
func checkOutputFile(_ flag: String, _ path: String, example: String = "adapted.safetensors") throws {
    guard !path.isEmpty, !path.hasSuffix("/") else {
        throw CLIError("\(flag) '\(path)': name the file to write, e.g. \(path.isEmpty ? "" : path)\(example)")
    }
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
        throw CLIError("\(flag) \(path): the folder \(folder) does not exist")
    }
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
        throw CLIError("\(flag) \(path) is a folder; name the file to write, e.g. \(URL(fileURLWithPath: path).appendingPathComponent(example).path)")
    }
    guard access(folder, W_OK) == 0 else {
        throw CLIError("\(flag) \(path): cannot write in the folder \(folder) (\(String(cString: strerror(errno))))")
    }
}

/// Whether writing `output` would replace `input`: the same file (see `sameFile`), or, before `output`
/// exists, the same name in the same folder reached through a link (`link/base.safetensors`).
func wouldReplace(_ output: String, _ input: String) -> Bool {
    if sameFile(output, input) { return true }
    func resolvedFolder(_ p: String) -> String? {
        let url = URL(fileURLWithPath: p)
        guard let real = realpath(url.deletingLastPathComponent().path, nil) else { return nil }
        defer { free(real) }
        return String(cString: real) + "/" + url.lastPathComponent
    }
    guard let a = resolvedFolder(output), let b = resolvedFolder(input) else { return false }
    return a == b
}
