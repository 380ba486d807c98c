import Adaptation
import ArgumentParser
import Foundation
import Training

struct Adapt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adapt a model to your recordings (transfer learning on a frozen encoder).",
        discussion: """
        DATA is a manifest (audio-path<TAB>text per line), a folder with a manifest.tsv, or a folder \
        of audio files each with a .txt transcript of the same name beside it; any format and rate \
        that `transcribe` reads. Items that cannot be used (unreadable audio, empty transcript, \
        characters the model cannot spell, audio too short for its text) are listed with the reason \
        and skipped. The encoder below the trained layers is frozen: its activations are computed \
        once and cached on disk (--cache), reused across epochs and later runs while the base model, \
        the cut and the audio files are unchanged. The top --layers layers (and --encoder-blocks more \
        at a reduced learning rate) are fine-tuned with the CTC loss, validated after every epoch \
        (greedy WER on --val, or on a --val-fraction of DATA, see --split-by), stopped \
        early after --patience epochs without improvement, and the best epoch is written to --out \
        (atomically) with its provenance: base model hash, data hash, options, before/after scores.

        Example:
          earshot adapt --base models/earshot-base-en.safetensors --data my-recordings/ --out me.safetensors
        """)

    @Option(help: ArgumentHelp("Base model (.safetensors).", discussion: "Default: $EARSHOT_MODEL, else the shipped earshot-base-en.safetensors."))
    var base: String?

    @Option(help: "Adaptation data: a manifest .tsv, a folder with manifest.tsv, or audio files with .txt transcripts.")
    var data: String

    @Option(help: "Where to write the adapted model.")
    var out: String

    @Option(help: "Parameterised layers trained at the full learning rate, counted from the top (the base model's two dense layers: 2).")
    var layers: Int = AdaptOptions().layers

    @Option(help: ArgumentHelp("Further layers below those (the top encoder blocks) trained at --lr x --encoder-lr-factor; the activation cache sits below them.",
                               discussion: "Default: every residual block (12 in the base model): on unseen FSDD speakers it adapted best (bench/adapt-fsdd.sh). 0 trains the --layers only (fastest)."))
    var encoderBlocks: Int?

    @Option(help: "Learning-rate factor of the --encoder-blocks layers.")
    var encoderLrFactor: Float = AdaptOptions().encoderLRFactor

    @Option(help: "Most epochs; early stopping usually ends sooner.")
    var epochs: Int = AdaptOptions().epochs

    @Option(help: "Peak learning rate (AdamW; short warm-up, cosine decay).")
    var lr: Float = AdaptOptions().learningRate

    @Option(help: "Epochs without a better validation WER before stopping.")
    var patience: Int = AdaptOptions().patience

    @Option(help: "Share of DATA held out for validation when --val is not given (0 disables validation and early stopping).")
    var valFraction: Double = AdaptOptions().valFraction

    @Option(help: ArgumentHelp("How DATA is split for validation: 'prefix' keeps the takes of one prompt (names differing only in a trailing number) together, 'file' splits file by file.", valueName: "prefix|file"))
    var splitBy: String = AdaptOptions().splitByPrefix ? "prefix" : "file"

    @Option(help: "An explicit validation set (same forms as DATA).")
    var val: String?

    @Option(help: "A general manifest (e.g. the base model's training data) mixed into every epoch, so adapting does not unlearn general speech.")
    var general: String?

    @Option(help: "Share of each epoch's utterances drawn from --general.")
    var generalShare: Double = AdaptOptions().generalShare

    @Option(help: "Activation cache folder (~/ is $HOME).")
    var cache: String = "~/.cache/earshot/adapt"

    @Option(help: "Utterances per optimiser step.")
    var batch: Int = AdaptOptions().batchSize

    @Option(help: "Masked time bands per utterance on the cached activations (0: no time masking).")
    var timeMasks: Int = AdaptOptions().timeMasks

    @Option(help: "Masked channel bands per utterance on the cached activations (0: no channel masking).")
    var channelMasks: Int = AdaptOptions().channelMasks

    @Option(help: "Seed of the validation split, the shuffling and the masks.")
    var seed: UInt64 = AdaptOptions().seed

    @Option(help: "Worker threads.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    // --text CORPUS (a domain language model from text) belongs beside these; it is added with the LM work.

    func options() -> AdaptOptions {
        var o = AdaptOptions()
        o.layers = layers; o.encoderBlocks = encoderBlocks; o.encoderLRFactor = encoderLrFactor
        o.epochs = epochs; o.learningRate = lr; o.patience = patience; o.valFraction = valFraction
        o.generalShare = generalShare; o.batchSize = batch; o.timeMasks = timeMasks; o.channelMasks = channelMasks
        o.seed = seed; o.threads = threads
        o.splitByPrefix = splitBy == "prefix"
        return o
    }

    func resolvedBase() throws -> String {
        if let base { return expandTilde(base) }
        if let env = ProcessInfo.processInfo.environment["EARSHOT_MODEL"], !env.isEmpty { return env }
        let candidates = RecognitionOptions.defaultModelCandidates()
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw CLIError("no base model found: pass --base PATH or set EARSHOT_MODEL (looked in: \(candidates.joined(separator: ", ")))")
    }

    static func adapt(basePath: String, data: AdaptData, cache: URL, options: AdaptOptions, out: String,
                      display: AdaptDisplay) throws(AdaptError) -> AdaptResult {
        let adapter = try Adapter(baseModel: basePath, data: data, cacheRoot: cache, options: options, log: { display.log($0) })
        display.log("adapting \(basePath): training \(adapter.split.trainedLayers.joined(separator: ", "))")
        let result = try adapter.run(progress: { display.show($0) })
        try result.write(to: out)
        return result
    }

    func run() throws {
        guard splitBy == "prefix" || splitBy == "file" else { throw CLIError("--split-by \(splitBy): must be 'prefix' or 'file'") }
        let options = options()
        do { try options.validate() } catch { throw CLIError(error.description) }
        let basePath = try resolvedBase()
        let outPath = expandTilde(out)
        let outDir = URL(fileURLWithPath: outPath).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: outDir, isDirectory: &isDir), isDir.boolValue else {
            throw CLIError("--out \(out): the folder \(outDir) does not exist")
        }
        if URL(fileURLWithPath: outPath).standardizedFileURL == URL(fileURLWithPath: basePath).standardizedFileURL {
            throw CLIError("--out \(out) is the base model; write the adapted model to another file")
        }
        if general == nil && generalShare != AdaptOptions().generalShare {
            throw CLIError("--general-share \(generalShare) only applies with --general MANIFEST")
        }
        // Before the base model is read: a mistyped path should cost nothing.
        for (flag, path) in [("data", self.data), ("--val", val), ("--general", general)] {
            guard let path else { continue }
            if !FileManager.default.fileExists(atPath: expandTilde(path)) { throw CLIError("\(flag) \(expandTilde(path)): no such file or folder") }
        }
        let display = AdaptDisplay(terminal: isatty(STDERR_FILENO) == 1)
        let data = AdaptData(train: expandTilde(self.data), validation: val.map(expandTilde), general: general.map(expandTilde))
        let result: AdaptResult
        do {
            result = try Self.adapt(basePath: basePath, data: data, cache: URL(fileURLWithPath: expandTilde(cache)),
                                    options: options, out: outPath, display: display)
        } catch {
            display.finish()
            throw CLIError("\(error)")
        }
        display.finish()
        func figures(_ s: ValidationScore?) -> String {
            s.map { String(format: "WER %.2f%%  CER %.2f%%", $0.wer, $0.cer) } ?? "(no validation set)"
        }
        print("validation: \(result.validationUtterances) utterances, training: \(result.trainUtterances), skipped: \(result.skipped.count)")
        print("before:     \(figures(result.before))")
        print("after:      \(figures(result.after))  (epoch \(result.bestEpoch) of \(result.epochsRun))")
        print("model:      \(outPath)")
    }
}

