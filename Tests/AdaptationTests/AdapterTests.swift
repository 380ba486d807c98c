import Audio
import Decoding
import Foundation
import Model
import Tensors
import Testing
import TestSupport
import Training
@testable import Adaptation

/// Six tone "utterances" with short texts: enough for the cache and the file handling, in milliseconds.
func writeToneData(_ dir: URL) throws -> URL {
    let data = dir.appendingPathComponent("data")
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    for (i, word) in ["up", "down", "left", "right", "yes", "no"].enumerated() {
        try writeItem(data, "\(word).wav", seconds: 0.6 + 0.1 * Double(i), frequency: 150 + 60 * Double(i), text: word)
    }
    return data
}

/// Two recordings unlike writeToneData's, as an explicit validation set.
func writeToneValidation(_ dir: URL) throws -> URL {
    let val = dir.appendingPathComponent("val")
    try FileManager.default.createDirectory(at: val, withIntermediateDirectories: true)
    try writeItem(val, "stop.wav", seconds: 0.8, frequency: 330, text: "stop")
    try writeItem(val, "go.wav", seconds: 0.7, frequency: 270, text: "go")
    return val
}

func quickOptions() -> AdaptOptions {
    var o = AdaptOptions()
    o.epochs = 2
    o.valFraction = 0
    o.batchSize = 3
    o.encoderBlocks = 0
    // One cache entry per recording, so the tests can count them (speed copies have their own test).
    o.speedFactors = [1]
    o.runs = 1
    return o
}

@Suite(.serialized) struct AdapterTests {
    @Test func activationsAreCachedReusedAndRecomputedWhenModelOrAudioChange() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            let (modelA, modelB) = try twoRandomModels(in: dir)
            let cache = dir.appendingPathComponent("cache")
            func run(_ model: String, layers: Int = 2) throws -> AdaptResult {
                var o = quickOptions(); o.layers = layers
                return try Adapter(baseModel: model, data: AdaptData(train: data.path), cacheRoot: cache, options: o).run()
            }
            let first = try run(modelA)
            #expect((first.cacheHits, first.cacheMisses) == (0, 6))
            let second = try run(modelA)
            #expect((second.cacheHits, second.cacheMisses) == (6, 0))
            #expect(second.cacheDirectory == first.cacheDirectory)
            // Same activations read back: the adapted models are identical.
            #expect(second.model.parameters == first.model.parameters)

            // A changed recording (new content, size and time) is recomputed; the others are not.
            try writeItem(data, "up.wav", seconds: 0.9, frequency: 500, text: "up")
            let third = try run(modelA)
            #expect((third.cacheHits, third.cacheMisses) == (5, 1))
            #expect(third.dataSHA256 != second.dataSHA256)

            // Another base model, or another cut, reads another cache.
            let other = try run(modelB)
            #expect((other.cacheHits, other.cacheMisses) == (0, 6))
            #expect(other.cacheDirectory != first.cacheDirectory)
            let deeper = try run(modelA, layers: 3)
            #expect((deeper.cacheHits, deeper.cacheMisses) == (0, 6))

