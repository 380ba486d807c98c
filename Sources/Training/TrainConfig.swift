import Foundation
import Model

/// Everything `earshot train` needs, read from a TOML file (see docs/training.md); every key has a
/// default so a config can be as short as the two manifest paths.
public struct TrainConfig: Codable, Sendable, Equatable {
    public var data = DataConfig()
    public var model = ModelConfig()
    public var optimizer = OptimizerConfig()
    public var augment = AugmentConfig()
    public var loss = LossConfig()
    public var run = RunConfig()

    public init() {}

    /// The settings that decide what a run computes, as "section.key" and the value's JSON text: the
    /// data, model, optimizer, augmentation, loss and seed. Left out: where and how often it writes
    /// (run.output, checkpoint_minutes, snapshot_every_steps, log_every_steps), validation (data.valid,
    /// valid_limit, valid_every_steps), run.threads (warned about on its own), and model.init_from
    /// (checked against the checkpoint's recorded start). A resumed run compares them with its
    /// checkpoint's, to say which changed.
    public var trajectorySettings: [String: String] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        guard let data = try? encoder.encode(self),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        let ignored: Set<String> = ["run.output", "run.checkpoint_minutes", "run.snapshot_every_steps", "run.log_every_steps",
                                    "run.threads", "run.valid_every_steps", "data.valid", "data.valid_limit", "model.init_from"]
        var out: [String: String] = [:]
        for (section, value) in root {
            // With init_from the architecture is the init model's, and [model] is unused.
            if section == "model" && !model.initFrom.isEmpty { continue }
            guard let table = value as? [String: Any] else { continue }
            for (key, v) in table where !ignored.contains("\(section).\(key)") {
                let text = (try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys]))
                    .map { String(decoding: $0, as: UTF8.self) } ?? "\(v)"
                out["\(section).\(key)"] = text
            }
        }
        return out
    }

    /// Manifests in Earshot's TSV form (audio path relative to the manifest's folder, TAB, text).
    public struct DataConfig: Codable, Sendable, Equatable {
        public var train = ""
        public var valid = ""
        /// Utterances longer than this are skipped (memory and CTC cost grow with length).
        public var maxSeconds = 16.0
        public var minSeconds = 0.2
        /// At most this many validation utterances are decoded at each validation (0 = all).
        public var validLimit = 400
        /// Utterances used to estimate the global feature mean and deviation.
        public var statisticsUtterances = 500
        public init() {}
    }

    /// The encoder to build (ignored when `init` names a model to continue from).
    public struct ModelConfig: Codable, Sendable, Equatable {
        public var channels = 256
        public var blocks = 10
        public var kernel = 9
        public var hidden = 512
        /// Residual blocks that see one more future frame (one encoder frame) each; with 40 ms frames
        /// and the front convs' 30 ms, the model's look-ahead is 30 + 40 x this many ms (4: 190 ms, all
        /// 12 of 12 blocks: 510 ms); with 20 ms frames 30 + 20 x this many. More than `blocks` means every block.
        public var lookAheadBlocks = 4
        /// 10 ms feature frames per encoder frame: 4 (40 ms) or 2 (20 ms, twice the compute, an
        /// easier alignment for character CTC).
        public var subsampling = 4
        /// Start from this model's weights instead of random ones.
        public var initFrom = ""
        public init() {}
    }

    /// The training objective: CTC on the output, optionally mixed with intermediate CTC (`IntermediateCTC`).
    public struct LossConfig: Codable, Sendable, Equatable {
        /// Share of the intermediate CTC loss in the objective; 0 turns it off.
        public var intermediateWeight: Float = 0
        /// The residual block (1-based) whose output the head also reads; 0: the middle one.
        public var intermediateBlock = 0
        public init() {}
    }

    public struct OptimizerConfig: Codable, Sendable, Equatable {
        public var learningRate: Float = 2e-3
        public var warmupSteps = 500
        public var totalSteps = 20_000
        /// "cosine", "constant" or "inverse_sqrt" after warm-up.
        public var decay = "cosine"
        public var minLearningRateFraction: Float = 0.05
        public var weightDecay: Float = 1e-3
        public var maxGradNorm: Float = 5
        /// Audio seconds per optimisation step.
        public var batchSeconds = 120.0
        public init() {}
    }

    public struct AugmentConfig: Codable, Sendable, Equatable {
        public var frequencyMasks = 2
        public var maxFrequencyWidth = 15
        public var timeMasks = 4
        public var maxTimeWidth = 25
        public var maxTimeProportion: Float = 0.2
        /// Share of utterances whose speed is changed by a factor drawn from `speedRange`.
        public var speedProbability = 0.3
        public var speedRange = [0.9, 1.1]
        /// Share of utterances mixed with generated noise at an SNR drawn from `snrRange` (dB).
        public var noiseProbability = 0.3
        public var snrRange = [5.0, 30.0]
        /// Share of utterances whose spectrum is stretched along frequency by a factor drawn from
        /// `warpRange` (a vocal-tract-length perturbation: more speakers from the same voices).
        public var warpProbability = 0.0
        public var warpRange = [0.9, 1.1]
        /// Share of utterances whose spectrum is coloured by a random smooth equaliser curve of up to
        /// about `eqDecibels` per component (`SpectralShape`): other vocal tracts and microphones.
        public var eqProbability = 0.0
        public var eqDecibels = 6.0
        /// Share of utterances cut to their speech with at most `trimMargin` seconds of the silence around
        /// it kept at each end (`trimSilence`): recordings cut tightly around their words.
        public var trimProbability = 0.0
        public var trimMargin = 0.05
        public init() {}
    }

    public struct RunConfig: Codable, Sendable, Equatable {
        /// Folder for checkpoints, logs and the exported models.
        public var output = "runs/base"
        public var checkpointMinutes = 10.0
        public var validEverySteps = 1000
        /// Every this many steps a plain model goes to `snapshots/step-NNNNNNNN.safetensors` in the run
        /// folder, for `earshot model average` (0: none; about 8 MB each for the base model).
        public var snapshotEverySteps = 0
        public var logEverySteps = 20
        public var threads = 2
        public var seed: UInt64 = 1
        public init() {}
    }
}

