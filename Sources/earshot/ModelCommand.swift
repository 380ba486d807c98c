import ArgumentParser
import Model

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Inspect model files.", subcommands: [Info.self])

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a model's architecture, size, look-ahead, frontend, vocabulary and provenance.")

        @Argument(help: "Model file (.safetensors).")
        var path: String

        func run() throws {
            do {
                print(try ModelFile.load(path: path).summary())
            } catch {
                throw CLIError(error.description)
            }
        }
    }
}
