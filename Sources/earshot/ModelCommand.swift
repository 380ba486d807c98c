import ArgumentParser
import Model
import Recognizer

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Inspect model files.", subcommands: [Info.self])

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a model's architecture, size, look-ahead, frontend, vocabulary, provenance and domain decoding.")

        @Argument(help: "Model file (.safetensors).")
        var path: String

        func run() throws {
            do {
                print(try ModelFile.load(path: path).summaryWithDecoding(file: path))
            } catch {
                throw CLIError(error.description)
            }
        }
    }
}
