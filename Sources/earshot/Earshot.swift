import ArgumentParser
import CStdio
import Foundation

@main
struct Earshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "earshot",
        abstract: "Offline speech recognition for Linux: transcribe, evaluate, train, adapt, and talk to earshotd.",
        discussion: """
        Examples:
          earshot transcribe talk.flac                  # text on stdout
          earshot transcribe *.wav --format srt --output-dir subs/
          earshot eval test.tsv --hyps hyps.tsv         # WER/CER against references
          earshot bench --audio test.tsv                # speed per stage, memory
          earshot adapt --data my-recordings/ --out me.safetensors
          earshot listen                                # the daemon's live transcripts
          earshot model info models/earshot-base-en.safetensors

        The model defaults to earshot-base-en.safetensors (`earshot transcribe
        --help` says where it is looked for); EARSHOT_MODEL overrides it.
        Each subcommand's --help has more examples.
        """,
        subcommands: [Transcribe.self, Eval.self, Bench.self, ModelCommand.self, LMCommand.self, Train.self, Adapt.self, Listen.self,
                      StreamCommand.self, Status.self, Reload.self, Ingest.self])

    /// ArgumentParser's `main`, except that a `CLIError` (a failure the user can act on, already in
    /// words) is printed as one `earshot: ...` line, like the per-file failures, and exits with 1.
    /// Usage mistakes ArgumentParser detects itself still get its message and usage.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
            // Every command's product that went to stdout and was lost (a full disk, a closed pipe
            // reader) makes the run a failure, so scripts do not take an empty result for a good one.
            // What `print` wrote (eval, model info, bench) sits in C's buffer until this flush.
            switch earshot_stdout_failed() {
            case 0: break
            case 1:
                let code = errno
                standardOutputFailure.withLock { $0 = $0 ?? String(cString: strerror(code)) }
            default:
                standardOutputFailure.withLock { $0 = $0 ?? "an earlier write failed" }
            }
            if let failure = standardOutputFailure.current {
                throw CLIError("cannot write to standard output: \(failure)")
            }
        } catch let error as CLIError {
            writeErr(error.description)
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}
