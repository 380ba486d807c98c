import ArgumentParser

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train an acoustic model (see docs/training.md).")

    @Option(help: "Training configuration (TOML).")
    var config: String

    func run() throws {
        throw CLIError("train: not wired up yet")
    }
}
