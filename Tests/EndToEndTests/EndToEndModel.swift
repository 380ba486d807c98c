import Audio
import Foundation
import Model
import Recognizer
import Scoring
import TestSupport
import Training

/// Audio with the text that was spoken, at the model's sample rate.
struct LabelledAudio: Sendable {
    var rendering: Rendering
    var samples: [Float]
    var text: String { rendering.text }
}

/// The end-to-end tests' tiny CTC model, trained in-process on a few espeak-ng words and two-word
/// phrases, shared by every test of the process. Its recipe (words, voices, speeds, training
/// configuration) is `TinyModel`'s; what differs is the phrases in the corpus (so the model learns the
/// word separator) and the held-out audio it is judged on.
///
/// Owns the trained and the untrained (step 0) model and the held-out audio. The training corpus is
/// synthesised into a temporary folder that is removed as soon as training ends; tests that need files
/// write the model (and audio) into their own temporary folders.
struct EndToEndModel: Sendable {
    static let words = TinyModel.words
    static let trainingVoices = TinyModel.trainingVoices
    static let trainingSpeeds = TinyModel.trainingSpeeds

    /// Two-word phrases, spoken with a pause, so the model learns the word separator.
    static let phrases = ["yes no", "up down", "left right", "no up", "down left", "right yes"]

    /// (6 words + 6 phrases) x 4 voices x 2 speeds = 96 utterances, all at espeak-ng's default pitch (50).
    static var trainingRenderings: [Rendering] {
        (words + phrases).flatMap { w in
            trainingVoices.flatMap { v in trainingSpeeds.map { Rendering(text: w, voice: v, speed: $0) } }
        }
    }

    /// Renderings training never saw: a speed between the training speeds at pitches 30 and 70 for
    /// the training voices, and two voices (Received Pronunciation, Lancaster) not used in training.
    static var heldOutRenderings: [Rendering] {
        words.flatMap { w in
            trainingVoices.flatMap { v in [30, 70].map { Rendering(text: w, voice: v, speed: 150, pitch: $0) } }
                + ["en-gb-x-rp", "en-gb-x-gbclan"].map { Rendering(text: w, voice: $0, speed: 150) }
        }
    }

    /// Held-out three-word utterances: indexes into `heldOutRenderings` joined with pauses (0.6 s,
    /// and 1.2 s, longer than any pause in training).
    static let heldOutSentences: [(parts: [Int], gap: Double)] = [
        ([0, 13, 26], 0.6), ([0, 13, 26], 1.2), ([10, 41, 22], 0.6), ([10, 41, 22], 1.2), ([35, 8, 57], 0.6), ([35, 8, 57], 1.2),
    ]

    /// The training seed: 1 unless EARSHOT_E2E_SEED says otherwise (to measure the WER spread).
    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["EARSHOT_E2E_SEED"].flatMap { UInt64($0) } ?? 1
    }

    let seed: UInt64
    let untrained: ModelFile
    let trained: ModelFile
    let heldOut: [LabelledAudio]
    let trainingWallSeconds: Double

    /// The model of this test process, trained on first use. Later callers get the same one.
    static func shared() throws -> EndToEndModel { try cache.get() }

    private static let cache = BuiltOnce { try EndToEndModel.train() }

    static func train() throws -> EndToEndModel {
        try withTemporaryDirectory("tinyModel") { dir in
            let corpus = dir.appendingPathComponent("corpus"), held = dir.appendingPathComponent("heldout")
            try FileManager.default.createDirectory(at: corpus, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: held, withIntermediateDirectories: true)
            let renderings = trainingRenderings
            let files = try synthesize(renderings, into: corpus)
            let manifest = corpus.appendingPathComponent("train.tsv")
            try writeManifest(zip(files, renderings).map { ($0, $1.text) }, to: manifest)

            let heldRenderings = heldOutRenderings
            let heldFiles = try synthesize(heldRenderings, into: held)
            var heldOut = try zip(heldFiles, heldRenderings).map { url, r in
                LabelledAudio(rendering: r, samples: try AudioFile.read(path: url.path, targetSampleRate: 16000).samples)
            }
            for (parts, gap) in heldOutSentences {
                let text = parts.map { heldOut[$0].text }.joined(separator: " ")
                heldOut.append(LabelledAudio(rendering: Rendering(text: text, voice: "sentence-gap\(gap)", speed: 150),
                                             samples: concatenate(parts.map { heldOut[$0].samples }, gap: gap)))
            }

            let seed = Self.seed
            trainingLock.lock()
            defer { trainingLock.unlock() }
            let start = Date()
            let trainer = try Trainer(config: TinyModel.config(manifest: manifest, output: dir.appendingPathComponent("run"), seed: seed),
                                      log: { _ in })
            // Step 0: random weights with the estimated feature statistics, the baseline that must fail.
            try trainer.saveCheckpoint()
            let untrained = try ModelFile.load(path: trainer.lastModelURL.path)
            try trainer.run(shouldStop: { false }, progress: { _ in })
            let trained = try ModelFile.load(path: trainer.lastModelURL.path)
            return EndToEndModel(seed: seed, untrained: untrained, trained: trained, heldOut: heldOut,
                                 trainingWallSeconds: Date().timeIntervalSince(start))
        }
    }
}

/// Greedy (or `options`) recognition of every utterance, scored as `earshot eval` scores.
func score(_ model: ModelFile, on set: [LabelledAudio], options: DecodingOptions = .greedy) throws -> (score: CorpusScore, hypotheses: [String]) {
    let recognizer = try Recognizer(model: model, options: options)
    let hyps = set.map { recognizer.recognize($0.samples).transcript.text }
    return (CorpusScore(pairs: zip(set, hyps).map { ($0.text, $1) }), hyps)
}

/// `parts` one after the other with `gap` seconds of silence between them (16 kHz).
func concatenate(_ parts: [[Float]], gap: Double) -> [Float] {
    let silence = [Float](repeating: 0, count: Int(gap * 16000))
    var out: [Float] = []
    for (i, p) in parts.enumerated() {
        if i > 0 { out += silence }
        out += p
    }
    return out
}
