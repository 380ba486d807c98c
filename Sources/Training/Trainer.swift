import Audio
import Decoding
import Features
import Foundation
import Model
import Scoring
import Tensors

/// Why training could not start or go on; each case names the file or setting and what to do.
public enum TrainerError: Error, CustomStringConvertible {
    case config(String)
    case data(String)
    case checkpoint(path: String, reason: String)

    public var description: String {
        switch self {
        case .config(let s): return "training configuration: \(s)"
        case .data(let s): return "training data: \(s)"
        case let .checkpoint(path, reason):
            // The reason is often a model-file error that names the file itself: once is enough.
            let own = reason.hasPrefix(path + ": ") ? String(reason.dropFirst(path.count + 2)) : reason
            return "checkpoint \(path): \(own)"
        }
    }
}

/// One utterance of a manifest, ready for batching: where its audio is, its labels, its length.
struct Utterance: Sendable {
    var path: String
    var text: String
    var labels: [Int]
    var seconds: Double
}

/// What the trainer reports as it goes (for a progress display and logs).
public struct TrainProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var epoch: Int
    public var loss: Double
    public var learningRate: Float
    public var gradNorm: Float
    /// Audio seconds trained per wall-clock second since the last report.
    public var speed: Double
    /// Wall-clock seconds to `totalSteps` at the step rate since the last report.
    public var secondsLeft: Double
}

/// The checkpointed position of a run: enough, with parameters and optimiser state, to resume exactly.
struct TrainerState: Codable, Equatable {
    var step = 0
    var epoch = 0
    /// Next index into the epoch's shuffled order.
    var position = 0
    var bestValidWER: Double?
    var audioSecondsTrained = 0.0
    var wallSecondsTrained = 0.0
    /// How many training utterances loaded when the checkpoint was written (nil in older checkpoints):
    /// the epoch order shuffles exactly that list, so a resume that loads another count is not exact.
    var trainUtterances: Int?
    /// `run.threads` when the checkpoint was written (nil in older checkpoints): gradients are summed
    /// per worker, so a resume with another count rounds differently.
    var threads: Int?
    /// Batches in a row, up to this position, whose gradients were not finite (nil in older checkpoints:
    /// none): a run stopped among them resumes counting, so divergence is still caught at the limit.
    var nonFiniteRun: Int?
    /// `TrainConfig.trajectorySettings` of the run that wrote the checkpoint (nil in older checkpoints).
    var settings: [String: String]?
}

/// Trains a CTC encoder from manifests: builds or loads the model, estimates feature statistics,
/// then loops over shuffled batches (augmented on the fly: speed, noise, SpecAugment) with AdamW,
/// validates, exports the best and last models, and checkpoints every few minutes and when stopped.
///
/// Exact resume: the batch order is a function of (seed, epoch), each utterance's augmentation of
/// (seed, epoch, utterance index), gradients are summed in a fixed order, and the checkpoint holds
/// the parameters, AdamW's moments and the position, so an interrupted run continues bit-for-bit.
public final class Trainer {
    public let config: TrainConfig
    let outputDir: URL
    let vocabulary = Vocabulary.earshot
    let log: (String) -> Void
    var frontendConfig = FrontendConfig()
    var architecture: EncoderArchitecture
    /// Layer parameters only (no statistics): what the optimiser updates.
    var parameters: [String: Tensor] = [:]
    var normalization: InputNormalization
    var optimizer: AdamW
    var state = TrainerState()
    var train: [Utterance] = []
    var valid: [Utterance] = []
    var provenance: [String: JSONValue] = [:]
    /// The intermediate CTC of `loss.intermediate_weight`, placed on the settled architecture; nil when off.
    var intermediateCTC: IntermediateCTC?

    public var checkpointURL: URL { Self.checkpointURL(in: outputDir) }
    /// Where a run folder's checkpoint is: its presence means the run resumes.
    public static func checkpointURL(in runFolder: URL) -> URL { runFolder.appendingPathComponent("checkpoint.safetensors") }
    public var lastModelURL: URL { outputDir.appendingPathComponent("last.safetensors") }
    public var bestModelURL: URL { outputDir.appendingPathComponent("best.safetensors") }
    public var step: Int { state.step }