// Missing keys take the defaults above; Swift's synthesised decoding would reject them.
extension TrainConfig.DataConfig {
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        train = try c.decodeIfPresent(String.self, forKey: .train) ?? d.train
        valid = try c.decodeIfPresent(String.self, forKey: .valid) ?? d.valid
        maxSeconds = try c.decodeIfPresent(Double.self, forKey: .maxSeconds) ?? d.maxSeconds
        minSeconds = try c.decodeIfPresent(Double.self, forKey: .minSeconds) ?? d.minSeconds
        validLimit = try c.decodeIfPresent(Int.self, forKey: .validLimit) ?? d.validLimit
        statisticsUtterances = try c.decodeIfPresent(Int.self, forKey: .statisticsUtterances) ?? d.statisticsUtterances
    }
}

extension TrainConfig {
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.decodeIfPresent(DataConfig.self, forKey: .data) ?? d.data
        model = try c.decodeIfPresent(ModelConfig.self, forKey: .model) ?? d.model
        optimizer = try c.decodeIfPresent(OptimizerConfig.self, forKey: .optimizer) ?? d.optimizer
        augment = try c.decodeIfPresent(AugmentConfig.self, forKey: .augment) ?? d.augment
        loss = try c.decodeIfPresent(LossConfig.self, forKey: .loss) ?? d.loss
        run = try c.decodeIfPresent(RunConfig.self, forKey: .run) ?? d.run
    }
}

