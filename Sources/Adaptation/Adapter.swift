import Audio
import Decoding
import Dispatch
import Features
import Foundation
import Model
import Recognizer
import Scoring
import Tensors
import Training

/// What an adaptation run reports while it works (the CLI draws a bar or prints lines from these).
public enum AdaptProgress: Sendable {
    /// Frozen-encoder activations: `done` of `total` cache entries (recordings, and their speed-perturbed
    /// copies) found in the cache or computed.
    case caching(done: Int, total: Int)
    /// One optimiser step of run `run` (from 0) of `runs` finished; `loss` is the running mean CTC loss
    /// of the epoch.
    case training(run: Int, runs: Int, epoch: Int, epochs: Int, step: Int, stepsPerEpoch: Int, loss: Double)
    /// The validation after an epoch (epoch 0: the base model).
    case validated(epoch: Int, score: ValidationScore, best: Bool)
}

/// Greedy-decoding error rates and mean CTC loss on the validation items.
public struct ValidationScore: Sendable, Equatable {
    public var wer: Double
    public var cer: Double
    public var loss: Double
    public var utterances: Int

    var provenance: JSONValue {
        .object(["wer": .number((wer * 100).rounded() / 100), "cer": .number((cer * 100).rounded() / 100),
                 "ctc_loss": .number((loss * 1000).rounded() / 1000), "utterances": .number(Double(utterances))])
    }
}

/// The outcome of `Adapter.run`: the adapted model (not yet written) and what happened.
public struct AdaptResult: Sendable {
    public var model: ModelFile
    public var before: ValidationScore?
    public var after: ValidationScore?
    /// Epochs trained (over all runs), and the one whose parameters were kept (0: none beat the base
    /// model, or the mean of several runs was kept).
    public var epochsRun: Int
    public var bestEpoch: Int
    /// Training runs (`AdaptOptions.runs`), and the one (from 0) whose weights were kept; nil: their mean.
    public var runs: Int = 1
    public var keptRun: Int? = 0
    /// True when no run's validation beat the base model at any epoch: the weights written are the base's.
    public var noEpochImproved = false
    public var trainUtterances: Int
    public var validationUtterances: Int
    public var skipped: [SkippedItem]
    /// Cache entries (recordings and their speed-perturbed copies) read from the cache, and those computed
    /// in this run.
    public var cacheHits: Int
    public var cacheMisses: Int
    public var cacheDirectory: URL
    public var dataSHA256: String
    /// Up to `AdaptOptions.tuningUtterances` validation utterances: the kept model's logits and the
    /// reference text, so decoding weights can be tuned on held-out audio without reading it again.
    public var tuningSet: [(logits: Matrix, reference: String)] = []

    /// Writes the model atomically (temporary file, fsync, rename).
    public func write(to path: String) throws(AdaptError) {
        do { try model.save(path: path) } catch { throw .output(path: path, reason: error.description) }
    }
}

/// Where the data comes from: DATA, an optional explicit validation set, an optional general data set.
public struct AdaptData: Sendable, Equatable {
    public var train: String
    public var validation: String?
    public var general: String?

    public init(train: String, validation: String? = nil, general: String? = nil) {
        self.train = train; self.validation = validation; self.general = general
    }
}

/// Transfer learning on a user's recordings: the base encoder is frozen below a cut, its activations for
/// the data are computed once into an on-disk `ActivationCache`, and the layers above the cut are
/// fine-tuned with the CTC loss (AdamW, masking on the cached activations, validation, early stopping,
/// best epoch kept). Owns the loaded base model, the prepared item lists (paths into the cache, labels),
/// and the trained parameters; activations are read from disk per batch, never all held in memory.
public final class Adapter {
    public let options: AdaptOptions
    public let data: AdaptData
    public let base: ModelFile
    public let basePath: String
    public let split: LayerSplit
    let cache: ActivationCache
    /// Taken when `run` first touches the cache and held for the adapter's life, so
    /// `ActivationCache.prune` never deletes under it.
    private var cacheLock: ActivationCache.Lock?
    let cacheRoot: URL
    let encoder: Encoder
    let frontendConfig: FrontendConfig
    let vocabulary: Vocabulary
    let log: @Sendable (String) -> Void