            // A damaged entry is recomputed, not trusted.
            let entry = try #require(ActivationCache(root: cache, modelSHA256: ModelFile.load(path: modelA).sha256!, cut: first.model.description.architecture.layers.count - 3)
                .entryURL(for: data.appendingPathComponent("down.wav").path))
            let bytes = try Data(contentsOf: entry)
            try bytes.prefix(bytes.count - 4).write(to: entry)
            let repaired = try run(modelA)
            #expect((repaired.cacheHits, repaired.cacheMisses) == (5, 1))

            // Entries that another build computed differently (an upgrade that changed the frontend or the
            // encoder: same file hash, other numbers) are all recomputed, and the result is as if fresh.
            let folder = repaired.cacheDirectory
            for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".act") {
                let url = folder.appendingPathComponent(name)
                var entry = try #require(ActivationCache.load(url))
                entry.activations = Matrix(rows: entry.activations.rows, cols: entry.activations.cols,
                                           data: entry.activations.data.map { $0 * 1.01 + 0.05 })
                try ActivationCache.store(entry, to: url)
            }
            // An entry of another data set in the same folder (stale too) goes with them.
            let foreign = folder.appendingPathComponent(String(repeating: "a", count: 40) + ".act")
            try FileManager.default.copyItem(at: folder.appendingPathComponent(try #require(
                FileManager.default.contentsOfDirectory(atPath: folder.path).first { $0.hasSuffix(".act") })), to: foreign)
            let upgraded = try run(modelA)
            #expect((upgraded.cacheHits, upgraded.cacheMisses) == (0, 6))
            #expect(!FileManager.default.fileExists(atPath: foreign.path))
            #expect(upgraded.model.parameters == repaired.model.parameters)
            let after = try run(modelA)
            #expect((after.cacheHits, after.cacheMisses) == (6, 0))
        }
    }

    /// Quiet items are raised to the trained level before the frontend, as `earshot transcribe` raises
    /// them: two copies of one recording 40 and 48 dB down cache the same activations, and the copy
    /// at full level (above `RecordingLevel.quietBelow`) stays as it is.
    @Test func quietItemsAreLevelledAsTranscribeLevelsThem() throws {
        try withTemporaryDirectory { dir in
            let data = dir.appendingPathComponent("data"), val = dir.appendingPathComponent("val")
            for folder in [data, val] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
            let samples = tone(seconds: 0.9, frequency: 300)
            for (name, factor) in [("loud", Float(1)), ("soft", 0.01), ("softer", 0.004)] {
                let url = data.appendingPathComponent("\(name).wav")
                try AudioWriter.write(samples.map { $0 * factor }, sampleRate: 16000, to: url.path, format: .wavFloat)
                try Data("up".utf8).write(to: url.deletingPathExtension().appendingPathExtension("txt"))
            }
            try writeItem(val, "go.wav", seconds: 0.7, frequency: 270, text: "go")
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model, seed: 3)
            let adapter = try Adapter(baseModel: model, data: AdaptData(train: data.path, validation: val.path),
                                      cacheRoot: dir.appendingPathComponent("cache"), options: quickOptions())
            _ = try adapter.run()
            func activations(_ name: String) throws -> Matrix {
                let url = try #require(adapter.cache.entryURL(for: data.appendingPathComponent("\(name).wav").path))
                return try #require(ActivationCache.load(url)).activations
            }
            let loud = try activations("loud"), soft = try activations("soft"), softer = try activations("softer")
            func largestDifference(_ a: Matrix, _ b: Matrix) -> Float { zip(a.data, b.data).map { abs($0 - $1) }.max()! }
            #expect(soft.rows == softer.rows && largestDifference(soft, softer) < 1e-3)
            #expect(loud.rows == soft.rows && largestDifference(loud, soft) > 0.05)
        }
    }

    @Test func speedPerturbedCopiesAreCachedForTrainingItemsOnly() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            // An explicit validation set: which recordings train is then fixed, not a hash of temp paths.
            let val = dir.appendingPathComponent("val")
            try FileManager.default.createDirectory(at: val, withIntermediateDirectories: true)
            try writeItem(val, "stop.wav", seconds: 0.8, frequency: 330, text: "stop")
            try writeItem(val, "go.wav", seconds: 0.7, frequency: 270, text: "go")
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model, seed: 3)
            let cache = dir.appendingPathComponent("cache")
            var o = quickOptions()
            o.speedFactors = [0.9, 1, 1.1]
            let adapter = try Adapter(baseModel: model, data: AdaptData(train: data.path, validation: val.path), cacheRoot: cache, options: o)
            let result = try adapter.run()
            // 6 training recordings x 3 speeds + 2 validation recordings as recorded.
            #expect((result.trainUtterances, result.validationUtterances) == (6, 2))
            #expect((result.cacheHits, result.cacheMisses) == (0, 20))
            let again = try Adapter(baseModel: model, data: AdaptData(train: data.path, validation: val.path), cacheRoot: cache, options: o).run()
            #expect((again.cacheHits, again.cacheMisses) == (20, 0))
            #expect(again.model.parameters == result.model.parameters)

            // A copy at 1.1 has about 1/1.1 of the frames of the recording; the unperturbed key is unchanged.
            let audio = data.appendingPathComponent("right.wav").path
            let plain = try #require(adapter.cache.entryURL(for: audio))
            #expect(plain == adapter.cache.entryURL(for: audio, speed: 1))
            let p = try #require(ActivationCache.load(plain))
            let fastURL = try #require(adapter.cache.entryURL(for: audio, speed: 1.1))
            let slowURL = try #require(adapter.cache.entryURL(for: audio, speed: 0.9))
            let f = try #require(ActivationCache.load(fastURL))
            let s = try #require(ActivationCache.load(slowURL))
            #expect(abs(Double(f.activations.rows) - Double(p.activations.rows) / 1.1) <= 2)
            #expect(abs(Double(s.activations.rows) - Double(p.activations.rows) / 0.9) <= 2)
            #expect(f.activations != p.activations)
            #expect(f.audioSHA256 == p.audioSHA256)
            // Validation recordings get no copies.
            #expect(adapter.cache.entryURL(for: val.appendingPathComponent("go.wav").path, speed: 1.1).map { ActivationCache.load($0) == nil } == true)
            guard case .object(let a)? = result.model.description.provenance["adaptation"], case .object(let opts)? = a["options"] else {
                Issue.record("no adaptation options in the provenance"); return
            }
            #expect(opts["speed_factors"] == .array([.number(0.9), .number(1), .number(1.1)]))

            // Without 1 among the factors only the copies are trained on, so the result differs from
            // training on the recordings and one copy.
            o.speedFactors = [0.9]
            let copiesOnly = try Adapter(baseModel: model, data: AdaptData(train: data.path, validation: val.path), cacheRoot: cache, options: o).run()
            #expect((copiesOnly.cacheHits, copiesOnly.cacheMisses) == (14, 0))
            o.speedFactors = [0.9, 1]
            let withOriginals = try Adapter(baseModel: model, data: AdaptData(train: data.path, validation: val.path), cacheRoot: cache, options: o).run()
            #expect(copiesOnly.model.parameters != withOriginals.model.parameters)
        }
    }

    @Test func pruningRemovesOnlyEntriesNoRunHasReadForTheGivenAge() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            let (modelA, modelB) = try twoRandomModels(in: dir)
            let cache = dir.appendingPathComponent("cache")
            let a = try Adapter(baseModel: modelA, data: AdaptData(train: data.path), cacheRoot: cache, options: quickOptions()).run()
            let b = try Adapter(baseModel: modelB, data: AdaptData(train: data.path), cacheRoot: cache, options: quickOptions()).run()
            // Strangers' folders under the cache root are never touched, even with a README, even when
            // named like a cache folder.
            let stranger = cache.appendingPathComponent("mine"), lookalike = cache.appendingPathComponent(String(repeating: "ab", count: 16))
            for folder in [stranger, lookalike] {
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try Data("my notes\n".utf8).write(to: folder.appendingPathComponent("README"))
                try Data("x".utf8).write(to: folder.appendingPathComponent("notes.act"))
                try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-50 * 86_400)],
                                                      ofItemAtPath: folder.appendingPathComponent("notes.act").path)
            }

            // Nothing is old yet; the temporary file of an interrupted write goes whatever its age (no run
            // writes while prune holds the lock), and an entry-like name that is not 40 hex digits counts as one.
            let temporary = a.cacheDirectory.appendingPathComponent(".0123.act.nosync1a2b")
            try Data(repeating: 7, count: 100).write(to: temporary)
            var fresh = ActivationCache.PruneReport()
            fresh.temporaries = 1; fresh.bytes = 100
            #expect(ActivationCache.prune(root: cache, olderThan: 86_400) == fresh)
            #expect(!FileManager.default.fileExists(atPath: temporary.path))
            #expect(ActivationCache.prune(root: cache, olderThan: 86_400) == .init())
            // Fifty days on (file times set back): model A's next run reads its entries (hits renew them);
            // model B's stay stale.
            try backdateFiles(in: a.cacheDirectory); try backdateFiles(in: b.cacheDirectory)
            let again = try Adapter(baseModel: modelA, data: AdaptData(train: data.path), cacheRoot: cache, options: quickOptions()).run()
            #expect((again.cacheHits, again.cacheMisses) == (6, 0))
            let report = ActivationCache.prune(root: cache, olderThan: 30 * 86_400)
            #expect(report.entries == 6 && report.folders == 1 && report.bytes > 0)
            #expect(!FileManager.default.fileExists(atPath: b.cacheDirectory.path))
            #expect(try FileManager.default.contentsOfDirectory(atPath: a.cacheDirectory.path).count == 7)
            #expect(FileManager.default.fileExists(atPath: stranger.appendingPathComponent("notes.act").path))
            #expect(FileManager.default.fileExists(atPath: lookalike.appendingPathComponent("notes.act").path))

            // Nothing is pruned while a run holds the cache.
            try backdateFiles(in: a.cacheDirectory)
            do {
                let holder = try #require(ActivationCache.Lock(root: cache, exclusive: false))
                #expect(ActivationCache.prune(root: cache, olderThan: 30 * 86_400).busy)
                withExtendedLifetime(holder) {}
            }
            #expect(ActivationCache.prune(root: cache, olderThan: 30 * 86_400).entries == 6)
        }
    }

    @Test func speedFactorsAreChecked() {
        for bad in [[], [0.3], [1, 1], [2.5]] as [[Double]] {
            var o = AdaptOptions(); o.speedFactors = bad
            #expect(throws: AdaptError.self) { try o.validate() }
        }
    }

    @Test func cacheEntriesRoundTripExactly() throws {
        try withTemporaryDirectory { dir in
            var rng = SplitMix64(seed: 5)
            let m = Matrix(rows: 7, cols: 3, data: (0..<21).map { _ in Float.random(in: -3...3, using: &rng) })
            let hash = SHA256.hex(Array("abc".utf8))
            let url = dir.appendingPathComponent("x.act")
            try ActivationCache.store(CachedActivations(activations: m, audioSHA256: hash), to: url)
            #expect(ActivationCache.load(url) == CachedActivations(activations: m, audioSHA256: hash))
            try Data("EARSHACT garbage".utf8).write(to: url)
            #expect(ActivationCache.load(url) == nil)
            // A header whose sizes multiply past Int.max (rows = cols = 2^32 - 1) is not an entry either.
            try ActivationCache.store(CachedActivations(activations: m, audioSHA256: hash), to: url)
            var bytes = [UInt8](try Data(contentsOf: url))
            for i in 12..<20 { bytes[i] = 0xFF }
            try Data(bytes).write(to: url)
            #expect(ActivationCache.load(url) == nil)
        }
    }

    @Test func frozenLayersStayBitIdenticalAndTheOutputRecordsItsProvenance() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            let basePath = dir.appendingPathComponent("base.safetensors").path
            try writeRandomModel(to: basePath)
            var calibrated = try ModelFile.load(path: basePath)
            calibrated.description.timing = WordTiming(startDelayMs: 150, endDelayMs: 60)
            try calibrated.save(path: basePath)
            let base = try ModelFile.load(path: basePath)
            var options = quickOptions()
            options.encoderBlocks = 1
            let adapter = try Adapter(baseModel: basePath, data: AdaptData(train: data.path, validation: try writeToneValidation(dir).path),
                                      cacheRoot: dir.appendingPathComponent("cache"), options: options)
            let result = try adapter.run()
            let outDir = dir.appendingPathComponent("out")
            try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
            let out = outDir.appendingPathComponent("adapted.safetensors").path
            try result.write(to: out)
            #expect(try FileManager.default.contentsOfDirectory(atPath: outDir.path) == ["adapted.safetensors"])

            let adapted = try ModelFile.load(path: out)
            let trained = adapter.split.headParameters.union(adapter.split.encoderParameters)
            #expect(adapter.split.trainedLayers == ["head.output", "head.hidden", "blocks.1"])
            #expect(trained.contains("blocks.1.pointwise.weight") && !trained.contains("blocks.0.pointwise.weight"))
            #expect(Set(adapted.parameters.keys) == Set(base.parameters.keys))
            for (name, tensor) in base.parameters where !trained.contains(name) {
                #expect(adapted.parameters[name]!.data.map(\.bitPattern) == tensor.data.map(\.bitPattern), "\(name) changed")
            }
            // With an explicit validation set the best epoch may be the base itself; then nothing moved.
            if result.bestEpoch > 0 {
                #expect(trained.contains { adapted.parameters[$0] != base.parameters[$0] })
            }

            let p = adapted.description.provenance
            #expect(p["trainer"] == .string("earshot adapt"))
            #expect(p["base_model_sha256"] == .string(base.sha256!))
            #expect(p["date"] != nil)
            #expect(p["base_provenance"] == .object(["trainer": .string("test")]))
            // The base's word-timing correction is kept, and said to be inherited.
            #expect(adapted.description.timing == WordTiming(startDelayMs: 150, endDelayMs: 60))
            #expect(p["timing_calibration"] == .string("inherited from the base model, not measured on the adapted weights (earshot model calibrate)"))
            guard case .object(let a)? = p["adaptation"] else { Issue.record("no adaptation record: \(p)"); return }
            #expect(a["data_sha256"] == .string(result.dataSHA256))
            #expect(a["train_utterances"] == .number(6))
            #expect(a["validation_utterances"] == .number(2))
            guard case .object(let o)? = a["options"], case .object(let before)? = a["before"], case .object(let after)? = a["after"] else {
                Issue.record("adaptation record incomplete: \(a)"); return
            }
            #expect(o["encoder_blocks"] == .number(1))
            #expect(before["wer"] != nil && after["wer"] != nil)
            #expect(a["trained_layers"] == .array([.string("head.output"), .string("head.hidden"), .string("blocks.1")]))
        }
    }

    /// Tone data, a random base model and an empty folder for general data, in `dir`.
    func toneDataBaseAndGeneralFolder(_ dir: URL) throws -> (data: URL, base: String, general: URL) {
        let data = try writeToneData(dir)
        let basePath = dir.appendingPathComponent("base.safetensors").path
        try writeRandomModel(to: basePath)
        let general = dir.appendingPathComponent("general")
        try FileManager.default.createDirectory(at: general, withIntermediateDirectories: true)
        return (data, basePath, general)
    }

    /// Adapts on `data` with half of each epoch from the general `manifest`.
    func adaptWithGeneral(_ dir: URL, data: URL, base: String, manifest: URL) throws -> AdaptResult {
        var options = quickOptions()
        options.generalShare = 0.5
        let adapter = try Adapter(baseModel: base, data: AdaptData(train: data.path, general: manifest.path),
                                  cacheRoot: dir.appendingPathComponent("cache"), options: options)
        return try adapter.run()
    }

    /// The general utterances mixed in are recorded by content: a different corpus at the same path gives
    /// a different `general_sha256`, with the domain data's hash unchanged.
    @Test func generalDataIsInTheProvenanceByContent() throws {
        try withTemporaryDirectory { dir in
            let (data, basePath, general) = try toneDataBaseAndGeneralFolder(dir)
            let manifest = general.appendingPathComponent("general.tsv")
            func record(_ texts: [String]) throws -> (data: JSONValue?, general: JSONValue?, path: JSONValue?) {
                var lines = ""
                for (i, text) in texts.enumerated() {
                    let audio = try writeItem(general, "g\(i).wav", seconds: 0.7, frequency: 500 + 40 * Double(i), text: nil)
                    lines += "\(audio.path)\t\(text)\n"
                }
                try lines.write(to: manifest, atomically: true, encoding: .utf8)
                let result = try adaptWithGeneral(dir, data: data, base: basePath, manifest: manifest)
                guard case .object(let a)? = result.model.description.provenance["adaptation"] else { return (nil, nil, nil) }
                return (a["data_sha256"], a["general_sha256"], a["general"])
            }
            let first = try record(["go", "stop", "wait", "jump"])
            let second = try record(["go", "stop", "wait", "run"])
            #expect(first.path == .string(manifest.path) && second.path == first.path)
            #expect(first.data != nil && second.data == first.data)
            guard case .string(let a)? = first.general, case .string(let b)? = second.general else {
                Issue.record("no general_sha256: \(String(describing: first.general))"); return
            }
            #expect(a.count == 64 && b.count == 64 && a != b)
        }
    }

    /// General recordings whose headers pass but whose audio does not decode (FLACs cut short) drop out
    /// at caching; the epochs are then planned with the general items left, not the count drawn (which
    /// ran a batch's range past the end of the epoch's list and trapped).
    @Test func generalItemsLostAtCachingShrinkTheEpochs() throws {
        try withTemporaryDirectory { dir in
            let (data, basePath, general) = try toneDataBaseAndGeneralFolder(dir)
            var lines = ""
            for i in 0..<6 {
                let path = general.appendingPathComponent("g\(i).flac").path
                try AudioWriter.write(tone(seconds: 1.5, frequency: 400 + 50 * Double(i)), sampleRate: 16000, to: path, format: .flac)
                if i >= 2 {
                    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
                    try bytes.prefix(bytes.count / 3).write(to: URL(fileURLWithPath: path))
                }
                lines += "\(path)\tgo\n"
            }
            let manifest = general.appendingPathComponent("general.tsv")
            try lines.write(to: manifest, atomically: true, encoding: .utf8)
            let result = try adaptWithGeneral(dir, data: data, base: basePath, manifest: manifest)
            guard case .object(let a)? = result.model.description.provenance["adaptation"] else { Issue.record("no record"); return }
            #expect(a["general_per_epoch"] == .number(2))
            #expect(result.skipped.filter { $0.path.hasSuffix(".flac") }.count == 4, "\(result.skipped)")
        }
    }

    @Test func anchorKeepsTheTrainedWeightsNearerTheBase() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            let basePath = dir.appendingPathComponent("base.safetensors").path
            try writeRandomModel(to: basePath)
            let base = try ModelFile.load(path: basePath)
            // Squared distance of the trained layers from the base after the same run with pull `anchor`.
            func drift(anchor: Float) throws -> Double {
                var options = quickOptions()
                options.valFraction = 0  // no validation: the last epoch is kept, so the runs compare like for like
                options.anchor = anchor
                let adapter = try Adapter(baseModel: basePath, data: AdaptData(train: data.path),
                                          cacheRoot: dir.appendingPathComponent("cache"), options: options)
                let adapted = try adapter.run().model
                var sum = 0.0
                for name in adapter.split.headParameters {
                    for (a, b) in zip(adapted.parameters[name]!.data, base.parameters[name]!.data) { sum += Double((a - b) * (a - b)) }
                }
                return sum
            }
            let free = try drift(anchor: 0), held = try drift(anchor: 1000)
            #expect(free > 0)
            #expect(held < free / 4, "drift with anchor 1000: \(held), without: \(free)")
        }
    }

    @Test func severalRunsKeepTheMeanOfRunsWithSuccessiveSeeds() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            let basePath = dir.appendingPathComponent("base.safetensors").path
            try writeRandomModel(to: basePath)
            func adapt(seed: UInt64, runs: Int) throws -> (result: AdaptResult, heads: Set<String>) {
                var options = quickOptions()  // no validation split: each run keeps its last epoch
                options.seed = seed
                options.runs = runs
                let adapter = try Adapter(baseModel: basePath, data: AdaptData(train: data.path),
                                          cacheRoot: dir.appendingPathComponent("cache"), options: options)
                return (try adapter.run(), adapter.split.headParameters)
            }
            let (soup, heads) = try adapt(seed: 5, runs: 3)
            let singles = try [5, 6, 7].map { try adapt(seed: UInt64($0), runs: 1).result.model }
            #expect(soup.runs == 3 && soup.epochsRun == 6)
            guard case .object(let adaptation)? = soup.model.description.provenance["adaptation"],
                  case .object(let recorded)? = adaptation["options"] else { Issue.record("no adaptation provenance"); return }
            #expect(recorded["runs"] == .number(3))
            #expect(!heads.isEmpty)
            for name in heads {
                let members = singles.map { $0.parameters[name]!.data }
                #expect(members[0] != members[1], "the seeds should give different runs (\(name))")
                for (i, x) in soup.model.parameters[name]!.data.enumerated() {
                    let mean = (members[0][i] + members[1][i] + members[2][i]) / 3
                    #expect(abs(x - mean) <= 1e-5 * max(1, abs(mean)), "\(name)[\(i)]: \(x), mean of the runs \(mean)")
                    if abs(x - mean) > 1e-5 * max(1, abs(mean)) { return }
                }
            }
            #expect(soup.keptRun == nil)

            // With a validation set: the mean is kept unless it validates worse than every run; the
            // provenance says which, with each run's score; the frozen layers stay the base's.
            var options = quickOptions()
            options.runs = 3
            options.epochs = 3
            let adapter = try Adapter(baseModel: basePath, data: AdaptData(train: data.path, validation: try writeToneValidation(dir).path),
                                      cacheRoot: dir.appendingPathComponent("cache"), options: options)
            let validated = try adapter.run()
            let base = try ModelFile.load(path: basePath)
            let trained = adapter.split.headParameters.union(adapter.split.encoderParameters)
            for (name, t) in base.parameters where !trained.contains(name) { #expect(validated.model.parameters[name] == t, "\(name) is frozen") }
            guard case .object(let a)? = validated.model.description.provenance["adaptation"],
                  case .array(let wers)? = a["run_validation_wer"], case .string(let kept)? = a["kept"] else {
                Issue.record("no per-run provenance"); return
            }
            let runWER = wers.compactMap { if case .number(let x) = $0 { x } else { nil } }
            #expect(runWER.count == 3)
            let after = try #require(validated.after)
            if let k = validated.keptRun {
                #expect(kept == "run \(k + 1) of 3")
                #expect(after.wer > runWER.max()!, "a run is kept only when the mean is worse than each")
                #expect(after.wer == runWER[k] && runWER[k] == runWER.min()!)
                #expect(a["best_epoch"] != nil)
            } else {
                #expect(kept == "the mean of 3 runs")
                #expect(after.wer <= runWER.max()! + 1e-9)
                #expect(a["best_epoch"] == nil, "no one epoch made a mean")
            }

            var bad = AdaptOptions(); bad.runs = 0
            #expect(throws: AdaptError.option(name: "--runs 0", reason: "must be in 1...32")) { try bad.validate() }
        }
    }

    @Test func optionsOutOfRangeAreRefusedNamingTheFlag() throws {
        try withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model)
            // The model has 2 dense layers, 2 blocks, 2 front convs and 2 front norms: 8.
            #expect(throws: AdaptError.option(name: "--layers 3 --encoder-blocks 6", reason: "the model has only 8 parameterised layers; together they may name at most that many")) {
                _ = try LayerSplit(architecture: ModelFile.load(path: model).description.architecture, layers: 3, encoderBlocks: 6)
            }
            // The default trains every residual block below the dense layers.
            let arch = try ModelFile.load(path: model).description.architecture
            #expect(try LayerSplit(architecture: arch, layers: 2, encoderBlocks: nil).trainedLayers == ["head.output", "head.hidden", "blocks.1", "blocks.0"])
            #expect(try LayerSplit(architecture: arch, layers: 1, encoderBlocks: nil).trainedLayers == ["head.output"])
            var o = AdaptOptions(); o.valFraction = 1
            #expect(throws: AdaptError.self) { try o.validate() }
            #expect(throws: AdaptError.self) {
                _ = try Adapter(baseModel: dir.appendingPathComponent("none").path, data: AdaptData(train: dir.path),
                                cacheRoot: dir, options: AdaptOptions())
            }
            // Data whose every item is unusable: an error, after naming each item.
            try writeItem(dir, "n.wav", text: "42")
            let lines = Locked<[String]>([])
            #expect(throws: AdaptError.self) {
                _ = try Adapter(baseModel: model, data: AdaptData(train: dir.path), cacheRoot: dir.appendingPathComponent("c"),
                                options: AdaptOptions(), log: { line in lines.withLock { $0.append(line) } }).run()
            }
            #expect(lines.current.contains { $0.contains("n.wav") && $0.contains("'4' '2'") })
        }
    }

    /// Validation recordings that are also training data (--val inside --data, or the same audio under
    /// another name) would score the model on what it trained on: they are used for validation only,
    /// and the log says so.
    @Test func recordingsInBothSetsAreUsedForValidationOnly() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            // --val inside --data (the folder walk is recursive), and one of them again under another name.
            let val = try writeToneValidation(data)
            try FileManager.default.copyItem(at: val.appendingPathComponent("go.wav"), to: data.appendingPathComponent("go-again.wav"))
            try Data("go".utf8).write(to: data.appendingPathComponent("go-again.txt"))
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model, seed: 3)
            let lines = Locked<[String]>([])
            let result = try Adapter(baseModel: model, data: AdaptData(train: data.path, validation: val.path),
                                     cacheRoot: dir.appendingPathComponent("cache"), options: quickOptions(),
                                     log: { line in lines.withLock { $0.append(line) } }).run()
            #expect((result.trainUtterances, result.validationUtterances) == (6, 2))
            #expect(lines.withLock { $0 }.contains { $0.hasPrefix("3 training recordings are also in validation") }, "\(lines.withLock { $0 })")
        }
    }

    /// General speech keeps its share of what is left to train on once recordings also in validation
    /// are removed: 6 training recordings at a share of 0.5 get 6 general ones an epoch, not the 8 that
    /// the 8 found under --data would.
    @Test func generalShareFollowsTheTrainingLeftAfterOverlap() throws {
        try withTemporaryDirectory { dir in
            let (data, base, general) = try toneDataBaseAndGeneralFolder(dir)
            let val = try writeToneValidation(data)
            var lines = ""
            for i in 0..<10 {
                let audio = try writeItem(general, "g\(i).wav", seconds: 0.7, frequency: 500 + 40 * Double(i), text: nil)
                lines += "\(audio.path)\tgo\n"
            }
            let manifest = general.appendingPathComponent("general.tsv")
            try lines.write(to: manifest, atomically: true, encoding: .utf8)
            var options = quickOptions()
            options.generalShare = 0.5
            let result = try Adapter(baseModel: base, data: AdaptData(train: data.path, validation: val.path, general: manifest.path),
                                     cacheRoot: dir.appendingPathComponent("cache"), options: options).run()
            #expect((result.trainUtterances, result.validationUtterances) == (6, 2))
            guard case .object(let a)? = result.model.description.provenance["adaptation"] else {
                Issue.record("no adaptation provenance"); return
            }
            #expect(a["general_per_epoch"] == .number(6))
        }
    }

    /// --val naming the training folder itself leaves nothing to train on: the error says why, rather
    /// than "no usable items".
    @Test func validationThatIsAllTheTrainingDataIsExplained() throws {
        try withTemporaryDirectory { dir in
            let data = try writeToneData(dir)
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model, seed: 3)
            #expect {
                _ = try Adapter(baseModel: model, data: AdaptData(train: data.path, validation: data.path),
                                cacheRoot: dir.appendingPathComponent("cache"), options: quickOptions()).run()
            } throws: { error in
                "\(error)".contains("also in --val")
            }
        }
    }

    /// Nothing checks a run without validation against the base model, and the unattended workflow would
    /// serve its result: a single recording (nothing to hold out) or a --val with nothing usable is refused,
    /// naming the way out; --val-fraction 0 asks for it explicitly.
    @Test func adaptingWithoutValidationNeedsToBeAskedFor() throws {
        try withTemporaryDirectory { dir in
            let one = dir.appendingPathComponent("one")
            try FileManager.default.createDirectory(at: one, withIntermediateDirectories: true)
            try writeItem(one, "up.wav", seconds: 0.6, frequency: 150, text: "up")
            let model = dir.appendingPathComponent("m.safetensors").path
            try writeRandomModel(to: model, seed: 3)
            var options = quickOptions()
            options.valFraction = 0.1
            #expect {
                _ = try Adapter(baseModel: model, data: AdaptData(train: one.path), cacheRoot: dir.appendingPathComponent("cache"), options: options).run()
            } throws: { error in
                "\(error)".contains("cannot spare one for validation") && "\(error)".contains("--val-fraction 0")
            }
            let empty = dir.appendingPathComponent("empty-val")
            try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
            try Data("RIFF not audio".utf8).write(to: empty.appendingPathComponent("bad.wav"))
            try Data("bad".utf8).write(to: empty.appendingPathComponent("bad.txt"))
            #expect {
                _ = try Adapter(baseModel: model, data: AdaptData(train: try writeToneData(dir).path, validation: empty.path),
                                cacheRoot: dir.appendingPathComponent("cache"), options: quickOptions()).run()
            } throws: { error in
                "\(error)".contains("--val gave no usable recordings")
            }
            // Both refused before any caching: nothing was computed for a run that cannot happen.
            #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("cache").path))
            options.valFraction = 0
            let result = try Adapter(baseModel: model, data: AdaptData(train: one.path), cacheRoot: dir.appendingPathComponent("cache"), options: options).run()
            #expect(result.before == nil && result.trainUtterances == 1)
        }
    }
}
