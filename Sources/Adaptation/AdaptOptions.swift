import Model

/// The settings of one adaptation run (`earshot adapt`'s flags), with the defaults measured on FSDD
/// (bench/adapt-fsdd.sh; figures in the commit that set them).
public struct AdaptOptions: Sendable, Equatable {
    /// Parameterised top-level layers trained at the full learning rate, counted from the top
    /// (2 = the base model's two dense layers).
    public var layers = 2
    /// Further parameterised top-level layers below those (the top encoder blocks) trained at
    /// `learningRate * encoderLRFactor`; the activation cache then sits below them. nil: every residual
    /// block below the `layers` (the base model's 12), which adapted best to unseen FSDD speakers.
    public var encoderBlocks: Int? = nil
    public var encoderLRFactor: Float = 0.3
    /// Most epochs (passes over the training items); early stopping usually ends sooner.
    public var epochs = 30
    /// Peak AdamW learning rate (after a short warm-up, cosine decay to a tenth over `epochs`).
    public var learningRate: Float = 1e-3
    /// Epochs without a better validation score before stopping.
    public var patience = 4
    /// Share of the items held out for validation when no explicit validation set is given.
    public var valFraction = 0.1
    /// Keep the takes of one prompt (file names differing only in a trailing number) on one side of the
    /// validation split; off (the default): file by file. On FSDD, whose prefixes are digit and speaker,
    /// holding out whole prompts made validation a test of unseen digit/speaker pairs, stopped early on
    /// noise and left 23 % test WER against 15 % with the file split (bench/adapt-fsdd.sh, dense layers).
    public var splitByPrefix = false
    /// Utterances per optimiser step.
    public var batchSize = 16
    public var seed: UInt64 = 1
    /// Training runs with seeds `seed`, `seed + 1`, ... on the same cached data and validation split,
    /// whose kept weights are averaged (unless the mean validates worse than every one of the runs).
    /// Measured on FSDD's unseen speakers with `--text` (bench/adapt-fsdd.sh): single runs differed by
    /// up to 4.6 points from seed to seed (jackson 16.4, 12.4, 11.8 %); the mean of three scored 12.8,
    /// and greedily 26.8 % against 29.0-32.8 %. Each run adds its training time, not caching time.
    public var runs = 3
    /// SpecAugment-style masks on the cached activations: time bands (in encoder frames) and channel bands.
    public var timeMasks = 2
    public var maxTimeWidth = 3
    public var channelMasks = 2
    public var maxChannelWidth = 24
    /// Speed perturbation of the training recordings (not the validation ones): each factor other than 1
    /// adds a copy played that many times faster (tempo and pitch together, like a shorter or longer vocal
    /// tract) to the activation cache, and every epoch trains on one version of each recording, drawn at
    /// random. Measured on FSDD with `--text` (bench/adapt-fsdd.sh, step-14 000 base): greedy WER on the
    /// speakers adapted on 4.0 % without, 0.5 % with 0.9-1.1 or 0.8-1.2; on unseen speakers the five
    /// factors gave the lowest greedy mean (29.9 % against 32.4 % without, 33.0 % with three).
    public var speedFactors: [Double] = [0.8, 0.9, 1, 1.1, 1.2]
    /// Share of each epoch's items drawn from the general data set (when one is given).
    public var generalShare = 0.2
    /// Worker threads (caching, gradients, validation).
    public var threads = 2
    public var weightDecay: Float = 0
    public var maxGradNorm: Float = 5
    /// Validation utterances whose output (logits of the kept model) `AdaptResult.tuningSet` returns, for
    /// tuning the domain LM's weights (`earshot adapt --text`); 0 keeps none. Bounded, because the
    /// logits are held in memory.
    public var tuningUtterances = 0
    /// Strength of the L2-SP pull of the trained weights towards the base model's (0: none); it guards
    /// general recognition against a narrow domain.
    public var anchor: Float = 0

    public init() {}

