import Audio
import Foundation
import Tensors
import Model
import Recognizer
import Scoring
import Testing
import TestSupport
import Training
@testable import Adaptation

/// Adapting a model that really recognises words (the in-test TinyModel: 6 words, 4 male espeak-ng
/// voices at pitch 50) to a voice it never heard.
@Suite(.serialized) struct RecognitionTests {
    /// A female variant at a high pitch: far from the training voices, so the base model stumbles.
    static let newVoice = "en-gb-x-rp+Annie"
    static let pitch = 90

    func write(_ renderings: [Rendering], into dir: URL, name: String) throws -> URL {
        let folder = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let files = try synthesize(renderings, into: folder)
        for (url, r) in zip(files, renderings) {
            try Data(r.text.utf8).write(to: url.deletingPathExtension().appendingPathExtension("txt"))
        }
        return folder
    }

    @Test func adaptingToANewVoiceLowersLossAndWER() throws {
        let tiny = try TinyModel.shared()
        try withTemporaryDirectory { dir in
            let basePath = dir.appendingPathComponent("tiny.safetensors").path
            try tiny.trained.save(path: basePath)
            let train = try write(TinyModel.words.flatMap { w in [115, 145, 180, 215].map { Rendering(text: w, voice: Self.newVoice, speed: $0, pitch: Self.pitch) } },
                                  into: dir, name: "train")
            let val = try write(TinyModel.words.flatMap { w in [130, 195].map { Rendering(text: w, voice: Self.newVoice, speed: $0, pitch: Self.pitch - 5) } },
                                into: dir, name: "val")
            var options = AdaptOptions()
            options.epochs = 25
            options.patience = 25
            options.learningRate = 3e-3
            options.batchSize = 6
            options.runs = 1  // the loss curve below is one run's
            let losses = Locked<[Int: Double]>([:])
            let result = try Adapter(baseModel: basePath, data: AdaptData(train: train.path, validation: val.path),
                                     cacheRoot: dir.appendingPathComponent("cache"), options: options)
                .run { event in
                    if case let .training(_, _, epoch, _, step, steps, loss) = event, step == steps { losses.withLock { $0[epoch] = loss } }
                }
            let before = try #require(result.before), after = try #require(result.after)
            print("tiny model, new voice: WER \(before.wer)% -> \(after.wer)%, CER \(before.cer)% -> \(after.cer)%, loss \(before.loss) -> \(after.loss), best epoch \(result.bestEpoch)")
            #expect(before.wer >= 25, "the new voice should trouble the base model (else the test shows nothing)")
            #expect(after.wer < before.wer)
            #expect(after.loss < before.loss)
            let epochLoss = losses.current
            #expect(epochLoss[result.epochsRun]! < epochLoss[1]! * 0.7, "training loss by epoch: \(epochLoss.sorted { $0.key < $1.key })")

            // The adapted file recognises the validation audio as the adapter scored it.
            let adapted = dir.appendingPathComponent("adapted.safetensors").path
            try result.write(to: adapted)
            let recognizer = try Recognizer(modelPath: adapted)
            var pairs: [(String, String)] = []
            for r in TinyModel.words.flatMap({ w in [130, 195].map { Rendering(text: w, voice: Self.newVoice, speed: $0, pitch: Self.pitch - 5) } }) {
                let samples = try AudioFile.read(path: val.appendingPathComponent(r.fileName).path, targetSampleRate: 16000).samples
                pairs.append((r.text, recognizer.recognize(samples).transcript.text))
            }
            // Streaming recognition and the adapter's whole-utterance pass agree to rounding, so the text agrees.
            #expect(CorpusScore(pairs: pairs).wordErrorRatePercent == after.wer)
        }
    }
}