    public init(config: TrainConfig, log: @escaping (String) -> Void) throws {
        self.config = config
        self.log = log
        outputDir = URL(fileURLWithPath: expandTilde(config.run.output))
        // Before anything is created: a bad value must not leave a run folder behind.
        try config.validate()
        let decay: LRSchedule.Decay
        switch config.optimizer.decay {
        case "cosine":
            decay = .cosine(totalSteps: config.optimizer.totalSteps,
                            floor: config.optimizer.learningRate * config.optimizer.minLearningRateFraction)
        case "constant": decay = .constant
        case "inverse_sqrt": decay = .inverseSqrt
        default: throw TrainerError.config("optimizer.decay must be cosine, constant or inverse_sqrt (got '\(config.optimizer.decay)')")
        }
        let adamConfig = AdamWConfig(schedule: LRSchedule(peak: config.optimizer.learningRate,
                                                           warmupSteps: config.optimizer.warmupSteps, decay: decay),
                                     weightDecay: config.optimizer.weightDecay, maxGradNorm: config.optimizer.maxGradNorm)
        optimizer = AdamW(config: adamConfig)
        architecture = BaseArchitecture.architecture(inputDim: frontendConfig.melBins, channels: config.model.channels,
                                                     blocks: config.model.blocks, kernel: config.model.kernel,
                                                     hidden: config.model.hidden, vocabularySize: vocabulary.count,
                                                     lookAheadBlocks: config.model.lookAheadBlocks,
                                                     subsampling: config.model.subsampling)
        normalization = InputNormalization(mean: [Float](repeating: 0, count: frontendConfig.melBins),
                                             std: [Float](repeating: 1, count: frontendConfig.melBins))

        // The model (and so its frame rate) is settled before the manifests are read: which utterances
        // are too short for their text depends on it.
        let resuming = FileManager.default.fileExists(atPath: checkpointURL.path)
        var needsStatistics = false
        if resuming {
            try resume(from: checkpointURL, adam: adamConfig)
        } else if !config.model.initFrom.isEmpty {
            needsStatistics = try initialise(from: expandTilde(config.model.initFrom))
        } else {
            initialiseRandomly()
            needsStatistics = true
        }
        if config.optimizer.warmupSteps >= config.optimizer.totalSteps {
            // Allowed (a smoke run of a recipe, `--steps 200` with 300 warm-up steps), but rarely meant.
            log("warning: optimizer.warmup_steps (\(config.optimizer.warmupSteps)) is not below total_steps (\(config.optimizer.totalSteps)): the learning rate stays in its warm-up, below learning_rate, and never decays")
        }
        // A resumed checkpoint carries its provenance; the objective is this config's.
        provenance["intermediate_ctc"] = nil
        if config.loss.intermediateWeight > 0 {
            switch IntermediateCTC.resolve(layers: architecture.layers, afterBlock: config.loss.intermediateBlock,
                                           weight: config.loss.intermediateWeight) {
            case .success(let i):
                intermediateCTC = i
                let blocks = architecture.layers[...i.tapLayer].filter { if case .residual = $0 { return true } else { return false } }.count
                log("intermediate CTC: the head also reads block \(blocks)'s output, weight \(config.loss.intermediateWeight)")
                provenance["intermediate_ctc"] = .string("block \(blocks), weight \(config.loss.intermediateWeight)")
            case .failure(let e): throw TrainerError.config("loss.intermediate_block = \(config.loss.intermediateBlock): \(e)")
            }
        }
        // Only now: a block the model refuses leaves no run folder behind (`earshot train` has made
        // the folder for its log already; library callers have not).
        try FileManager.default.createDirectory(at: outputDir, withIntermediateDirectories: true)
        removeAbandonedWrites()
        train = try loadManifest(config.data.train, role: "train")
        if let then = state.trainUtterances, then != train.count {
            log("warning: the training data now loads \(counted(train.count, "utterance")), the checkpoint's run \(then): the rest of this run shuffles another list, so it does not continue exactly (the manifest, the audio or the loading rules changed)")
        }
        if let then = state.settings {
            let now = config.trajectorySettings
            for key in Set(now.keys).union(then.keys).sorted() where now[key] != then[key] {
                let why = key == "optimizer.total_steps" ? " (the learning-rate schedule is stretched to the new end)" : ""
                log("warning: \(key) is \(now[key] ?? "unset"), the checkpoint's run used \(then[key] ?? "nothing"): the rest of this run does not continue as it began\(why)")
            }
        }
        if let then = state.threads, then != config.run.threads {
            log("warning: run.threads is \(config.run.threads), the checkpoint's run used \(then): gradients are summed per thread, so the rest of this run rounds differently and does not continue bit for bit")
        }
        if !config.data.valid.isEmpty {
            valid = try loadManifest(config.data.valid, role: "valid")
            // Validate on an even spread of the set, not its first lines: manifests may be ordered by
            // voice or source, and the limit should not pick one of them.
            if config.data.validLimit > 0 && valid.count > config.data.validLimit {
                var rng = SplitMix64(seed: 0x5EED)
                valid.shuffle(using: &rng)
                valid = Array(valid.prefix(config.data.validLimit))
            }
        }
        guard !train.isEmpty else { throw TrainerError.data("\(config.data.train): no usable utterances") }
        if needsStatistics { try estimateStatistics() }
        provenance["trainer"] = .string("earshot train")
        provenance["train_manifest"] = .string(config.data.train)
        provenance["train_utterances"] = .string("\(train.count)")
        provenance["train_hours"] = .string(String(format: "%.2f", train.reduce(0) { $0 + $1.seconds } / 3600))
    }

