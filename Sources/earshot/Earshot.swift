import ArgumentParser

@main
struct Earshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "earshot",
        abstract: "Offline speech recognition for Linux: transcribe files, evaluate, benchmark, train.",
        discussion: """
        Examples:
          earshot transcribe talk.flac                      # text on stdout
          earshot transcribe *.wav --format srt --output-dir subs/
          earshot eval test/manifest.tsv --hyps hyps.tsv    # WER/CER against references
          earshot bench --audio test/manifest.tsv           # speed per stage and memory
          earshot model info models/earshot-base-en.safetensors
          earshot train --config train.toml

        The model defaults to earshot-base-en.safetensors (see `earshot transcribe --help` for
        where it is looked for); EARSHOT_MODEL overrides it.
        """,
        subcommands: [Transcribe.self, Eval.self, Bench.self, ModelCommand.self, Train.self, Listen.self, StreamCommand.self])
}
