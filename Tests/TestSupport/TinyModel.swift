import Audio
import Foundation
import Model
import Training

/// One lock for every in-process training of the test process. Training changes OpenBLAS's
/// process-wide thread count around each batch (Training's BatchGradients), and results depend on
/// that count in the last bits, so two overlapping trainings could perturb each other; the exact
/// resume check (EndToEndTests) needs its runs undisturbed. All test targets share one process.
public let trainingLock = NSLock()

/// Builds a value once per test process, under a lock on first use, so that tests running in parallel
/// wait for the single build (a training) instead of each starting their own. A failed build is
/// remembered and rethrown to every later caller.
public final class BuiltOnce<Value: Sendable>: @unchecked Sendable {
    // `result` behind `lock`; the lock is held for the whole build.
    private let lock = NSLock()
    private var result: Result<Value, any Error>?
    private let build: @Sendable () throws -> Value

    public init(_ build: @escaping @Sendable () throws -> Value) { self.build = build }

    public func get() throws -> Value {
        lock.lock()
        defer { lock.unlock() }
        if result == nil { result = Result { try build() } }
        return try result!.get()
    }
}

/// A tiny CTC model trained in-process on espeak-ng words, shared by every test of the process, and
/// 16 kHz renderings of its words to build test streams from (RecognizerTests, AdaptationTests,
/// DaemonTests).
///
/// The recipe (`words`, `trainingVoices`, `trainingSpeeds`, `config`) is also the end-to-end tests':
/// 6 words x 4 voices x 2 speeds, 96 channels, 2 blocks, 300 steps, measured there to converge for
/// every seed 1-10 in about 10 s of a debug build. It is a model that really recognises words, which is
/// what endpointing needs: its blank-dominant frames in silence and non-blank frames in words are what
/// the session reads.
public struct TinyModel: Sendable {
    public static let words = ["yes", "no", "up", "down", "left", "right"]
    public static let trainingVoices = ["en", "en-us", "en-gb-scotland", "en-029"]
    public static let trainingSpeeds = [130, 170]

    /// Sized so that every seed measured (1 to 10) converges in 300 steps while training stays around
    /// 10 s in a debug build: with 64 channels some seeds stall in a local minimum (emitting a stray
    /// final 't' after 'yes' and 'no'), 96 channels and a 128-wide hidden layer do not.
    public static func config(manifest: URL, output: URL, seed: UInt64 = 1, subsampling: Int = 4) -> TrainConfig {
        var c = TrainConfig()
        c.model.subsampling = subsampling
        c.data.train = manifest.path
        c.data.valid = ""
        c.model.channels = 96
        c.model.blocks = 2
        c.model.kernel = 5
        c.model.hidden = 128
        c.optimizer.learningRate = 0.003
        c.optimizer.warmupSteps = 10
        c.optimizer.totalSteps = 300
        c.optimizer.batchSeconds = 8
        c.augment.speedProbability = 0
        c.augment.noiseProbability = 0
        c.augment.timeMasks = 0
        c.augment.frequencyMasks = 0
        c.run.output = output.path
        c.run.seed = seed
        c.run.logEverySteps = 100
        c.run.checkpointMinutes = 1000
        c.run.threads = 2
        return c
    }

    /// Milliseconds of silence put before the training renderings, in turn.
    static let leadingSilence = [0, 150, 350, 600, 250]

    public let trained: ModelFile
    /// Each word spoken by voice "en" at 170 wpm (a training rendering: these tests are about
    /// segmentation, not about generalising to new voices).
    public let spoken: [String: [Float]]
    public let trainingWallSeconds: Double

    /// The model of this test process, trained on first use. Later callers get the same one.
    /// `subsampling` 2 is the same recipe with 20 ms encoder frames (a second model, trained on first use).
    public static func shared(subsampling: Int = 4) throws -> TinyModel {
        try (subsampling == 2 ? twentyMsCache : cache).get()
    }
    private static let cache = BuiltOnce { try TinyModel.train() }
    private static let twentyMsCache = BuiltOnce { try TinyModel.train(subsampling: 2) }

    public static func train(subsampling: Int = 4) throws -> TinyModel {
        try withTemporaryDirectory("tinyModel") { dir in
            let corpus = dir.appendingPathComponent("corpus")
            try FileManager.default.createDirectory(at: corpus, withIntermediateDirectories: true)
            let renderings = words.flatMap { w in
                trainingVoices.flatMap { v in trainingSpeeds.map { Rendering(text: w, voice: v, speed: $0) } }
            }
            let files = try synthesize(renderings, into: corpus)
            var spoken: [String: [Float]] = [:]
            var padded: [URL] = []
            for (i, (url, r)) in zip(files, renderings).enumerated() {
                let samples = try AudioFile.read(path: url.path, targetSampleRate: 16000).samples
                if r.voice == "en" && r.speed == 170 { spoken[r.text] = samples }
                // espeak-ng starts speaking at the first sample; trained on that alone, the model learns
                // to expect the first letter right at the start of the input and drops it after any
                // leading silence, which is what every endpointed segment has.
                let lead = [Float](repeating: 0, count: leadingSilence[i % leadingSilence.count] * 16)
                let out = corpus.appendingPathComponent("padded-" + r.fileName)
                try AudioWriter.write(lead + samples, sampleRate: 16000, to: out.path)
                padded.append(out)
            }
            let manifest = corpus.appendingPathComponent("train.tsv")
            try writeManifest(zip(padded, renderings).map { ($0, $1.text) }, to: manifest)
            trainingLock.lock()
            defer { trainingLock.unlock() }
            let start = Date()
            let trainer = try Trainer(config: config(manifest: manifest, output: dir.appendingPathComponent("run"), subsampling: subsampling),
                                      log: { _ in })
            try trainer.run(shouldStop: { false }, progress: { _ in })
            let trained = try ModelFile.load(path: trainer.lastModelURL.path)
            return TinyModel(trained: trained, spoken: spoken, trainingWallSeconds: Date().timeIntervalSince(start))
        }
    }

    /// The word as spoken, with espeak-ng's own leading and trailing near-silence trimmed off, so a
    /// test controls every gap itself.
    public func word(_ w: String) -> [Float] {
        let s = spoken[w]!
        let first = s.firstIndex { abs($0) > 1e-3 } ?? 0
        let last = s.lastIndex { abs($0) > 1e-3 } ?? s.count - 1
        return Array(s[first...last])
    }
}