/// `earshot adapt`'s progress on stderr: a bar rewritten in place on a terminal (caching, then epoch,
/// step, loss and time left), plain lines otherwise.
final class AdaptDisplay: Sendable {
    private struct State {
        var start = Date()
        var trainingStart: Date?
        var lastDraw = Date.distantPast
        var lastLogged = -1
        var drawn = false
    }
    private let terminal: Bool
    private let state = Locked(State())

    init(terminal: Bool) { self.terminal = terminal }

    func log(_ line: String) {
        state.withLock { s in
            if terminal && s.drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)); s.drawn = false }
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    func show(_ event: AdaptProgress) {
        switch event {
        case let .caching(done, total):
            if terminal {
                draw(force: done == total) { s in
                    let eta = done > 0 ? Date().timeIntervalSince(s.start) / Double(done) * Double(total - done) : 0
                    return "caching activations \(Self.bar(Double(done) / Double(max(total, 1)))) \(done)/\(total)  ~\(ProgressReporter.duration(eta)) left"
                }
            } else {
                let tenth = total > 0 ? done * 10 / total : 10
                let logged = state.withLock { s -> Bool in
                    if tenth > s.lastLogged { s.lastLogged = tenth; return true }
                    return false
                }
                if logged { log("caching activations: \(done)/\(total)") }
            }
        case let .training(epoch, epochs, step, steps, loss):
            guard terminal else { return }
            draw(force: step == steps) { s in
                let start = s.trainingStart ?? Date()
                if s.trainingStart == nil { s.trainingStart = start }
                let done = Double((epoch - 1) * steps + step), total = Double(epochs * steps)
                let eta = Date().timeIntervalSince(start) / done * (total - done)
                return String(format: "%@ epoch %d/%d step %d/%d loss %.3f  ~%@ left at most", Self.bar(done / total),
                              epoch, epochs, step, steps, loss, ProgressReporter.duration(eta))
            }
        case let .validated(epoch, score, best):
            let what = epoch == 0 ? "base model" : "epoch \(epoch)"
            log(String(format: "%@: validation WER %.2f%% CER %.2f%% loss %.3f%@", what, score.wer, score.cer, score.loss,
                       best && epoch > 0 ? " (best so far)" : ""))
        }
    }

    func finish() {
        state.withLock { s in
            if terminal && s.drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)); s.drawn = false }
        }
    }

    private func draw(force: Bool, _ line: (inout State) -> String) {
        state.withLock { s in
            let now = Date()
            guard force || now.timeIntervalSince(s.lastDraw) > 0.1 else { return }
            s.lastDraw = now
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line(&s)).utf8))
            s.drawn = true
        }
    }

    static func bar(_ fraction: Double) -> String {
        let width = 24, filled = Int(min(1, max(0, fraction)) * Double(width))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}