    /// Loads the base model and checks the options; reads no data yet.
    public init(baseModel: String, data: AdaptData, cacheRoot: URL, options: AdaptOptions,
                log: @escaping @Sendable (String) -> Void = { _ in }) throws(AdaptError) {
        try options.validate()
        let model: ModelFile
        do { model = try ModelFile.load(path: baseModel) } catch { throw .model(path: baseModel, reason: error.description) }
        var config: FrontendConfig
        do {
            config = try model.description.frontendConfig(file: baseModel)
            encoder = try Encoder(model: model, file: baseModel)
        } catch {
            throw .model(path: baseModel, reason: error.description)
        }
        // Global CMVN is the encoder's (its statistics tensors), as in the recogniser.
        if config.normalization == .global { config.normalization = .none }
        frontendConfig = config
        base = model
        basePath = baseModel
        self.options = options
        self.data = data
        self.log = log
        vocabulary = Vocabulary(ctcTokens: model.description.vocabulary)
        split = try LayerSplit(architecture: model.description.architecture, layers: options.layers, encoderBlocks: options.encoderBlocks)
        self.cacheRoot = cacheRoot
        cache = ActivationCache(root: cacheRoot, modelSHA256: model.sha256 ?? "unknown", cut: split.cut)
    }

    /// Locks and creates the cache folder: only once the data is known to be usable, so that a refused
    /// run (a folder without recordings, a mistyped manifest) leaves nothing on disk.
    func openCache() throws(AdaptError) {
        guard cacheLock == nil else { return }
        guard let lock = ActivationCache.Lock(root: cacheRoot, exclusive: false) else {
            throw .cache(path: cacheRoot.path, reason: "cannot create or lock \(cacheRoot.appendingPathComponent(".lock").path)")
        }
        cacheLock = lock
        try cache.create()
    }

    /// An utterance ready for training: its cache entry, labels and frame count.
    struct Prepared: Sendable {
        var item: ValidItem
        /// The recording at its own speed, levelled as transcribe levels it (validation and scoring use this one).
        var entry: URL
        var frames: Int
        var audioSHA256: String
        /// The copies an epoch trains on, one drawn at random per epoch: the `AdaptOptions.speedFactors`
        /// variants that are long enough for the transcript ([entry] when not perturbed).
        var trainingEntries: [URL]
    }

    var validator: ItemValidator {
        ItemValidator(vocabulary: vocabulary, frontend: frontendConfig, subsampling: encoder.subsampling)
    }

    // MARK: data

    func load(_ path: String, role: String) throws(AdaptError) -> (valid: [ValidItem], skipped: [SkippedItem]) {
        let (items, missing) = try DataDiscovery.discover(path)
        let (valid, skipped) = validator.validateAll(items)
        return (valid, missing + skipped)
    }

    /// Up to `count` usable items of the general manifest, picked in a seeded order and checked lazily, so
    /// a corpus of a hundred thousand utterances costs only the headers of the few it uses.
    func generalPool(_ path: String, count: Int) throws(AdaptError) -> [ValidItem] {
        var items = try DataDiscovery.manifestItems(path)
        var rng = SplitMix64(seed: options.seed &+ 0x6E6E)
        items.shuffle(using: &rng)
        var pool: [ValidItem] = []
        var checked = 0
        for item in items where pool.count < count {
            checked += 1
            if case .success(let v) = validator.validate(item) { pool.append(v) }
        }
        log("general data: \(counted(pool.count, "utterance")) drawn from \(path) (\(checked) checked)")
        return pool
    }

    // MARK: the activation cache

    /// One cache entry to find or compute: item `item` played `speed` times faster.
    struct CacheUnit: Sendable {
        var item: Int
        var speed: Double
    }

    struct CachedUnit: Sendable {
        var entry: URL
        var frames: Int
        var audioSHA256: String
    }