    /// Range checks, each failure naming the CLI flag.
    public func validate() throws(AdaptError) {
        func bad(_ name: String, _ reason: String) -> AdaptError { .option(name: name, reason: reason) }
        guard layers >= 1 else { throw bad("--layers \(layers)", "at least one layer must be trained") }
        if let encoderBlocks, encoderBlocks < 0 { throw bad("--encoder-blocks \(encoderBlocks)", "must be 0 or more") }
        guard encoderLRFactor > 0, encoderLRFactor <= 10, encoderLRFactor.isFinite else {
            throw bad("--encoder-lr-factor \(encoderLRFactor)", "must be in (0, 10]")
        }
        guard (1...10_000).contains(epochs) else { throw bad("--epochs \(epochs)", "must be in 1...10000") }
        guard learningRate > 0, learningRate < 1, learningRate.isFinite else { throw bad("--lr \(learningRate)", "must be in (0, 1)") }
        guard patience >= 1 else { throw bad("--patience \(patience)", "must be at least 1") }
        guard valFraction >= 0, valFraction < 1 else { throw bad("--val-fraction \(valFraction)", "must be in [0, 1)") }
        guard (1...32).contains(runs) else { throw bad("--runs \(runs)", "must be in 1...32") }
        guard (1...4096).contains(batchSize) else { throw bad("--batch \(batchSize)", "must be in 1...4096") }
        guard timeMasks >= 0, maxTimeWidth >= 0, channelMasks >= 0, maxChannelWidth >= 0 else {
            throw bad("--time-masks/--channel-masks", "mask counts and widths must be 0 or more")
        }
        guard generalShare >= 0, generalShare < 1 else { throw bad("--general-share \(generalShare)", "must be in [0, 1)") }
        guard (1...256).contains(threads) else { throw bad("--threads \(threads)", "must be in 1...256") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw bad("--weight-decay \(weightDecay)", "must be 0 or more") }
        guard anchor >= 0, anchor.isFinite else { throw bad("--anchor \(anchor)", "must be 0 or more") }
        let speeds = speedFactors.map { String($0) }.joined(separator: ",")
        guard !speedFactors.isEmpty, speedFactors.allSatisfy({ $0 >= 0.5 && $0 <= 2 }) else {
            throw bad("--speed \(speeds)", "give one or more factors in 0.5...2 (1: as recorded), e.g. 0.9,1,1.1")
        }
        guard Set(speedFactors).count == speedFactors.count else { throw bad("--speed \(speeds)", "a factor is given twice") }
    }

    /// The options as recorded in the adapted model's provenance.
    public var provenance: JSONValue {
        .object([
            "layers": .number(Double(layers)), "encoder_blocks": encoderBlocks.map { .number(Double($0)) } ?? .string("all residual blocks"),
            "encoder_lr_factor": .number(Double(encoderLRFactor)), "epochs": .number(Double(epochs)),
            "learning_rate": .number(Double(learningRate)), "patience": .number(Double(patience)),
            "val_fraction": .number(valFraction), "split_by_prefix": .bool(splitByPrefix), "batch_size": .number(Double(batchSize)),
            "seed": .number(Double(seed)), "runs": .number(Double(runs)), "time_masks": .number(Double(timeMasks)),
            "max_time_width": .number(Double(maxTimeWidth)), "channel_masks": .number(Double(channelMasks)),
            "max_channel_width": .number(Double(maxChannelWidth)), "general_share": .number(generalShare),
            "weight_decay": .number(Double(weightDecay)), "max_grad_norm": .number(Double(maxGradNorm)),
            "anchor": .number(Double(anchor)), "speed_factors": .array(speedFactors.map { .number($0) }),
        ])
    }
}

/// Where the encoder is cut for adaptation: which top-level layers are frozen (below `cut`, run once into
/// the activation cache) and which parameters train at the full and at the reduced learning rate.
public struct LayerSplit: Sendable, Equatable {
    /// Index in the architecture's top-level layers of the lowest trained layer; the cache holds the
    /// output of layers `0..<cut` (after the model's input normalisation).
    public let cut: Int
    /// Parameter names trained at the full learning rate.
    public let headParameters: Set<String>
    /// Parameter names trained at the reduced rate.
    public let encoderParameters: Set<String>
    /// Names of the trained top-level layers, top first (for logs and provenance).
    public let trainedLayers: [String]

    /// `encoderBlocks` nil: every residual block below the top `layers`.
    public init(architecture: EncoderArchitecture, layers: Int, encoderBlocks: Int?) throws(AdaptError) {
        let parameterised = Array(architecture.layers.indices.filter { !architecture.layers[$0].parameters.isEmpty }.reversed())
        let available = parameterised.count
        let encoderBlocks = encoderBlocks ?? parameterised.dropFirst(layers).prefix {
            if case .residual = architecture.layers[$0] { return true } else { return false }
        }.count
        guard layers >= 1 else { throw .option(name: "--layers \(layers)", reason: "at least one layer must be trained") }
        guard layers + encoderBlocks <= available else {
            throw .option(name: "--layers \(layers) --encoder-blocks \(encoderBlocks)",
                          reason: "the model has only \(available) parameterised layers; together they may name at most that many")
        }
        let chosen = Array(parameterised.prefix(layers + encoderBlocks))
        cut = chosen.last!
        var head = Set<String>(), encoder = Set<String>()
        for (k, i) in chosen.enumerated() {
            let names = architecture.layers[i].parameters.map(\.name)
            if k < layers { head.formUnion(names) } else { encoder.formUnion(names) }
        }
        headParameters = head
        encoderParameters = encoder
        trainedLayers = chosen.map { LayerSplit.name(of: architecture.layers[$0]) }
    }

    static func name(of spec: LayerSpec) -> String {
        switch spec {
        case .conv1d(let s): return s.name
        case .dense(let s): return s.name
        case .layerNorm(let s): return s.name
        case .relu: return "relu"
        case .residual(let name, _): return name
        }
    }
}