    // MARK: data

    func loadManifest(_ path: String, role: String) throws -> [Utterance] {
        let manifest: Manifest
        do { manifest = try Manifest.read(from: URL(fileURLWithPath: expandTilde(path))) } catch {
            throw TrainerError.data("data.\(role) manifest: \(error)")
        }
        let normalizer = TextNormalizer()
        var out: [Utterance] = []
        var skipped: [String: Int] = [:]
        var firstUnreadable: String?
        for entry in manifest.entries {
            let url = manifest.url(of: entry)
            let text = normalizer.normalize(entry.text)
            guard !text.isEmpty, let labels = vocabulary.tokenize(text) else { skipped["text outside a-z, space and apostrophe", default: 0] += 1; continue }
            let info: AudioFileInfo
            do { info = try AudioFile.info(path: url.path) } catch {
                skipped["unreadable audio", default: 0] += 1
                firstUnreadable = firstUnreadable ?? "\(error)"
                continue
            }
            let seconds = info.duration
            guard seconds >= config.data.minSeconds, seconds <= config.data.maxSeconds else {
                skipped["shorter than \(config.data.minSeconds) s or longer than \(config.data.maxSeconds) s", default: 0] += 1; continue
            }
            // CTC needs at least one encoder frame per label (two across a repeat).
            guard Double(ctcMinimumFrames(labels: labels)) * encoderFrameDuration * 1.1 < seconds else { skipped["too short for its text", default: 0] += 1; continue }
            out.append(Utterance(path: url.path, text: text, labels: labels, seconds: seconds))
        }
        let hours = out.reduce(0) { $0 + $1.seconds } / 3600
        log("\(role): \(counted(out.count, "utterance")), \(String(format: "%.2f", hours)) hours (\(path))")
        for (reason, n) in skipped.sorted(by: { $0.key < $1.key }) {
            let example = reason == "unreadable audio" ? firstUnreadable.map { " (the first: \($0))" } ?? "" : ""
            log("\(role): skipped \(counted(n, "utterance")): \(reason)\(example)")
        }
        return out
    }

    // MARK: model initialisation

    func initialiseRandomly() {
        var rng = SplitMix64(seed: config.run.seed &* 0x9E37_79B9_7F4A_7C15 &+ 17)
        parameters = initialParameters(architecture.layers, using: &rng)
        provenance["initialisation"] = .string("random, seed \(config.run.seed)")
    }

    /// Seconds of audio per encoder output frame.
    var encoderFrameDuration: Double { frontendConfig.encoderFrameDuration(subsampling: architecture.subsampling) }

    /// Loads weights (and statistics when present) from a model; returns whether statistics are missing.
    func initialise(from path: String) throws -> Bool {
        let model: ModelFile
        do { model = try ModelFile.load(path: path) } catch { throw TrainerError.config("model.init_from: \(error)") }
        architecture = model.description.architecture
        frontendConfig = try model.description.frontendConfig(file: path)
        for (name, _) in architecture.parameterShapes { parameters[name] = model.parameters[name] }
        // The trainer's labels are Earshot's alphabet: another model's output rows would be trained on
        // labels that mean other tokens (or fail at the first label or the first save).
        guard model.description.vocabulary == vocabulary.tokens else {
            throw TrainerError.config("model.init_from '\(path)': its output vocabulary (\(model.description.vocabulary.count) tokens: \(model.description.vocabulary.prefix(8).joined(separator: " ")) ...) is not Earshot's (\(vocabulary.tokens.count) tokens: \(vocabulary.tokens.prefix(8).joined(separator: " ")) ...), which training labels with")
        }
        provenance["initialisation"] = .string("from \(path) (sha256 \(model.sha256 ?? "?"))")
        if let mean = model.parameters[InputNormalization.meanName], let std = model.parameters[InputNormalization.stdName] {
            normalization = InputNormalization(mean: mean.data, std: std.data)
            return false
        }
        return true
    }