    /// Frontend and frozen layers for every item whose cache entry is missing, and for the speed-perturbed
    /// copies of the items whose audio paths are in `perturbed`; items that cannot be read (or come out too
    /// short) are returned as skipped. Counts cache hits and misses per entry.
    func prepare(_ items: [ValidItem], perturbed: Set<String> = [], progress: @Sendable (AdaptProgress) -> Void,
                 hits: inout Int, misses: inout Int) throws(AdaptError) -> (ready: [Prepared], skipped: [SkippedItem]) {
        let copies = options.speedFactors.filter { $0 != 1 }
        let units: [CacheUnit] = items.enumerated().flatMap { k, item in
            [CacheUnit(item: k, speed: 1)] + (perturbed.contains(item.audio) ? copies.map { CacheUnit(item: k, speed: $0) } : [])
        }
        let n = units.count
        let results = Locked<[Result<CachedUnit, SkipReason>?]>(slots: n)
        let failure = Locked<AdaptError?>(nil)
        let done = Locked(0)
        let counts = Locked((hits: 0, misses: 0))
        let prefix = Array(encoder.layers[0..<split.cut])
        let stale = cacheIsStale(items, prefix: prefix)
        let encoder = self.encoder, cache = self.cache, config = frontendConfig, strideAbove = strideAboveCut
        let workers = max(1, min(options.threads, n))
        progress(.caching(done: 0, total: n))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let frontend: LogMelFrontend
            do { frontend = try LogMelFrontend(config: config, mode: .offline) } catch {
                failure.withLock { $0 = $0 ?? .model(path: "frontend", reason: "\(error)") }
                return
            }
            for u in stride(from: w, to: n, by: workers) {
                if failure.withLock({ $0 != nil }) { return }
                let unit = units[u], item = items[unit.item]
                guard let url = cache.entryURL(for: item.audio, speed: unit.speed) else {
                    results.set(u, .failure(.missingAudio))
                    let d = done.withLock { $0 += 1; return $0 }
                    progress(.caching(done: d, total: n))
                    continue
                }
                let needed = ctcMinimumFrames(labels: item.labels)
                // Touched before it is read: the use is on record however long the run takes.
                ActivationCache.touch(url)
                if !stale, let hit = ActivationCache.load(url) {
                    counts.withLock { $0.hits += 1 }
                    results.set(u, .success(CachedUnit(entry: url, frames: hit.activations.rows, audioSHA256: hit.audioSHA256)))
                } else {
                    do {
                        let bytes = try Data(contentsOf: URL(fileURLWithPath: item.audio))
                        var samples = Self.levelled(try AudioFile.read(path: item.audio, targetSampleRate: config.sampleRate).samples,
                                                    sampleRate: config.sampleRate)
                        if unit.speed != 1 { samples = try speedPerturb(samples, factor: unit.speed) }
                        let features = frontend.compute(samples)
                        let activations = Layer.forward(prefix, encoder.normalized(features))
                        let entry = CachedActivations(activations: activations, audioSHA256: SHA256.hex([UInt8](bytes)))
                        try ActivationCache.store(entry, to: url)
                        counts.withLock { $0.misses += 1 }
                        results.set(u, .success(CachedUnit(entry: url, frames: activations.rows, audioSHA256: entry.audioSHA256)))
                    } catch let error as AdaptError {
                        failure.withLock { $0 = $0 ?? error }
                        return
                    } catch let error as AudioError {
                        results.set(u, .failure(.unreadableAudio(error.description)))
                    } catch {
                        results.set(u, .failure(.unreadableAudio("\(error)")))
                    }
                }
                // The subsampled frame count of the real features decides, not the header estimate.
                if case .success(let c)? = results.withLock({ $0[u] }), (c.frames + strideAbove - 1) / strideAbove < needed {
                    results.set(u, .failure(.tooShort(seconds: item.seconds / unit.speed, frames: (c.frames + strideAbove - 1) / strideAbove, neededFrames: needed)))
                }
                let d = done.withLock { $0 += 1; return $0 }
                progress(.caching(done: d, total: n))
            }
        }
        if let error = failure.current { throw error }
        // Per item: the unperturbed entry decides whether it is usable; a perturbed copy too short for
        // the transcript (a sped-up fast talker) is only left out of training.
        var byItem = [(own: Result<CachedUnit, SkipReason>?, copies: [(Double, CachedUnit)])](repeating: (nil, []), count: items.count)
        hits += counts.current.hits
        misses += counts.current.misses
        for (unit, r) in zip(units, results.current) {
            if unit.speed == 1 { byItem[unit.item].own = r } else if case .success(let c)? = r { byItem[unit.item].copies.append((unit.speed, c)) }
        }
        var ready: [Prepared] = [], skipped: [SkippedItem] = []
        for (item, r) in zip(items, byItem) {
            switch r.own! {
            case .success(let c):
                var training = r.copies.map(\.1.entry)
                if !perturbed.contains(item.audio) || options.speedFactors.contains(1) || training.isEmpty { training.insert(c.entry, at: 0) }
                ready.append(Prepared(item: item, entry: c.entry, frames: c.frames, audioSHA256: c.audioSHA256, trainingEntries: training))
            case .failure(let reason): skipped.append(SkippedItem(path: item.audio, reason: reason))
            }
        }
        return (ready, skipped)
    }

    /// `samples` as `earshot transcribe` and `eval` give them to the model: a quiet recording raised to
    /// the trained level (`RecordingLevel`). Adapting on the audio as those hear it keeps the adapted
    /// model's training and use alike; the gain is the whole item's, before any speed perturbation.
    static func levelled(_ samples: [Float], sampleRate: Int) -> [Float] {
        RecordingLevel.apply(RecordingLevel(samples: samples, sampleRate: sampleRate).gainDB, to: samples)
    }

    /// Whether the cache holds activations that this build would not compute. Its folder is keyed by the
    /// model file and the cut, not by the code: an upgrade that changed the frontend or the encoder's
    /// arithmetic would otherwise train on stale activations, silently. The first cached recording is
    /// computed again and compared (a few milliseconds); any difference beyond float rounding between
    /// builds means every entry in the folder is deleted, this run's and any other's, so the rest of this
    /// run recomputes its own and a run cut short leaves no stale entry behind its first, fresh one.
    func cacheIsStale(_ items: [ValidItem], prefix: [Layer]) -> Bool {
        for item in items {
            guard let url = cache.entryURL(for: item.audio), let hit = ActivationCache.load(url) else { continue }
            // Unreadable now: the caching loop reports it; check the next cached one.
            guard let frontend = try? LogMelFrontend(config: frontendConfig, mode: .offline),
                  let samples = (try? AudioFile.read(path: item.audio, targetSampleRate: frontendConfig.sampleRate).samples)
                      .map({ Self.levelled($0, sampleRate: frontendConfig.sampleRate) })
            else { continue }
            let fresh = Layer.forward(prefix, encoder.normalized(frontend.compute(samples)))
            let cached = hit.activations
            var difference: Float = 0, scale: Float = 1
            if fresh.rows == cached.rows && fresh.cols == cached.cols {
                for (a, b) in zip(fresh.data, cached.data) {
                    difference = max(difference, abs(a - b))
                    scale = max(scale, abs(b))
                }
            } else {
                difference = .infinity
            }
            // Same code gives the same numbers up to FFT planning and BLAS kernels: ~1e-6 of the scale.
            guard !(difference <= 1e-3 * scale) else { return false }
            let removed = cache.removeAllEntries()
            log("activation cache \(cache.directory.path): computed by another version of the frontend or encoder (\(item.audio): "
                + (difference.isFinite ? "largest difference \(difference)" : "\(cached.rows) frames cached, \(fresh.rows) now")
                + "); removed its \(counted(removed, "entry", plural: "entries")), recomputing")
            return true
        }
        return false
    }

    /// CTC frames an utterance gets: the cached frames divided by the subsampling still above the cut.
    var strideAboveCut: Int {
        var rate = 1
        for spec in base.description.architecture.layers[split.cut...] { if case .conv1d(let c) = spec { rate *= c.stride } }
        return rate
    }

    // MARK: scoring

    /// The parameters of the layers above the cut.
    func suffixParameters(_ all: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for p in LayerSpec.parameters(of: Array(base.description.architecture.layers[split.cut...])) { out[p.name] = all[p.name] }
        return out
    }

    var suffixSpecs: [LayerSpec] { Array(base.description.architecture.layers[split.cut...]) }

    /// Greedy WER/CER and mean CTC loss of the layers above the cut with `parameters` on `items`.
    func evaluate(_ items: [Prepared], parameters: [String: Tensor]) throws(AdaptError) -> ValidationScore {
        let net: TrainableEncoder
        do { net = try TrainableEncoder(specs: suffixSpecs, parameters: parameters) } catch { throw .training(error.description) }
        let n = items.count
        let out = Locked<[(hyp: String, loss: Double)?]>(slots: n)
        let vocab = vocabulary, frameDuration = frontendConfig.encoderFrameDuration(subsampling: encoder.subsampling)
        let workers = max(1, min(options.threads, n))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for k in stride(from: w, to: n, by: workers) {
                // A vanished entry is reported after the loop, not scored as silence.
                guard let entry = ActivationCache.load(items[k].entry) else { continue }
                let logits = net.forward(entry.activations)
                var decoder = GreedyDecoder(vocabulary: vocab, frameDuration: frameDuration)
                decoder.accept(logits)
                let loss = (try? ctcLoss(logits: logits, labels: items[k].item.labels, blank: vocab.blank)).map { $0.impossible ? Double.nan : Double($0.loss) } ?? .nan
                out.set(k, (decoder.finalize().text, loss))
            }
        }
        if let k = out.current.firstIndex(where: { $0 == nil }) {
            throw .cache(path: items[k].entry.path, reason: "the entry for \(items[k].item.audio) vanished or was damaged during the run")
        }
        let results = out.current.map { $0! }
        let score = CorpusScore(pairs: zip(items, results).map { ($0.item.text, $1.hyp) })
        let losses = results.map(\.loss).filter(\.isFinite)
        return ValidationScore(wer: score.wordErrorRatePercent, cer: score.characterErrorRatePercent,
                               loss: losses.isEmpty ? .nan : losses.reduce(0, +) / Double(losses.count), utterances: n)
    }

    /// The layers above the cut applied to cached activations: what the recogniser's decoder would get.
    func logits(of items: [Prepared], parameters: [String: Tensor]) throws(AdaptError) -> [(logits: Matrix, reference: String)] {
        let net: TrainableEncoder
        do { net = try TrainableEncoder(specs: suffixSpecs, parameters: parameters) } catch { throw .training(error.description) }
        var out: [(logits: Matrix, reference: String)] = []
        for item in items {
            guard let entry = ActivationCache.load(item.entry) else {
                throw .cache(path: item.entry.path, reason: "the entry for \(item.item.audio) vanished or was damaged during the run")
            }
            out.append((net.forward(entry.activations), item.item.text))
        }
        return out
    }

    // MARK: the run

    /// Caches the activations, trains, and returns the adapted model with the scores before and after.
    public func run(progress: @escaping @Sendable (AdaptProgress) -> Void = { _ in }) throws(AdaptError) -> AdaptResult {
        // Worker threads are the parallelism (see BatchGradients); BLAS threads would only contend.
        BLASThreads.set(1)
        var skipped: [SkippedItem] = []
        let (allTrain, trainSkipped) = try load(data.train, role: "train")
        skipped += trainSkipped
        var trainItems = allTrain, valItems: [ValidItem] = []
        var splitByPrefix = false
        if let v = data.validation {
            let (valid, bad) = try load(v, role: "validation")
            valItems = valid
            skipped += bad
        } else if options.valFraction > 0 {
            let paths = allTrain.map(\.audio)
            let parts = ValidationSplit.split(paths, fraction: options.valFraction, seed: options.seed,
                                                 byPrefix: options.splitByPrefix)
            splitByPrefix = ValidationSplit.groupsByPrefix(paths, byPrefix: options.splitByPrefix)
            if options.splitByPrefix && !splitByPrefix {
                log("validation split by file: the names form fewer than 10 groups of takes, too few to split by prefix")
            }
            trainItems = parts.train.map { allTrain[$0] }
            valItems = parts.validation.map { allTrain[$0] }
        }
        for s in skipped { log("skipped \(s)") }
        guard !trainItems.isEmpty else { throw .data(path: data.train, reason: "no usable items (\(skipped.count) skipped, reasons above)") }
        // Without validation nothing checks the result against the base model (a single recording would be
        // trained on for every epoch of every run, and the unattended workflow would serve the result):
        // only an explicit --val-fraction 0 without --val asks for that. Refused before any caching.
        let wantsValidation = data.validation != nil || options.valFraction > 0
        if valItems.isEmpty && wantsValidation {
            let reason = data.validation != nil
                ? "--val gave no usable recordings (reasons above), so nothing would check the result against the base model"
                : "\(trainItems.count) usable recording\(trainItems.count == 1 ? "" : "s") cannot spare one for validation, so nothing would check the result against the base model: add recordings, give --val, or pass --val-fraction 0 to adapt without validation"
            throw .data(path: data.validation ?? data.train, reason: reason)
        }
        try openCache()

        var generalItems: [ValidItem] = []
        var generalPerEpoch = 0
        if let g = data.general, options.generalShare > 0 {
            generalPerEpoch = Int((Double(trainItems.count) * options.generalShare / (1 - options.generalShare)).rounded(.up))
            // A pool a few epochs deep: fresh general utterances each epoch without caching a whole corpus.
            generalItems = try generalPool(g, count: generalPerEpoch * 4)
            generalPerEpoch = min(generalPerEpoch, generalItems.count)
        }

        var hits = 0, misses = 0
        var seen = Set<String>()
        let all = (trainItems + valItems + generalItems).filter { seen.insert($0.audio).inserted }
        let (prepared, unreadable) = try prepare(all, perturbed: Set(trainItems.map(\.audio)), progress: progress,
                                                 hits: &hits, misses: &misses)
        for s in unreadable { log("skipped \(s)") }
        skipped += unreadable
        let byPath = Dictionary(prepared.map { ($0.item.audio, $0) }, uniquingKeysWith: { a, _ in a })
        var train = trainItems.compactMap { byPath[$0.audio] }
        let validation = valItems.compactMap { byPath[$0.audio] }
        // The same recording on both sides (by content: --val inside --data, another name, a link, a card
        // dropped twice) would score the model on audio it trained on: validation keeps it.
        let heldOut = Set(validation.map(\.audioSHA256))
        let overlap = train.filter { heldOut.contains($0.audioSHA256) }
        if let first = overlap.first {
            log("\(overlap.count) training recording\(overlap.count == 1 ? " is" : "s are") also in validation (the same audio; first: \(first.item.audio)): used for validation only")
            train.removeAll { heldOut.contains($0.audioSHA256) }
            guard !train.isEmpty else {
                throw .data(path: data.train, reason: data.validation != nil
                    ? "every usable training recording is also in --val (the same audio): nothing is left to train on; give --val a folder of other recordings"
                    : "every usable training recording is the same audio as one held out for validation: nothing is left to train on; add other recordings")
            }
        }
        let general = generalItems.compactMap { byPath[$0.audio] }
        // General speech keeps its share of what training is left, and items that failed caching are gone
        // from the pool: an epoch plans only what is left.
        if generalPerEpoch > 0 {
            generalPerEpoch = Int((Double(train.count) * options.generalShare / (1 - options.generalShare)).rounded(.up))
        }
        generalPerEpoch = min(generalPerEpoch, general.count)
        guard !train.isEmpty else { throw .data(path: data.train, reason: "no usable items (\(skipped.count) skipped, reasons above)") }
        if validation.isEmpty && wantsValidation {
            throw .data(path: data.validation ?? data.train, reason: "none of the validation recordings could be used (reasons above), so nothing would check the result against the base model")
        }
        log("\(train.count) training and \(validation.count) validation utterances; activations: \(hits) cached, \(misses) computed (\(cache.directory.path))")

        // Content, not paths: the same recordings and texts anywhere give the same hash.
        let dataLines = (train + validation).map { "\($0.audioSHA256)\t\($0.item.text)\n" }.sorted().joined()
        let dataSHA256 = SHA256.hex(Array(dataLines.utf8))
        // The general utterances drawn are part of what trained the model too: another corpus at the same
        // path must not give the same record.
        let generalSHA256 = general.isEmpty ? nil
            : SHA256.hex(Array(general.map { "\($0.audioSHA256)\t\($0.item.text)\n" }.sorted().joined().utf8))

        let start = suffixParameters(base.parameters)
        var before: ValidationScore?
        if !validation.isEmpty {
            before = try evaluate(validation, parameters: start)
            progress(.validated(epoch: 0, score: before!, best: true))
        }

        // Several runs that differ only in their seed (shuffling and masks) end in nearby minima of one
        // basin, since they start from the same base; the element-wise mean of their kept weights (a
        // "model soup", Wortsman et al. 2022) then decodes unseen speakers better than a typical run
        // and varies less from seed to seed (FSDD, docs/adaptation.md).
        var members: [RunOutcome] = []
        for run in 0..<options.runs {
            let seed = options.seed &+ UInt64(run)
            if options.runs > 1 { log("run \(run + 1) of \(options.runs) (seed \(seed))") }
            members.append(try trainOnce(seed: seed, run: run, start: start, before: before, train: train, validation: validation,
                                         general: general, generalPerEpoch: generalPerEpoch, progress: progress))
        }
        var best = members[0]
        var keptRun: Int? = 0
        let trainable = split.headParameters.union(split.encoderParameters)
        let epochsRun = members.reduce(0) { $0 + $1.epochsRun }
        if members.count > 1 {
            var soup = start
            for name in trainable where start[name] != nil { soup[name] = Tensor.mean(members.map { $0.parameters[name]! }) }
            let epochs = members.map { "\($0.epoch)" }.joined(separator: ", ")
            if validation.isEmpty {
                best = RunOutcome(epoch: 0, score: nil, parameters: soup, epochsRun: epochsRun)
                keptRun = nil
                log("kept the mean of the \(members.count) runs (best epochs \(epochs); no validation set)")
            } else {
                let score = try evaluate(validation, parameters: soup)
                let memberWER = members.map { $0.score?.wer ?? .infinity }
                let runs = memberWER.map { String(format: "%.2f%%", $0) }.joined(separator: ", ")
                // A test for a broken mean, not a contest: the split holds the speakers adapted on, where
                // runs and mean all score near their best and differ by a word or two, while the mean's
                // gain is on speakers and conditions the split lacks. A mean fails outright only if the
                // runs left the basin they shared, and then it is worse than every one of them.
                if score.wer <= memberWER.max()! + 1e-9 {
                    best = RunOutcome(epoch: 0, score: score, parameters: soup, epochsRun: epochsRun)
                    keptRun = nil
                    log(String(format: "kept the mean of the %d runs: validation WER %.2f%% (runs: %@; best epochs %@)",
                               members.count, score.wer, runs, epochs))
                } else {
                    // The runs' own rule for "better": lower WER, or the same WER with a lower loss.
                    let k = members.indices.min { a, b in
                        let x = members[a].score, y = members[b].score
                        guard let x else { return false }
                        guard let y else { return true }
                        return x.wer < y.wer - 1e-9 || (x.wer <= y.wer + 1e-9 && x.loss < y.loss)
                    }!
                    best = members[k]
                    keptRun = k
                    log(String(format: "kept run %d: the mean of the %d runs validated worse than each of them (%.2f%%; runs: %@)",
                               k + 1, members.count, score.wer, runs))
                }
            }
        }

        var tensors = base.parameters
        for (name, t) in best.parameters where trainable.contains(name) { tensors[name] = t }
        var description = base.description
        description.provenance = provenance(before: before, after: best.score, members: members, keptRun: keptRun,
                                            train: train, validation: validation, splitByPrefix: splitByPrefix,
                                            generalPerEpoch: generalPerEpoch, skipped: skipped.count, dataSHA256: dataSHA256, generalSHA256: generalSHA256)
        if description.timing != nil {
            // Kept rather than dropped: the adapted weights have the base's architecture and look-ahead,
            // and an uncorrected model is off by the whole delay, but nobody measured these weights.
            description.provenance["timing_calibration"] = .string("inherited from the base model, not measured on the adapted weights (earshot model calibrate)")
        }
        var result = AdaptResult(model: ModelFile(description: description, parameters: tensors), before: before, after: best.score,
                                 epochsRun: epochsRun, bestEpoch: best.epoch, runs: members.count, keptRun: keptRun,
                                 trainUtterances: train.count,
                                 validationUtterances: validation.count, skipped: skipped, cacheHits: hits, cacheMisses: misses,
                                 cacheDirectory: cache.directory, dataSHA256: dataSHA256)
        result.noEpochImproved = !validation.isEmpty && members.allSatisfy { $0.epoch == 0 }
        if options.tuningUtterances > 0 && !validation.isEmpty {
            // A seeded sample, not the first ones: validation is in path order, and the first 300 paths
            // may be one speaker's, one folder's or one prompt's.
            var sample = validation
            if sample.count > options.tuningUtterances {
                var rng = SplitMix64(seed: options.seed &+ 0x7E7E)
                sample.shuffle(using: &rng)
                sample = Array(sample.prefix(options.tuningUtterances))
            }
            result.tuningSet = try logits(of: sample, parameters: best.parameters)
        }
        return result
    }

    /// What one training run kept: its best epoch's parameters and validation score.
    struct RunOutcome {
        var epoch: Int
        var score: ValidationScore?
        var parameters: [String: Tensor]
        var epochsRun: Int
    }

    /// One training run from `start` (the base model's trained layers) with `seed` for shuffling and masks.
    func trainOnce(seed: UInt64, run: Int, start: [String: Tensor], before: ValidationScore?, train: [Prepared], validation: [Prepared],
                   general: [Prepared], generalPerEpoch: Int,
                   progress: @escaping @Sendable (AdaptProgress) -> Void) throws(AdaptError) -> RunOutcome {
        var parameters = start
        let anchorParameters = start
        let stepsPerEpoch = (train.count + generalPerEpoch + options.batchSize - 1) / options.batchSize
        let totalSteps = stepsPerEpoch * options.epochs
        let schedule = LRSchedule(peak: options.learningRate, warmupSteps: min(50, max(1, totalSteps / 20)),
                                  decay: .cosine(totalSteps: totalSteps, floor: options.learningRate * 0.1))
        var headOptimizer = AdamW(config: AdamWConfig(schedule: schedule, weightDecay: options.weightDecay, maxGradNorm: nil))
        var encoderSchedule = schedule
        encoderSchedule.peak *= options.encoderLRFactor
        if case .cosine(let t, let floor) = schedule.decay { encoderSchedule.decay = .cosine(totalSteps: t, floor: floor * options.encoderLRFactor) }
        var encoderOptimizer = AdamW(config: AdamWConfig(schedule: encoderSchedule, weightDecay: options.weightDecay, maxGradNorm: nil))
        let trainable = split.headParameters.union(split.encoderParameters)
        let augment = SpecAugment(frequencyMasks: options.channelMasks, maxFrequencyWidth: options.maxChannelWidth,
                                  timeMasks: options.timeMasks, maxTimeWidth: options.maxTimeWidth,
                                  maxTimeProportion: 0.2, fill: .value(0))
        let specs = suffixSpecs

        var best = (epoch: 0, score: before, parameters: parameters)
        var epochsRun = 0, sinceBest = 0
        for epoch in 1...options.epochs {
            var rng = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(epoch))
            var order: [(Prepared, Int)] = train.indices.map { (train[$0], $0) }
            if generalPerEpoch > 0 {
                var pool = Array(general.indices)
                pool.shuffle(using: &rng)
                order += pool.prefix(generalPerEpoch).map { (general[$0], train.count + $0) }
            }
            order.shuffle(using: &rng)
            var lossSum = 0.0, lossCount = 0
            for step in 0..<stepsPerEpoch {
                let slice = order[(step * options.batchSize)..<min(order.count, (step + 1) * options.batchSize)]
                var batch: [TrainingExample] = []
                for (p, index) in slice {
                    // The seed is mixed first: with a plain xor, runs with seeds s and s + 1 would draw the same
                    // masks, only dealt to other utterances.
                    var maskRNG = SplitMix64(seed: (seed &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(epoch) << 40) ^ UInt64(index))
                    let entry = p.trainingEntries.count == 1 ? p.trainingEntries[0] : p.trainingEntries[Int(maskRNG.next() % UInt64(p.trainingEntries.count))]
                    guard var x = ActivationCache.load(entry)?.activations else {
                        throw .cache(path: entry.path, reason: "the entry for \(p.item.audio) vanished or was damaged during the run")
                    }
                    augment.apply(to: &x, using: &maskRNG)
                    batch.append(TrainingExample(features: x, labels: p.item.labels))
                }
                do {
                    let net = try TrainableEncoder(specs: specs, parameters: parameters, trainable: trainable)
                    let result = try net.batchLossAndGradients(batch, blank: vocabulary.blank, threads: options.threads)
                    var gradients = result.meanGradients()
                    if options.anchor > 0 {
                        // L2-SP: a pull towards the base model's weights (not towards zero, as weight decay
                        // would), so a narrow domain cannot drag the layers far from general speech.
                        for name in trainable {
                            guard var g = gradients[name], let w = parameters[name], let w0 = anchorParameters[name] else { continue }
                            for i in g.data.indices { g.data[i] += options.anchor * (w.data[i] - w0.data[i]) }
                            gradients[name] = g
                        }
                    }
                    clipByGlobalNorm(&gradients, maxNorm: options.maxGradNorm)
                    try headOptimizer.update(parameters: &parameters, gradients: gradients, trainable: split.headParameters)
                    if !split.encoderParameters.isEmpty {
                        try encoderOptimizer.update(parameters: &parameters, gradients: gradients, trainable: split.encoderParameters)
                    }
                    lossSum += result.lossSum; lossCount += result.utterances
                } catch {
                    throw .training(error.description)
                }
                progress(.training(run: run, runs: options.runs, epoch: epoch, epochs: options.epochs, step: step + 1, stepsPerEpoch: stepsPerEpoch,
                                   loss: lossCount > 0 ? lossSum / Double(lossCount) : 0))
            }
            epochsRun = epoch
            log(String(format: "epoch %d: training loss %.4f", epoch, lossCount > 0 ? lossSum / Double(lossCount) : 0))
            guard !validation.isEmpty else { best = (epoch, nil, parameters); continue }
            let score = try evaluate(validation, parameters: parameters)
            let improved = best.score.map { score.wer < $0.wer - 1e-9 || (score.wer <= $0.wer + 1e-9 && score.loss < $0.loss) } ?? true
            progress(.validated(epoch: epoch, score: score, best: improved))
            if improved {
                best = (epoch, score, parameters)
                sinceBest = 0
            } else {
                sinceBest += 1
                if sinceBest >= options.patience {
                    log("early stop after epoch \(epoch): no better validation score for \(counted(options.patience, "epoch")) (best: epoch \(best.epoch))")
                    break
                }
            }
        }

        return RunOutcome(epoch: best.epoch, score: best.score, parameters: best.parameters, epochsRun: epochsRun)
    }

    func provenance(before: ValidationScore?, after: ValidationScore?, members: [RunOutcome], keptRun: Int?, train: [Prepared],
                    validation: [Prepared], splitByPrefix: Bool, generalPerEpoch: Int, skipped: Int, dataSHA256: String,
                    generalSHA256: String?) -> [String: JSONValue] {
        var adaptation: [String: JSONValue] = [
            "data": .string(data.train),
            "data_sha256": .string(dataSHA256),
            "validation": .string(data.validation ?? (validation.isEmpty ? "none" : "split of data, fraction \(options.valFraction), seed \(options.seed), \(splitByPrefix ? "by file-name prefix" : "by file")")),
            "options": options.provenance,
            "trained_layers": .array(split.trainedLayers.map { .string($0) }),
            "train_utterances": .number(Double(train.count)),
            "train_hours": .number((train.reduce(0) { $0 + $1.item.seconds } / 36).rounded() / 100),
            "validation_utterances": .number(Double(validation.count)),
            "skipped_items": .number(Double(skipped)),
            "epochs_run": .number(Double(members.reduce(0) { $0 + $1.epochsRun })),
        ]
        if members.count > 1 {
            adaptation["kept"] = .string(keptRun.map { "run \($0 + 1) of \(members.count)" } ?? "the mean of \(members.count) runs")
            adaptation["run_best_epochs"] = .array(members.map { .number(Double($0.epoch)) })
            adaptation["run_validation_wer"] = .array(members.map { $0.score.map { .number($0.wer) } ?? .null })
        }
        if let keptRun { adaptation["best_epoch"] = .number(Double(members[keptRun].epoch)) }
        if let general = data.general, generalPerEpoch > 0 {
            adaptation["general"] = .string(general)
            adaptation["general_per_epoch"] = .number(Double(generalPerEpoch))
            if let generalSHA256 { adaptation["general_sha256"] = .string(generalSHA256) }
        }
        if let before { adaptation["before"] = before.provenance }
        if let after { adaptation["after"] = after.provenance }
        return [
            "trainer": .string("earshot adapt"),
            "date": .string(ISO8601DateFormatter().string(from: Date())),
            "base_model_sha256": .string(base.sha256 ?? "unknown"),
            "base_model": .string(basePath),
            "base_provenance": .object(base.description.provenance),
            "adaptation": .object(adaptation),
        ]
    }
}
