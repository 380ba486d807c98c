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
        let settings = DecodingSettings(beam: beam, languageModel: lm, lmWeight: lmWeight, wordBonus: wordBonus,
                                        hotwords: hotwords)
        do {
            return try settings.makeOptions()
        } catch {
            switch error {
            case .badBeam, .emptyHotword: throw CLIError("--" + error.description)
            case .languageModel: throw CLIError(error.description)
            }
        }
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