    /// Global mean and deviation of the log-mel features over a sample of the training set.
    func estimateStatistics() throws {
        let n = min(config.data.statisticsUtterances, train.count)
        var order = Array(train.indices)
        var rng = SplitMix64(seed: config.run.seed &+ 99)
        order.shuffle(using: &rng)
        let dim = frontendConfig.melBins
        var sum = [Double](repeating: 0, count: dim), sumSq = [Double](repeating: 0, count: dim)
        var frames = 0
        let frontend = try LogMelFrontend(config: frontendConfig, mode: .offline)
        // Unreadable files are left out here as training leaves them out of its batches.
        var unreadable: [String] = []
        for i in order.prefix(n) {
            let audio: DecodedAudio
            do { audio = try AudioFile.read(path: train[i].path, targetSampleRate: frontendConfig.sampleRate) } catch {
                unreadable.append(error.description)
                continue
            }
            let f = frontend.compute(audio.samples)
            for t in 0..<f.rows {
                for c in 0..<dim { let x = Double(f.data[t * dim + c]); sum[c] += x; sumSq[c] += x * x }
            }
            frames += f.rows
        }
        if let first = unreadable.first {
            log("feature statistics: left out \(counted(unreadable.count, "unreadable file")) of \(n), first: \(first)")
        }
        guard frames > 0 else {
            throw TrainerError.data("the \(n) training utterances sampled for feature statistics (data.statistics_utterances) gave no feature frames; \(unreadable.count == n ? "none could be read, first: \(unreadable[0])" : "are they all shorter than one analysis window?")")
        }
        let mean = sum.map { $0 / Double(frames) }
        let std = zip(sumSq, mean).map { max(1e-3, ($0 / Double(frames) - $1 * $1).squareRoot()) }
        normalization = InputNormalization(mean: mean.map(Float.init), std: std.map(Float.init))
        log("feature statistics from \(counted(n, "utterance")) (\(counted(frames, "frame")))")
    }

    // MARK: checkpoints

    func modelFile(includeOptimizer: Bool) -> ModelFile {
        var tensors = parameters
        tensors[InputNormalization.meanName] = Tensor(shape: [normalization.mean.count], data: normalization.mean)
        tensors[InputNormalization.stdName] = Tensor(shape: [normalization.std.count], data: normalization.std)
        var prov = provenance
        prov["steps"] = .string("\(state.step)")
        prov["audio_hours_trained"] = .string(String(format: "%.2f", state.audioSecondsTrained / 3600))
        prov["date"] = .string(ISO8601DateFormatter().string(from: Date()))
        if let best = state.bestValidWER { prov["best_valid_wer"] = .string(String(format: "%.2f", best)) }
        if includeOptimizer {
            for (k, v) in optimizer.state(parameters: parameters) { tensors[k] = v }
            let json = try! JSONEncoder().encode(state)
            prov["trainer_state"] = .string(String(decoding: json, as: UTF8.self))
        }
        let description = ModelDescription(architecture: architecture, frontend: frontendConfig,
                                           vocabulary: vocabulary.tokens, provenance: prov)
        return ModelFile(description: description, parameters: tensors)
    }

    public func saveCheckpoint() throws {
        do { try modelFile(includeOptimizer: true).save(path: checkpointURL.path) } catch {
            throw TrainerError.checkpoint(path: checkpointURL.path, reason: "\(error)")
        }
        do { try modelFile(includeOptimizer: false).save(path: lastModelURL.path) } catch {
            throw TrainerError.checkpoint(path: lastModelURL.path, reason: "\(error)")
        }
    }

    /// Removes what saves killed mid-write left in the run folder (a second Ctrl-C during a checkpoint:
    /// three times the model's size each). Only a dead writer's: another run sharing the folder may be
    /// writing its own.
    func removeAbandonedWrites() {
        for folder in [outputDir, outputDir.appendingPathComponent("snapshots")] {
            for temporary in atomicWriteTemporaries(in: folder.path) where kill(temporary.writer, 0) != 0 && errno == ESRCH {
                if unlink(temporary.path) == 0 { log("removed \(temporary.path), left by a save that was killed") }
            }
        }
    }

    /// Where `saveSnapshot` writes the model of `step`.
    public func snapshotURL(step: Int) -> URL {
        outputDir.appendingPathComponent("snapshots").appendingPathComponent(String(format: "step-%08d.safetensors", step))
    }