extension TrainConfig.ModelConfig {
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? d.channels
        blocks = try c.decodeIfPresent(Int.self, forKey: .blocks) ?? d.blocks
        kernel = try c.decodeIfPresent(Int.self, forKey: .kernel) ?? d.kernel
        hidden = try c.decodeIfPresent(Int.self, forKey: .hidden) ?? d.hidden
        lookAheadBlocks = try c.decodeIfPresent(Int.self, forKey: .lookAheadBlocks) ?? d.lookAheadBlocks
        subsampling = try c.decodeIfPresent(Int.self, forKey: .subsampling) ?? d.subsampling
        initFrom = try c.decodeIfPresent(String.self, forKey: .initFrom) ?? d.initFrom
    }
}

extension TrainConfig.LossConfig {
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        intermediateWeight = try c.decodeIfPresent(Float.self, forKey: .intermediateWeight) ?? d.intermediateWeight
        intermediateBlock = try c.decodeIfPresent(Int.self, forKey: .intermediateBlock) ?? d.intermediateBlock
    }
}

extension TrainConfig.OptimizerConfig {
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? d.warmupSteps
        totalSteps = try c.decodeIfPresent(Int.self, forKey: .totalSteps) ?? d.totalSteps
        decay = try c.decodeIfPresent(String.self, forKey: .decay) ?? d.decay
        minLearningRateFraction = try c.decodeIfPresent(Float.self, forKey: .minLearningRateFraction) ?? d.minLearningRateFraction
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? d.weightDecay
        maxGradNorm = try c.decodeIfPresent(Float.self, forKey: .maxGradNorm) ?? d.maxGradNorm
        batchSeconds = try c.decodeIfPresent(Double.self, forKey: .batchSeconds) ?? d.batchSeconds
    }
}

extension TrainConfig.AugmentConfig {
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        frequencyMasks = try c.decodeIfPresent(Int.self, forKey: .frequencyMasks) ?? d.frequencyMasks
        maxFrequencyWidth = try c.decodeIfPresent(Int.self, forKey: .maxFrequencyWidth) ?? d.maxFrequencyWidth
        timeMasks = try c.decodeIfPresent(Int.self, forKey: .timeMasks) ?? d.timeMasks
        maxTimeWidth = try c.decodeIfPresent(Int.self, forKey: .maxTimeWidth) ?? d.maxTimeWidth
        maxTimeProportion = try c.decodeIfPresent(Float.self, forKey: .maxTimeProportion) ?? d.maxTimeProportion
        speedProbability = try c.decodeIfPresent(Double.self, forKey: .speedProbability) ?? d.speedProbability
        speedRange = try c.decodeIfPresent([Double].self, forKey: .speedRange) ?? d.speedRange
        noiseProbability = try c.decodeIfPresent(Double.self, forKey: .noiseProbability) ?? d.noiseProbability
        snrRange = try c.decodeIfPresent([Double].self, forKey: .snrRange) ?? d.snrRange
        warpProbability = try c.decodeIfPresent(Double.self, forKey: .warpProbability) ?? d.warpProbability
        warpRange = try c.decodeIfPresent([Double].self, forKey: .warpRange) ?? d.warpRange
        eqProbability = try c.decodeIfPresent(Double.self, forKey: .eqProbability) ?? d.eqProbability
        eqDecibels = try c.decodeIfPresent(Double.self, forKey: .eqDecibels) ?? d.eqDecibels
        trimProbability = try c.decodeIfPresent(Double.self, forKey: .trimProbability) ?? d.trimProbability
        trimMargin = try c.decodeIfPresent(Double.self, forKey: .trimMargin) ?? d.trimMargin
    }
}

