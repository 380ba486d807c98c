import Adaptation
import ArgumentParser
import Decoding
import Foundation
import Model
import Recognizer
import Scoring
import Tensors
import Training

struct Adapt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adapt a model to your recordings (transfer learning: the front end frozen, the top layers fine-tuned).",
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
        early after --patience epochs without improvement. This is done --runs times with different \
        seeds (3 by default) and the mean of the runs' best weights (the best run, should the \
        mean validate worse than each of them) is written to --out \
        (atomically) with its provenance: base model hash, data hash, options, before/after scores.

        --text CORPUS (one phrase or sentence per line: commands, jargon, names) builds a word n-gram \
        language model, word list and hotword list that are stored in the output model and used \
        whenever it decodes (transcribe, eval, earshotd; --no-model-lm turns it off there). With \
        --data, its weights, and with --vocabulary auto whether decoding is limited to the corpus's \
        words, are tuned on the validation split; --text alone adds it to the base model as is.

        Examples:
          earshot adapt --base models/earshot-base-en.safetensors --data my-recordings/ --out me.safetensors
          earshot adapt --data my-recordings/ --text my-phrases.txt --out me.safetensors
          earshot adapt --text commands.txt --vocabulary closed --out commands.safetensors
        """)

    @Option(help: ArgumentHelp("Base model (.safetensors).", discussion: "Default: $EARSHOT_MODEL, else the shipped earshot-base-en.safetensors."))
    var base: String?

    @Option(help: "Adaptation data: a manifest .tsv, a folder with manifest.tsv, or audio files with .txt transcripts.")
    var data: String?

    @Option(help: "Domain text (UTF-8, one phrase or sentence per line): a language model, word list and hotwords stored with the model.")
    var text: String?

    @Option(help: ArgumentHelp("With --text: 'closed' decodes only the text's words (commands, digits), 'open' lets other words through at a penalty, 'auto' picks the better on the validation split (closed on a tie if every validation word is in the text; open without --data).", valueName: "auto|closed|open"))
    var vocabulary: String = "auto"

    @Option(help: "Validation utterances used to tune the --text language model's weights.")
    var tuneUtterances: Int = 300

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

    @Option(help: "Share of DATA held out for validation when --val is not given (0 disables validation and early stopping; otherwise data too small to hold one recording out is refused).")
    var valFraction: Double = AdaptOptions().valFraction

    @Option(help: ArgumentHelp("How DATA is split for validation: 'prefix' keeps the takes of one prompt (names differing only in a trailing number) together, 'file' splits file by file.", valueName: "prefix|file"))
    var splitBy: String = AdaptOptions().splitByPrefix ? "prefix" : "file"

    @Option(help: "An explicit validation set (same forms as DATA).")
    var val: String?

    @Option(help: "A general manifest (e.g. the base model's training data) mixed into every epoch, so adapting does not unlearn general speech.")
    var general: String?

    @Flag(help: ArgumentHelp("Mix general speech into every epoch without a corpus: the shipped sentence list (rehearsal-en.tsv beside the base model) synthesised once with espeak-ng into the cache folder. Keeps general recognition when the domain is narrow, at some cost to the domain; needs espeak-ng."))
    var rehearse = false

    @Option(help: ArgumentHelp("The sentence list --rehearse synthesises (espeak-ng voice<TAB>words per minute<TAB>text per line).", valueName: "tsv"))
    var rehearsalList: String?

    @Option(help: "Share of each epoch's utterances drawn from --general or --rehearse.")
    var generalShare: Double = AdaptOptions().generalShare

    @Option(help: "Pull of the trained weights towards the base model's (L2-SP; 0: none): keeps general recognition when the domain is narrow.")
    var anchor: Float = AdaptOptions().anchor

    @Option(help: ArgumentHelp("Speed perturbation of the training recordings: comma-separated factors; each epoch trains on one version of each recording, drawn at random from these speeds (1: as recorded; 1.1: 10% faster, pitch and tempo together, as from a different voice). Include 1 to keep the recordings as they are among them. Each factor costs cache space and caching time, not training time.",
                               valueName: "factors"))
    var speed: String = AdaptOptions().speedFactors.map { $0 == 1 ? "1" : String($0) }.joined(separator: ",")

    @Option(help: "Activation cache folder (~/ is $HOME).")
    var cache: String = "~/.cache/earshot/adapt"

    @Option(help: ArgumentHelp("After a run, delete cache entries no run has read for this many days (those of replaced base models and deleted recordings); 0 keeps everything.", valueName: "days"))
    var pruneCacheDays: Double = 30

    @Option(help: "Utterances per optimiser step.")
    var batch: Int = AdaptOptions().batchSize

    @Option(help: "Masked time bands per utterance on the cached activations (0: no time masking).")
    var timeMasks: Int = AdaptOptions().timeMasks

    @Option(help: "Masked channel bands per utterance on the cached activations (0: no channel masking).")
    var channelMasks: Int = AdaptOptions().channelMasks

    @Option(help: "Seed of the validation split, the shuffling and the masks (the --runs use seed, seed + 1, ... for the last two).")
    var seed: UInt64 = AdaptOptions().seed

    @Option(help: ArgumentHelp("Training runs with different seeds, whose weights are averaged: steadier and better on new speakers than one run, at one run's training time each (1: a single run). Should the mean validate worse than every run, the best run is kept.",
                               valueName: "n"))
    var runs: Int = AdaptOptions().runs

    @Option(help: "Worker threads.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func options() -> AdaptOptions {
        var o = AdaptOptions()
        o.layers = layers; o.encoderBlocks = encoderBlocks; o.encoderLRFactor = encoderLrFactor
        o.epochs = epochs; o.learningRate = lr; o.patience = patience; o.valFraction = valFraction
        o.generalShare = generalShare; o.batchSize = batch; o.timeMasks = timeMasks; o.channelMasks = channelMasks
        o.seed = seed; o.runs = runs; o.threads = threads; o.anchor = anchor
        o.tuningUtterances = text == nil ? 0 : tuneUtterances
        o.splitByPrefix = splitBy == "prefix"
        o.speedFactors = speedFactors ?? []
        return o
    }

    /// --speed parsed; nil when a part is not a number (`options().validate()` then names the flag).
    var speedFactors: [Double]? {
        let parts = speed.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap { Double($0) }
        return values.count == parts.count ? values : nil
    }

    /// --rehearsal-list, else rehearsal-en.tsv beside the base model, else in the shipped models folders.
    func resolvedRehearsalList(basePath: String) throws -> String {
        if let rehearsalList {
            let path = expandTilde(rehearsalList)
            guard FileManager.default.fileExists(atPath: path) else { throw CLIError("--rehearsal-list \(path): no such file") }
            return path
        }
        let name = "rehearsal-en.tsv"
        let candidates = [URL(fileURLWithPath: basePath).deletingLastPathComponent().appendingPathComponent(name).path]
            + RecognitionOptions.defaultModelCandidates().map { URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent(name).path }
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw CLIError("--rehearse: no sentence list \(name) found (looked in: \(candidates.joined(separator: ", "))); pass --rehearsal-list PATH")
    }

    func resolvedBase() throws -> String {
        if let base { return expandTilde(base) }
        if let env = ProcessInfo.processInfo.environment["EARSHOT_MODEL"], !env.isEmpty { return env }
        let candidates = RecognitionOptions.defaultModelCandidates()
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw CLIError("no base model found: pass --base PATH or set EARSHOT_MODEL (looked in: \(candidates.joined(separator: ", ")))")
    }

    static func adapt(basePath: String, data: AdaptData, cache: URL, options: AdaptOptions,
                      display: AdaptDisplay) throws(AdaptError) -> AdaptResult {
        let adapter = try Adapter(baseModel: basePath, data: data, cacheRoot: cache, options: options, log: { display.log($0) })
        display.log("adapting \(basePath): training \(adapter.split.trainedLayers.joined(separator: ", "))")
        return try adapter.run(progress: { display.show($0) })
    }

    func run() throws {
        guard splitBy == "prefix" || splitBy == "file" else { throw CLIError("--split-by \(splitBy): must be 'prefix' or 'file'") }
        guard ["auto", "closed", "open"].contains(vocabulary) else { throw CLIError("--vocabulary \(vocabulary): must be 'auto', 'closed' or 'open'") }
        guard data != nil || text != nil else { throw CLIError("nothing to adapt to: give --data (recordings) or --text (domain text), or both") }
        guard speedFactors != nil else { throw CLIError("--speed \(speed): give comma-separated numbers, e.g. 0.9,1,1.1") }
        guard pruneCacheDays >= 0, pruneCacheDays.isFinite else { throw CLIError("--prune-cache-days \(pruneCacheDays): must be 0 (never) or more days") }
        guard tuneUtterances >= 0 else { throw CLIError("--tune-utterances \(tuneUtterances): must be at least 0") }
        let options = options()
        do { try options.validate() } catch { throw CLIError(error.description) }
        let basePath = try resolvedBase()
        // Before a rehearsal set is synthesised or anything cached.
        guard FileManager.default.fileExists(atPath: basePath) else { throw CLIError("--base \(basePath): no such file") }
        if let data = self.data, let val, sameFile(expandTilde(data), expandTilde(val)) {
            throw CLIError("--val \(val) is --data: validation must be other recordings; leave out --val to hold out a share of --data (--val-fraction)")
        }
        let outPath = expandTilde(out)
        // Checked now, not after minutes of training: the model is written beside it (temporary, rename).
        try checkOutputFile("--out", outPath)
        if wouldReplace(outPath, basePath) {
            throw CLIError("--out \(out) is the base model; write the adapted model to another file")
        }
        for (flag, path) in [("--data", self.data), ("--val", val), ("--text", text)] {
            if let path, wouldReplace(outPath, expandTilde(path)) { throw CLIError("--out \(out) is the \(flag) file; write the model to another file") }
        }
        if general == nil && !rehearse && generalShare != AdaptOptions().generalShare {
            throw CLIError("--general-share \(generalShare) only applies with --general MANIFEST or --rehearse")
        }
        if general != nil && rehearse { throw CLIError("--general and --rehearse both give general data: choose one") }
        if (general != nil || rehearse) && generalShare == 0 {
            throw CLIError("--general-share 0 mixes no general data in; drop \(rehearse ? "--rehearse" : "--general"), or give a share above 0")
        }
        if vocabulary != "auto" && text == nil { throw CLIError("--vocabulary \(vocabulary) only applies with --text (the domain LM's vocabulary)") }
        if rehearsalList != nil && !rehearse { throw CLIError("--rehearsal-list only applies with --rehearse") }
        if rehearse && self.data == nil { throw CLIError("--rehearse mixes general speech into training on --data: give --data too") }
        // Before the base model is read: a mistyped path should cost nothing.
        for (flag, path) in [("--data", self.data), ("--val", val), ("--general", general), ("--text", text)] {
            guard let path else { continue }
            if !FileManager.default.fileExists(atPath: expandTilde(path)) { throw CLIError("\(flag) \(expandTilde(path)): no such file or folder") }
        }
        // A folder without recordings or a file that is no manifest is refused here too (listing is cheap).
        for path in [self.data, val].compactMap({ $0 }) {
            do { _ = try DataDiscovery.discover(expandTilde(path)) } catch { throw CLIError(error.description) }
        }
        // Read and built before any training, so a bad corpus (a line with no word the model can spell, a
        // text too large to store in the model) costs nothing: the base model has the adapted one's
        // alphabet and size limit. Only the tuning of its weights waits for the validation audio.
        let domainText: String? = try text.map { path in
            do { return try String(contentsOfFile: expandTilde(path), encoding: .utf8) } catch {
                throw CLIError("--text \(expandTilde(path)): cannot read it as UTF-8 text (\(error.localizedDescription))")
            }
        }
        var builtDecoding: DomainDecoding?
        if let domainText, let textPath = text {
            let base: ModelFile
            do { base = try ModelFile.load(path: basePath) } catch { throw CLIError("\(error)") }
            do {
                builtDecoding = try DomainDecoding.build(text: domainText, vocabulary: Vocabulary(ctcTokens: base.description.vocabulary),
                                                         closedVocabulary: vocabulary == "closed")
                _ = try base.withDomainDecoding(builtDecoding!)
            } catch { throw CLIError("--text \(expandTilde(textPath)): \(error)") }
        }
        let display = AdaptDisplay(terminal: isatty(STDERR_FILENO) == 1)
        var model: ModelFile
        var result: AdaptResult?
        var rehearsedList: String?
        if let dataPath = self.data {
            var generalPath = general.map(expandTilde)
            if rehearse {
                let list = try resolvedRehearsalList(basePath: basePath)
                display.log("rehearsal: synthesising \(list) with espeak-ng (once; kept in the cache folder)")
                do {
                    generalPath = try RehearsalSet(list: list).manifest(root: URL(fileURLWithPath: expandTilde(cache)), threads: threads)
                    rehearsedList = list
                } catch {
                    display.finish()
                    throw CLIError("\(error)")
                }
            }
            let data = AdaptData(train: expandTilde(dataPath), validation: val.map(expandTilde), general: generalPath)
            do {
                result = try Self.adapt(basePath: basePath, data: data, cache: URL(fileURLWithPath: expandTilde(cache)),
                                        options: options, display: display)
            } catch {
                display.finish()
                throw CLIError("\(error)")
            }
            display.finish()
            model = result!.model
        } else {
            do { model = try ModelFile.load(path: basePath) } catch { throw CLIError("\(error)") }
        }
        // Recorded only if general utterances were in fact mixed in (all of them can fail their checks).
        if let rehearsedList, case .object(let a)? = model.description.provenance["adaptation"], a["general_per_epoch"] != nil,
           let listText = try? Data(contentsOf: URL(fileURLWithPath: rehearsedList)) {
            model.description.provenance["rehearsal"] = .object([
                "list": .string(rehearsedList), "sha256": .string(SHA256.hex([UInt8](listText))), "synthesiser": .string("espeak-ng")])
        }
        var domainLine: String?
        if let domainText, let textPath = text {
            let (decoding, line) = try Self.domainDecoding(text: domainText, textPath: expandTilde(textPath), model: model,
                                                           tuningSet: result?.tuningSet ?? [], mode: vocabulary, display: display,
                                                           built: builtDecoding)
            model.description.provenance["domain_text"] = .object([
                "path": .string(expandTilde(textPath)), "sha256": .string(SHA256.hex(Array(domainText.utf8))), "summary": .string(line)])
            do { model = try model.withDomainDecoding(decoding) } catch { throw CLIError("\(error)") }
            domainLine = line
        }
        do { try model.save(path: outPath) } catch { throw CLIError("--out \(outPath): \(error)") }
        func figures(_ s: ValidationScore?) -> String {
            s.map { String(format: "WER %.2f%%  CER %.2f%%", $0.wer, $0.cer) } ?? "(no validation set)"
        }
        if let result {
            print("validation: \(counted(result.validationUtterances, "utterance")), training: \(result.trainUtterances), skipped: \(result.skipped.count)")
            if result.before == nil {
                // The adapter refuses to go on without validation unless asked to.
                print("before/after: no validation set (--val-fraction 0 and no --val); epochs run: \(result.epochsRun)")
            } else if result.noEpochImproved {
                print("before:     \(figures(result.before))  (greedy)")
                print("after:      no epoch of \(result.epochsRun) improved on the base model, so the weights written are the base's; try more --epochs, a higher --lr or more recordings")
            } else {
                print("before:     \(figures(result.before))  (greedy)")
                let kept = result.runs == 1 ? "epoch \(result.bestEpoch) of \(result.epochsRun)"
                    : result.keptRun.map { "run \($0 + 1) of \(result.runs), epoch \(result.bestEpoch), the mean having validated worse; \(counted(result.epochsRun, "epoch")) in all" }
                    ?? "the mean of \(result.runs) runs, \(counted(result.epochsRun, "epoch")) in all"
                print("after:      \(figures(result.after))  (greedy, \(kept))")
            }
        }
        if let domainLine { print("domain LM:  \(domainLine)") }
        print("model:      \(outPath)")
        // Only after the model is safely written: a failed run keeps every entry for the next try.
        if result != nil && pruneCacheDays > 0 {
            let pruned = ActivationCache.prune(root: URL(fileURLWithPath: expandTilde(cache)), olderThan: pruneCacheDays * 86_400)
            if pruned.busy {
                print("cache:      not pruned: another adaptation is using it")
            } else if pruned.entries > 0 || pruned.folders > 0 || pruned.temporaries > 0 {
                var removed = "\(counted(pruned.entries, "entry", plural: "entries")) and \(counted(pruned.folders, "folder")) unused for \(String(format: "%g", pruneCacheDays)) day\(pruneCacheDays == 1 ? "" : "s")"
                if pruned.temporaries > 0 { removed += ", \(counted(pruned.temporaries, "temporary file")) of interrupted runs" }
                print("cache:      pruned \(removed) (\(String(format: "%.1f", Double(pruned.bytes) / 1_048_576)) MiB)")
            }
        }
    }

    /// The domain decoding of `text`, its weights (and, for --vocabulary auto, its mode) tuned on the
    /// adapted model's validation logits when there are any; the provenance line says what was done.
    static func domainDecoding(text: String, textPath: String, model: ModelFile, tuningSet: [(logits: Matrix, reference: String)],
                               mode: String, display: AdaptDisplay, built: DomainDecoding? = nil) throws -> (DomainDecoding, String) {
        let vocab = Vocabulary(ctcTokens: model.description.vocabulary)
        var decoding: DomainDecoding
        if let built { decoding = built } else {
            do { decoding = try DomainDecoding.build(text: text, vocabulary: vocab, closedVocabulary: mode == "closed") } catch {
                throw CLIError("--text \(textPath): \(error)")
            }
        }
        let words = "\(counted(decoding.words.count, "word")), order \(decoding.order)"
        if !decoding.skippedWords.isEmpty {
            // Scored as <unk>, never recognised: say so now, not only in `model info`.
            let shown = decoding.skippedWords.prefix(8).joined(separator: " ") + (decoding.skippedWords.count > 8 ? " ..." : "")
            display.log("--text \(textPath): \(decoding.skippedWords.count) word(s) the model cannot spell are left out of the vocabulary: \(shown) (spell numbers and symbols out as words, e.g. 'five')")
        }
        guard !tuningSet.isEmpty else {
            return (decoding, "\(words), \(decoding.closedVocabulary ? "closed" : "open") vocabulary, default weights (no validation audio to tune on)")
        }
        display.log("tuning the domain LM on \(tuningSet.count) validation utterances")
        let frameDuration: Double
        do {
            let config = try model.description.frontendConfig(file: "<model>")
            frameDuration = config.encoderFrameDuration(subsampling: model.description.architecture.subsampling)
        } catch { throw CLIError("\(error)") }
        let tuned: (decoding: DomainDecoding, wer: Double)
        do {
            tuned = try decoding.tuned(posteriors: tuningSet.map(\.logits), references: tuningSet.map(\.reference),
                                       vocabulary: vocab, frameDuration: frameDuration,
                                       closedVocabulary: mode == "auto" ? [false, true] : nil)
        } catch { throw CLIError("--text \(textPath): tuning failed: \(error)") }
        decoding = tuned.decoding
        let line = String(format: "%@, %@ vocabulary, lm weight %.2f, word bonus %.1f, beam %d: validation WER %.2f%% (%d utterances)",
                          words, decoding.closedVocabulary ? "closed" : "open", decoding.lmWeight, decoding.wordBonus,
                          decoding.beam, tuned.wer, tuningSet.count)
        return (decoding, line)
    }
}

/// `earshot adapt`'s progress on stderr: a bar rewritten in place on a terminal (caching, then epoch,
/// step, loss and time left), plain lines otherwise.
final class AdaptDisplay: Sendable {
    private struct State {
        var start = Date()
        /// The first caching report and when it came: the estimate counts from there, not from before
        /// the rehearsal synthesis and the checks of the data.
        var cachingFirst: (done: Int, at: Date)?
        var trainingStart: Date?
        /// Optimiser steps taken so far, over all runs (early stopping skips epochs, so the position
        /// in the schedule overstates the work done).
        var stepsDone = 0
        var lastDraw = Date.distantPast
        var lastLogged = -1
        var drawn = false
    }
    private let terminal: Bool
    private let state = Locked(State())

    init(terminal: Bool) { self.terminal = terminal }

    func log(_ line: String) {
        state.withLock { s in
            if terminal && s.drawn { writeErrRaw("\r\u{1B}[K"); s.drawn = false }
            writeErrRaw(line + "\n")
        }
    }

    func show(_ event: AdaptProgress) {
        switch event {
        case let .caching(done, total):
            if terminal {
                draw(force: done == total) { s in
                    if s.cachingFirst == nil { s.cachingFirst = (done, Date()) }
                    let first = s.cachingFirst!
                    let bar = "caching activations \(Self.bar(Double(done) / Double(max(total, 1)))) \(done)/\(total)"
                    guard done > first.done else { return bar }
                    let eta = Date().timeIntervalSince(first.at) / Double(done - first.done) * Double(total - done)
                    return bar + "  ~\(ProgressReporter.duration(eta)) left"
                }
            } else {
                let tenth = total > 0 ? done * 10 / total : 10
                let logged = state.withLock { s -> Bool in
                    if tenth > s.lastLogged { s.lastLogged = tenth; return true }
                    return false
                }
                if logged { log("caching activations: \(done)/\(total)") }
            }
        case let .training(run, runs, epoch, epochs, step, steps, loss):
            state.withLock { $0.stepsDone += 1 }
            guard terminal else { return }
            draw(force: step == steps) { s in
                let start = s.trainingStart ?? Date()
                if s.trainingStart == nil { s.trainingStart = start }
                // The bound assumes every run goes to --epochs; early stopping usually ends each sooner.
                let left = Double(((runs - run - 1) * epochs + epochs - epoch) * steps + steps - step)
                let eta = Date().timeIntervalSince(start) / Double(max(s.stepsDone, 1)) * left
                let position = Double((run * epochs + epoch - 1) * steps + step) / Double(runs * epochs * steps)
                let which = runs > 1 ? "run \(run + 1)/\(runs) " : ""
                return String(format: "%@ %@epoch %d/%d step %d/%d loss %.3f  ~%@ left at most", Self.bar(position),
                              which, epoch, epochs, step, steps, loss, ProgressReporter.duration(eta))
            }
        case let .validated(epoch, score, best):
            let what = epoch == 0 ? "base model" : "epoch \(epoch)"
            log(String(format: "%@: validation WER %.2f%% CER %.2f%% loss %.3f%@", what, score.wer, score.cer, score.loss,
                       best && epoch > 0 ? " (best so far)" : ""))
        }
    }

    func finish() {
        state.withLock { s in
            if terminal && s.drawn { writeErrRaw("\r\u{1B}[K"); s.drawn = false }
        }
    }

    private func draw(force: Bool, _ line: (inout State) -> String) {
        state.withLock { s in
            let now = Date()
            guard force || now.timeIntervalSince(s.lastDraw) > 0.1 else { return }
            s.lastDraw = now
            writeErrRaw("\r\u{1B}[K" + line(&s))
            s.drawn = true
        }
    }

    static func bar(_ fraction: Double) -> String {
        let width = 24, filled = Int(min(1, max(0, fraction)) * Double(width))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}