    /// The plain model at this step, kept for checkpoint averaging (`earshot model average`).
    func saveSnapshot() throws {
        let url = snapshotURL(step: state.step)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try modelFile(includeOptimizer: false).save(path: url.path)
        } catch {
            throw TrainerError.checkpoint(path: url.path, reason: "\(error)")
        }
    }

    func resume(from url: URL, adam: AdamWConfig) throws {
        let model: ModelFile
        do { model = try ModelFile.load(path: url.path) } catch {
            throw TrainerError.checkpoint(path: url.path, reason: "\(error) (to start this run over, move it aside; to keep its training, pass \(lastModelURL.lastPathComponent) or a snapshot as model.init_from in a new run)")
        }
        guard case .string(let stateJSON)? = model.description.provenance["trainer_state"],
              let s = try? JSONDecoder().decode(TrainerState.self, from: Data(stateJSON.utf8)) else {
            throw TrainerError.checkpoint(path: url.path, reason: "no trainer state in it (is it a plain model? pass it as model.init_from instead)")
        }
        // A [model] edited since the run began would otherwise be ignored without a word: the run goes on
        // with the checkpoint's architecture. (With model.init_from the architecture is the init model's.)
        if config.model.initFrom.isEmpty && model.description.architecture != architecture {
            throw TrainerError.config("[model] differs from the architecture of the run being resumed (\(url.path)): put back the [model] keys (channels, blocks, kernel, hidden, look_ahead_blocks, subsampling) or the model.init_from the run began with, or start a new run with another --output")
        }
        // A config naming init_from over a folder holding another run (random, or from another model) is
        // a new run meant, not that one to go on with: resuming would train the wrong model in silence.
        if !config.model.initFrom.isEmpty {
            let path = expandTilde(config.model.initFrom)
            var began = ""
            if case .string(let s)? = model.description.provenance["initialisation"] { began = s }
            var same = began.hasPrefix("from \(path) (")
            if !same, began.hasPrefix("from "), let sha = (try? ModelFile.load(path: path))?.sha256 {
                same = began.hasSuffix("(sha256 \(sha))")  // the same model, moved or named another way
            }
            guard same else {
                throw TrainerError.config("model.init_from is '\(config.model.initFrom)', but the run in \(outputDir.path) began \(began.isEmpty ? "from something else" : began.hasPrefix("from ") ? began : "as: \(began)"): to start a new run from init_from, use another --output; to go on with that run, put back the model.init_from it began with")
            }
        }
        architecture = model.description.architecture
        frontendConfig = try model.description.frontendConfig(file: url.path)
        for (name, shape) in architecture.parameterShapes {
            guard let p = model.parameters[name], p.shape == shape else {
                throw TrainerError.checkpoint(path: url.path, reason: "parameter '\(name)' is missing or not shaped \(shape)")
            }
            parameters[name] = p
        }
        guard let mean = model.parameters[InputNormalization.meanName], let std = model.parameters[InputNormalization.stdName] else {
            throw TrainerError.checkpoint(path: url.path, reason: "feature statistics are missing")
        }
        normalization = InputNormalization(mean: mean.data, std: std.data)
        do {
            optimizer = try AdamW(config: adam, state: model.parameters)
            // Moments of another size would be read and written past their ends by the update loop.
            try optimizer.validateState(for: parameters)
        } catch {
            throw TrainerError.checkpoint(path: url.path, reason: "\(error)")
        }
        provenance = model.description.provenance
        provenance["trainer_state"] = nil
        state = s
        log("resumed from \(url.path) at step \(s.step) (epoch \(s.epoch + 1))")
    }

    // MARK: batches

    /// The shuffled utterance order of an epoch, a pure function of (seed, epoch).
    func order(epoch: Int) -> [Int] {
        var idx = Array(train.indices)
        var rng = SplitMix64(seed: config.run.seed &* 1_000_003 &+ UInt64(epoch))
        idx.shuffle(using: &rng)
        return idx
    }

    /// The next batch from `state`'s position (wrapping into the next epoch), and the position after it.
    func nextBatch(from s: TrainerState) -> (indices: [Int], epoch: Int, next: Int) {
        var epoch = s.epoch, pos = s.position
        var ord = order(epoch: epoch)
        if pos >= ord.count { epoch += 1; pos = 0; ord = order(epoch: epoch) }
        var batch: [Int] = [], seconds = 0.0
        while pos < ord.count {
            let u = train[ord[pos]]
            if !batch.isEmpty && seconds + u.seconds > config.optimizer.batchSeconds { break }
            batch.append(ord[pos]); seconds += u.seconds; pos += 1
        }
        return (batch, epoch, pos)
    }

    /// The batch's examples, and why any utterance's audio could not be decoded. Loading reads only the
    /// headers, so a file cut short or holding a NaN shows up only here: it is left out of the batch (and
    /// reported), rather than stopping the run at the same batch on every resume.
    func examples(_ indices: [Int], epoch: Int) throws -> (examples: [TrainingExample], unreadable: [String]) {
        let slots = Locked<[Result<TrainingExample, any Error>?]>(slots: indices.count)
        let workers = max(1, min(config.run.threads, indices.count))
        let maker = ExampleMaker(utterances: train, frontendConfig: frontendConfig, normalization: normalization,
                                 augment: config.augment, seed: config.run.seed, encoderFrameDuration: encoderFrameDuration)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let frontend: LogMelFrontend
            let mine = stride(from: w, to: indices.count, by: workers)
            do { frontend = try LogMelFrontend(config: maker.frontendConfig, mode: .offline) } catch {
                for k in mine { slots.set(k, .failure(error)) }
                return
            }
            for k in mine {
                do { slots.set(k, .success(try maker.example(indices[k], epoch: epoch, frontend: frontend, augment: true))) }
                catch let error as AudioError { slots.set(k, .failure(error)) }
                catch {
                    // The rest of this worker's share is abandoned: the batch fails anyway.
                    for rest in stride(from: k, to: indices.count, by: workers) { slots.set(rest, .failure(error)) }
                    return
                }
            }
        }
        // The first failure in batch order, so the error reported does not depend on thread timing.
        var examples: [TrainingExample] = [], unreadable: [String] = []
        for slot in slots.current {
            switch slot! {
            case .success(let example): examples.append(example)
            case .failure(let error as AudioError): unreadable.append(error.description)
            case .failure(let error): throw error
            }
        }
        return (examples, unreadable)
    }

    // MARK: the loop

    /// Consecutive batches with non-finite gradients after which `run` gives up.
    public static let nonFiniteBatchLimit = 20

    /// Trains until `optimizer.total_steps` or until `shouldStop()` says so (checked between steps);
    /// either way a checkpoint is written before it returns. It validates at every `valid_every_steps`
    /// and at the last step. It throws only between steps, without a checkpoint: the state is consistent,
    /// and the caller decides whether to keep it (`earshot train` does when a step was trained, so that a
    /// fresh run that fails at once is not left in resume mode).
    public func run(shouldStop: () -> Bool, progress: (TrainProgress) -> Void) throws {
        // Worker threads are the parallelism; see `batchLossAndGradients`.
        BLASThreads.set(1)
        var lastCheckpoint = Date()
        var reportedUnreadable = Set<String>()
        state.trainUtterances = train.count
        state.threads = config.run.threads
        state.settings = config.trajectorySettings
        // Audio seconds in a row that gave no example: a whole epoch of them means nothing can be read.
        var undecodableRun = 0.0
        let epochSeconds = train.reduce(0) { $0 + $1.seconds }
        var windowLoss = 0.0, windowSteps = 0, windowAudio = 0.0, windowStart = Date()
        let trainable = Set(parameters.keys)
        while state.step < config.optimizer.totalSteps && !shouldStop() {
            let stepStart = Date()
            let (indices, epoch, next) = nextBatch(from: state)
            let (batch, unreadable) = try examples(indices, epoch: epoch)
            for problem in unreadable where reportedUnreadable.insert(problem).inserted { log("skipped in training: \(problem)") }
            if batch.isEmpty {
                // Nothing to learn from: move on through the data without an optimizer step, unless a
                // whole epoch has given nothing (the corpus gone or unmounted since loading).
                undecodableRun += indices.reduce(0) { $0 + train[$1].seconds }
                if undecodableRun >= epochSeconds {
                    throw TrainerError.data("none of the training audio could be decoded for a whole epoch (the first reasons are in the log)")
                }
                advance(to: epoch, next)
                continue
            }
            undecodableRun = 0
            var encoder = try TrainableEncoder(specs: architecture.layers, parameters: parameters, trainable: trainable)
            encoder.intermediateCTC = intermediateCTC
            // A batch with a non-finite output or gradients is skipped without a step, so parameters and
            // moments stay as they were; an exact resume skips it again. A run of them means the model has
            // diverged.
            var result: BatchGradients?
            do {
                result = try encoder.batchLossAndGradients(batch, blank: vocabulary.blank, threads: config.run.threads)
            } catch {
                guard error == .nonFiniteOutput else { throw error }
            }
            let report = try result.flatMap { try update(gradients: $0.meanGradients(), trainable: trainable) }
            guard let result, let report else {
                let nonFiniteRun = (state.nonFiniteRun ?? 0) + 1
                state.nonFiniteRun = nonFiniteRun
                log("skipped a batch before step \(state.step + 1): \(result == nil ? TrainingError.nonFiniteOutput : .nonFiniteGradient)")
                if nonFiniteRun >= Self.nonFiniteBatchLimit {
                    throw TrainerError.data("\(Self.nonFiniteBatchLimit) batches in a row gave a non-finite output or gradients: the model has diverged (resuming this run diverges again); start a new run, with another --output and a lower optimizer.learning_rate\(state.step > 0 ? ", from one of this run's snapshots as model.init_from" : "")")
                }
                advance(to: epoch, next)
                continue
            }
            state.nonFiniteRun = nil
            let audio = indices.reduce(0) { $0 + train[$1].seconds }
            advance(to: epoch, next)
            state.step += 1
            state.audioSecondsTrained += audio
            state.wallSecondsTrained += Date().timeIntervalSince(stepStart)
            windowLoss += result.meanLoss; windowSteps += 1; windowAudio += audio
            // Progress every step (a terminal's bar), over the log window so far; the log line at its
            // cadence first, so that the bar is drawn again under it rather than wiped by it.
            let elapsed = Date().timeIntervalSince(windowStart)
            let p = TrainProgress(step: state.step, totalSteps: config.optimizer.totalSteps, epoch: epoch + 1,
                                  loss: windowLoss / Double(windowSteps), learningRate: report.learningRate,
                                  gradNorm: report.gradNorm, speed: windowAudio / max(elapsed, 1e-9),
                                  secondsLeft: Double(config.optimizer.totalSteps - state.step) * elapsed / Double(windowSteps))
            defer { progress(p) }
            if state.step % config.run.logEverySteps == 0 || state.step == config.optimizer.totalSteps {
                let left = Int(p.secondsLeft.rounded())
                log(String(format: "step %d epoch %d loss %.4f lr %.2e grad-norm %.2f speed %.1fx real time, %dh%02dm left%@",
                           p.step, p.epoch, p.loss, p.learningRate, p.gradNorm, p.speed, left / 3600, left / 60 % 60,
                           result.impossible.isEmpty ? "" : " (\(result.impossible.count) impossible utterances skipped)"))
                windowLoss = 0; windowSteps = 0; windowAudio = 0; windowStart = Date()
            }
            if config.run.snapshotEverySteps > 0 && state.step % config.run.snapshotEverySteps == 0 {
                try saveSnapshot()
            }
            if !valid.isEmpty && (state.step % config.run.validEverySteps == 0 || state.step == config.optimizer.totalSteps) {
                try validate()
            }
            if Date().timeIntervalSince(lastCheckpoint) >= config.run.checkpointMinutes * 60 {
                try saveCheckpoint()
                lastCheckpoint = Date()
                log("checkpoint at step \(state.step): \(checkpointURL.path)")
            }
        }
        try saveCheckpoint()
        log("checkpoint at step \(state.step): \(checkpointURL.path)")
    }

    /// Moves the data position past a batch, trained or skipped.
    private func advance(to epoch: Int, _ next: Int) {
        if epoch != state.epoch { log("epoch \(epoch + 1) begins") }
        state.epoch = epoch
        state.position = next
    }

    /// The optimizer's update, or nil when the gradients were not finite (then nothing changed).
    private func update(gradients: [String: Tensor], trainable: Set<String>) throws(TrainingError) -> AdamWStepReport? {
        do {
            return try optimizer.update(parameters: &parameters, gradients: gradients, trainable: trainable)
        } catch {
            if error == .nonFiniteGradient { return nil }
            throw error
        }
    }

    /// Greedy WER/CER on (a prefix of) the validation set; exports best.safetensors on a new best.
    @discardableResult
    public func validate() throws -> CorpusScore {
        let model = modelFile(includeOptimizer: false)
        let encoder: Encoder
        do { encoder = try Encoder(model: model) } catch { throw TrainerError.config("\(error)") }
        let items = valid
        // Per utterance: the hypothesis, or why its audio could not be read.
        let hyps = Locked<[Result<String, any Error>?]>(slots: items.count)
        let fc = frontendConfig, vocab = vocabulary
        let workers = max(1, min(config.run.threads, items.count))
        let frameDuration = encoderFrameDuration
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let frontend: LogMelFrontend
            do { frontend = try LogMelFrontend(config: fc, mode: .offline) } catch {
                for k in stride(from: w, to: items.count, by: workers) { hyps.set(k, .failure(error)) }
                return
            }
            for k in stride(from: w, to: items.count, by: workers) {
                do {
                    let audio = try AudioFile.read(path: items[k].path, targetSampleRate: fc.sampleRate)
                    var decoder = GreedyDecoder(vocabulary: vocab, frameDuration: frameDuration)
                    hyps.set(k, .success(decoder.decode(encoder.forward(frontend.compute(audio.samples))).text))
                } catch {
                    hyps.set(k, .failure(error))
                }
            }
        }
        let results = hyps.current
        let failed = zip(items, results).compactMap { item, r -> String? in
            if case .failure(let error)? = r { return "\(item.path) (\(error))" }
            return r == nil ? item.path : nil
        }
        if !failed.isEmpty {
            // Scored as empty hypotheses (so WERs stay comparable across validations), but said out loud.
            log("validation: \(failed.count) of \(counted(items.count, "utterance")) could not be read and count as empty hypotheses: "
                + failed.prefix(3).joined(separator: "; ") + (failed.count > 3 ? "; ..." : ""))
        }
        let score = CorpusScore(pairs: zip(items, results).map { item, r in (item.text, (try? r?.get()) ?? "") })
        log(String(format: "validation at step %d: WER %.2f%% CER %.2f%% (%d utterances)", state.step,
                   score.wordErrorRatePercent, score.characterErrorRatePercent, score.utterances))
        if state.bestValidWER.map({ score.wordErrorRatePercent < $0 }) ?? true {
            let previous = state.bestValidWER
            state.bestValidWER = score.wordErrorRatePercent  // recorded in the file written here
            do { try modelFile(includeOptimizer: false).save(path: bestModelURL.path) } catch {
                // Not a best until a file holds it: a checkpoint saved after this error must not claim it.
                state.bestValidWER = previous
                throw TrainerError.checkpoint(path: bestModelURL.path, reason: "\(error)")
            }
            log("new best model: \(bestModelURL.path)")
        }
        return score
    }

    /// The current parameters, for tests.
    public var currentParameters: [String: Tensor] { parameters }
}