extension TrainConfig.RunConfig {
    public init(from decoder: Decoder) throws {
        let d = Self(), c = try decoder.container(keyedBy: CodingKeys.self)
        output = try c.decodeIfPresent(String.self, forKey: .output) ?? d.output
        checkpointMinutes = try c.decodeIfPresent(Double.self, forKey: .checkpointMinutes) ?? d.checkpointMinutes
        validEverySteps = try c.decodeIfPresent(Int.self, forKey: .validEverySteps) ?? d.validEverySteps
        snapshotEverySteps = try c.decodeIfPresent(Int.self, forKey: .snapshotEverySteps) ?? d.snapshotEverySteps
        logEverySteps = try c.decodeIfPresent(Int.self, forKey: .logEverySteps) ?? d.logEverySteps
        threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? d.threads
        // TOML integers are signed 64-bit; decoding a negative one as UInt64 fails without naming the key.
        if let signed = try c.decodeIfPresent(Int64.self, forKey: .seed) {
            guard signed >= 0 else {
                throw DecodingError.dataCorruptedError(forKey: .seed, in: c, debugDescription: "must be zero or a positive integer, not \(signed)")
            }
            seed = UInt64(signed)
        } else {
            seed = d.seed
        }
    }
}

extension TrainConfig {
    /// Checks every key the way a user wrote it (snake_case, `section.key`), so a value that would trap
    /// or silently misbehave deep in training (a zero interval, a reversed range, a kernel without
    /// look-ahead room) is refused before anything is created. `Trainer.init` calls it.
    public func validate() throws(TrainerError) {
        func fail(_ key: String, _ value: Any, _ reason: String) -> TrainerError {
            .config("\(key) = \(value) \(reason)")
        }
        func atLeast(_ key: String, _ value: Int, _ minimum: Int) throws(TrainerError) {
            guard value >= minimum else { throw fail(key, value, "must be at least \(minimum)") }
        }
        func positive(_ key: String, _ value: Double) throws(TrainerError) {
            guard value.isFinite, value > 0 else { throw fail(key, value, "must be a positive number") }
        }
        func nonNegative(_ key: String, _ value: Double) throws(TrainerError) {
            guard value.isFinite, value >= 0 else { throw fail(key, value, "must be zero or a positive number") }
        }
        func fraction(_ key: String, _ value: Double) throws(TrainerError) {
            guard value.isFinite, (0...1).contains(value) else { throw fail(key, value, "must lie between 0 and 1") }
        }
        func range(_ key: String, _ value: [Double], positive: Bool) throws(TrainerError) {
            guard value.count == 2 else { throw fail(key, value, "takes two numbers [low, high]") }
            guard value.allSatisfy({ $0.isFinite && (!positive || $0 > 0) }) else {
                throw fail(key, value, positive ? "must hold two positive numbers" : "must hold two finite numbers")
            }
            guard value[0] <= value[1] else { throw fail(key, value, "is reversed: the low end comes first") }
        }

        guard !data.train.isEmpty else { throw .config("data.train is missing: name the training manifest") }
        try nonNegative("data.min_seconds", data.minSeconds)
        try positive("data.max_seconds", data.maxSeconds)
        guard data.minSeconds < data.maxSeconds else {
            throw fail("data.max_seconds", data.maxSeconds, "must be above data.min_seconds (\(data.minSeconds))")
        }
        try atLeast("data.valid_limit", data.validLimit, 0)
        try atLeast("data.statistics_utterances", data.statisticsUtterances, 1)

        try atLeast("model.channels", model.channels, 1)
        try atLeast("model.blocks", model.blocks, 0)
        try atLeast("model.kernel", model.kernel, 2)
        try atLeast("model.hidden", model.hidden, 1)
        try atLeast("model.look_ahead_blocks", model.lookAheadBlocks, 0)
        guard BaseArchitecture.subsamplings.contains(model.subsampling) else {
            throw fail("model.subsampling", model.subsampling,
                       "must be " + BaseArchitecture.subsamplings.map(String.init).joined(separator: " or "))
        }

        try positive("optimizer.learning_rate", Double(optimizer.learningRate))
        try atLeast("optimizer.warmup_steps", optimizer.warmupSteps, 0)
        try atLeast("optimizer.total_steps", optimizer.totalSteps, 1)
        guard ["cosine", "constant", "inverse_sqrt"].contains(optimizer.decay) else {
            throw fail("optimizer.decay", "'\(optimizer.decay)'", "must be cosine, constant or inverse_sqrt")
        }
        try fraction("optimizer.min_learning_rate_fraction", Double(optimizer.minLearningRateFraction))
        try nonNegative("optimizer.weight_decay", Double(optimizer.weightDecay))
        try positive("optimizer.max_grad_norm", Double(optimizer.maxGradNorm))
        try positive("optimizer.batch_seconds", optimizer.batchSeconds)

        try atLeast("augment.frequency_masks", augment.frequencyMasks, 0)
        try atLeast("augment.max_frequency_width", augment.maxFrequencyWidth, 0)
        try atLeast("augment.time_masks", augment.timeMasks, 0)
        try atLeast("augment.max_time_width", augment.maxTimeWidth, 0)
        try fraction("augment.max_time_proportion", Double(augment.maxTimeProportion))
        try fraction("augment.speed_probability", augment.speedProbability)
        try range("augment.speed_range", augment.speedRange, positive: true)
        try fraction("augment.noise_probability", augment.noiseProbability)
        try range("augment.snr_range", augment.snrRange, positive: false)
        try fraction("augment.warp_probability", augment.warpProbability)
        try range("augment.warp_range", augment.warpRange, positive: true)
        // A factor of 2 already moves half the spectrum off the top bin; beyond that a warp is noise.
        guard augment.warpRange.allSatisfy({ (0.5...2).contains($0) }) else {
            throw fail("augment.warp_range", augment.warpRange, "must lie within [0.5, 2]")
        }
        try fraction("augment.eq_probability", augment.eqProbability)
        // Beyond ±20 dB per component a curve reshapes speech past recognition; it is a typo, not a choice.
        guard augment.eqDecibels.isFinite, (0...20).contains(augment.eqDecibels) else {
            throw fail("augment.eq_decibels", augment.eqDecibels, "must lie within [0, 20]")
        }
        try fraction("augment.trim_probability", augment.trimProbability)
        guard augment.trimMargin.isFinite, (0...1).contains(augment.trimMargin) else {
            throw fail("augment.trim_margin", augment.trimMargin, "must lie within [0, 1] seconds")
        }

        // 1 would drop the output's own loss: the head would learn only from the middle of the stack.
        guard loss.intermediateWeight.isFinite, loss.intermediateWeight >= 0, loss.intermediateWeight < 1 else {
            throw fail("loss.intermediate_weight", loss.intermediateWeight, "must lie in [0, 1): 0 turns intermediate CTC off")
        }
        try atLeast("loss.intermediate_block", loss.intermediateBlock, 0)
        // With model.init_from the block count is the model's, checked when the trainer has read it.
        if loss.intermediateWeight > 0 && model.initFrom.isEmpty && model.blocks < 2 {
            throw fail("model.blocks", model.blocks, "must be at least 2 for intermediate CTC (loss.intermediate_weight > 0)")
        }
        if loss.intermediateWeight > 0 && model.initFrom.isEmpty && loss.intermediateBlock >= model.blocks {
            throw fail("loss.intermediate_block", loss.intermediateBlock, "must be below model.blocks (\(model.blocks)): the head cannot read past the last block")
        }

        guard !run.output.isEmpty else { throw .config("run.output is empty: name the run folder") }
        try positive("run.checkpoint_minutes", run.checkpointMinutes)
        try atLeast("run.valid_every_steps", run.validEverySteps, 1)
        try atLeast("run.snapshot_every_steps", run.snapshotEverySteps, 0)
        try atLeast("run.log_every_steps", run.logEverySteps, 1)
        try atLeast("run.threads", run.threads, 1)
    }
}
