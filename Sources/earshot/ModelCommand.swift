import ArgumentParser
import Model
import Recognizer
import Training

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Inspect and combine model files.", subcommands: [Info.self, Average.self, Deepen.self])

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
                  earshot model average --out avg.safetensors \\
                    run/snapshots/step-00028000.safetensors \\
                    run/snapshots/step-00029000.safetensors \\
                    run/snapshots/step-00030000.safetensors
                """)

        @Option(help: "The averaged model to write (.safetensors).")
        var out: String

        @Argument(help: "Two or more model files (.safetensors).")
        var models: [String]

        func validate() throws {
            guard models.count >= 2 else { throw ValidationError("give at least two models to average") }
            guard !models.contains(where: { sameFile($0, out) }) else { throw ValidationError("--out \(out) is one of the inputs; write the average elsewhere") }
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

    struct Deepen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Insert residual blocks into a model, each starting near the identity, to train it on with more capacity.",
            discussion: """
                Progressive growing: the new blocks copy the shape of the model's residual blocks, with a \
                causal depthwise convolution (the look-ahead, and so the latency, is unchanged), and are \
                spread evenly between the old ones. Their LayerNorm gain starts at --gain, so the deepened \
                model decodes almost as the original does; train it on with model.init_from (a fresh \
                optimiser) to let the new blocks learn. Blocks are renumbered in order. Each block costs \
                about channels x (channels + kernel) multiplies per frame: six blocks make the shipped \
                model about a third slower. Written atomically.

                Example:
                  earshot model deepen --blocks 6 --out deeper.safetensors models/earshot-base-en.safetensors
                """)

        @Option(help: "Residual blocks to add.")
        var blocks: Int

        @Option(help: "Starting LayerNorm gain of the new blocks; above 0 (at 0 they would add nothing, exactly, but never learn).")
        var gain: Float = 0.05

        @Option(help: "Seed for the new blocks' convolution weights.")
        var seed: UInt64 = 1

        @Option(help: "The deepened model to write (.safetensors).")
        var out: String

        @Argument(help: "Model file (.safetensors).")
        var model: String

        func validate() throws {
            guard (1...256).contains(blocks) else { throw ValidationError("--blocks must be in 1...256") }
            guard gain > 0, gain.isFinite else { throw ValidationError("--gain must be a positive number (at 0 the new blocks never learn)") }
            guard !sameFile(out, model) else { throw ValidationError("--out \(out) is the input; write the deepened model elsewhere") }
        }

        func run() throws {
            do {
                let original = try ModelFile.load(path: model)
                let deeper = try original.deepened(by: blocks, gain: gain, seed: seed, file: model)
                try deeper.save(path: out)
                let before = original.description.architecture, after = deeper.description.architecture
                print("\(model): \(before.parameterCount) parameters -> \(out): \(after.parameterCount) (\(blocks) blocks added; look-ahead \(String(format: "%.0f", after.lookAheadMs)) ms)")
            } catch let error as DeepenError {
                throw CLIError(error.description)
            } catch let error as ModelError {
                throw CLIError(error.description)
            }
        }
    }
}