/// Turns a training utterance into features and labels, augmented deterministically from
/// (seed, epoch, utterance index) so that a resumed run sees exactly the same inputs.
struct ExampleMaker: Sendable {
    let utterances: [Utterance]
    let frontendConfig: FrontendConfig
    let normalization: InputNormalization
    let augment: TrainConfig.AugmentConfig
    let seed: UInt64
    /// Seconds of audio per encoder output frame.
    let encoderFrameDuration: Double

    func example(_ index: Int, epoch: Int, frontend: LogMelFrontend, augment doAugment: Bool) throws -> TrainingExample {
        let u = utterances[index]
        var rng = SplitMix64(seed: (seed &* 0x2545_F491_4F6C_DD1D) ^ (UInt64(epoch) << 40) ^ UInt64(index))
        var samples = try AudioFile.read(path: u.path, targetSampleRate: frontendConfig.sampleRate).samples
        let a = augment
        // Drawn only when enabled, like the warp and the equaliser, so earlier runs resume bit-for-bit.
        if doAugment && a.trimProbability > 0 && Double.random(in: 0..<1, using: &rng) < a.trimProbability {
            // Room for the labels as loading requires it (`Trainer.load`), even after the fastest speed-up.
            let needed = Double(ctcMinimumFrames(labels: u.labels)) * encoderFrameDuration * 1.1 * (a.speedRange.max() ?? 1)
            samples = trimSilence(samples, sampleRate: frontendConfig.sampleRate,
                                  leading: Double.random(in: 0...a.trimMargin, using: &rng),
                                  trailing: Double.random(in: 0...a.trimMargin, using: &rng),
                                  minimumSamples: Int((needed * Double(frontendConfig.sampleRate)).rounded(.up)))
        }
        if doAugment && Double.random(in: 0..<1, using: &rng) < a.speedProbability {
            let factor = Double.random(in: a.speedRange[0]...a.speedRange[1], using: &rng)
            samples = try speedPerturb(samples, factor: factor)
        }
        if doAugment && Double.random(in: 0..<1, using: &rng) < a.noiseProbability {
            let noise = Self.coloredNoise(count: samples.count, color: Int.random(in: 0..<3, using: &rng), using: &rng)
            let snr = Float(Double.random(in: a.snrRange[0]...a.snrRange[1], using: &rng))
            mixNoise(into: &samples, noise: noise, snrDB: snr, using: &rng)
        }
        var logMel = frontend.compute(samples)
        // Drawn only when enabled, so runs configured before the warp existed resume bit-for-bit.
        if doAugment && a.warpProbability > 0 && Double.random(in: 0..<1, using: &rng) < a.warpProbability {
            let factor = Float(Double.random(in: a.warpRange[0]...a.warpRange[1], using: &rng))
            logMel = FrequencyWarp(factor: factor).apply(to: logMel)
        }
        if doAugment && a.eqProbability > 0 && Double.random(in: 0..<1, using: &rng) < a.eqProbability {
            logMel = SpectralShape.random(bins: logMel.cols, decibels: a.eqDecibels, using: &rng).apply(to: logMel)
        }
        var features = normalization.apply(logMel)
        if doAugment {
            let spec = SpecAugment(frequencyMasks: a.frequencyMasks, maxFrequencyWidth: a.maxFrequencyWidth,
                                   timeMasks: a.timeMasks, maxTimeWidth: a.maxTimeWidth,
                                   maxTimeProportion: a.maxTimeProportion, fill: .value(0))
            spec.apply(to: &features, using: &rng)
        }
        return TrainingExample(features: features, labels: u.labels)
    }

