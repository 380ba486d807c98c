import ArgumentParser
import Model
import Recognizer

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Inspect and combine model files.", subcommands: [Info.self, Average.self])

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

    struct Average: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Average the weights of snapshots of one training run into a new model.",
            discussion: """
                Checkpoint averaging: the element-wise mean of the last few snapshots of a run (earshot \
                train writes them with run.snapshot_every_steps) usually decodes better than any one of \
                them. The models must share architecture, frontend, vocabulary and feature statistics, \
                which snapshots of one run do, and so do snapshots of runs started from the same model \
                (model.init_from keeps its statistics; their mean is a "model soup", which is how the \
                shipped model was made); anything else is refused, naming the file. The output records \
                the inputs (provenance 'averaged_from') and is written atomically.

                Example:
                  earshot model average --out avg.safetensors run/snapshots/step-00028000.safetensors \
                    run/snapshots/step-00029000.safetensors run/snapshots/step-00030000.safetensors
                """)

        @Option(help: "The averaged model to write (.safetensors).")
        var out: String

        @Argument(help: "Two or more model files (.safetensors).")
        var models: [String]

        func validate() throws {
            guard models.count >= 2 else { throw ValidationError("give at least two models to average") }
            guard !models.contains(out) else { throw ValidationError("--out \(out) is one of the inputs; write the average elsewhere") }
        }

        func run() throws {
            do {
                let loaded = try models.map { path throws(ModelError) in (file: path, model: try ModelFile.load(path: path)) }
                try ModelFile.average(loaded).save(path: out)
                print("averaged \(models.count) models into \(out)")
            } catch {
                throw CLIError(error.description)
            }
        }
    }
}