    /// White (0), pink (1) or brown (2) noise; `mixNoise` rescales it to the wanted SNR.
    static func coloredNoise(count: Int, color: Int, using rng: inout SplitMix64) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        var b0: Float = 0, b1: Float = 0, b2: Float = 0, brown: Float = 0
        for i in 0..<count {
            let w = Float.random(in: -1...1, using: &rng)
            switch color {
            case 1:
                // Paul Kellet's economical pink filter.
                b0 = 0.99765 * b0 + w * 0.0990460
                b1 = 0.96300 * b1 + w * 0.2965164
                b2 = 0.57000 * b2 + w * 1.0526913
                out[i] = b0 + b1 + b2 + w * 0.1848
            case 2:
                brown = 0.995 * brown + 0.1 * w
                out[i] = brown
            default:
                out[i] = w
            }
        }
        return out
    }
}

/// `~/x` -> `$HOME/x` (`~user/x` -> that user's home), so configuration files can name per-user
/// folders portably. $HOME comes first, as in a shell: Foundation's expansion reads the password
/// database only, which differs from $HOME under sudo, in containers and in tests.
public func expandTilde(_ path: String) -> String {
    if path == "~" || path.hasPrefix("~/"), let home = ProcessInfo.processInfo.environment["HOME"], !home.isEmpty {
        return home + path.dropFirst()
    }
    return (path as NSString).expandingTildeInPath
}
