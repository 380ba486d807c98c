import Decoding
import Features
import Foundation
import Model
@testable import Recognizer
import Tensors
import Testing
import TestSupport

/// A random-free model of any frontend geometry: every weight zero and the output bias favouring blank,
/// so every frame is confidently blank (never speech) whatever the audio. 8 channels, one block.
func blankModel(frontend: FrontendConfig) -> ModelFile {
    let architecture = BaseArchitecture.architecture(inputDim: frontend.melBins, channels: 8, blocks: 1, kernel: 2,
                                                     hidden: 8, vocabularySize: Vocabulary.earshot.count)
    var parameters: [String: Tensor] = [:]
    for (name, shape) in architecture.parameterShapes { parameters[name] = Tensor(zeros: shape) }
    parameters["head.output.bias"]!.data[0] = 10
    return ModelFile(description: ModelDescription(architecture: architecture, frontend: frontend, vocabulary: Vocabulary.earshot.tokens),
                     parameters: parameters)
}

@Suite struct RecognizerTests {
    /// Whether two transcripts agree: same text and word times (whole frames), confidences within
    /// 2e-4. Streaming and whole-utterance encoding compute the same float32 logits with differently
    /// blocked matrix products (EndToEndTests measured at most 1e-5 on logits up to 22); a confidence is
    /// exp(mean log peak posterior) and a log posterior moves by at most twice the largest logit change.
    static func mismatch(_ a: Transcript, _ b: Transcript) -> String? {
        guard a.text == b.text else { return "text '\(a.text)' != '\(b.text)'" }
        guard a.words.count == b.words.count else { return "\(a.words.count) words != \(b.words.count)" }
        for (x, y) in zip(a.words, b.words) {
            if x.text != y.text || x.start != y.start || x.end != y.end { return "word \(x) != \(y)" }
            if abs(x.confidence - y.confidence) > 2e-4 { return "confidence of \(x) != \(y)" }
        }
        return nil
    }

    /// Every word of the tiny model, twice, with pauses: about 13 s, several of `recognize`'s blocks.
    static func longSpeech(_ tiny: TinyModel) -> [Float] {
        let parts = (TinyModel.words + TinyModel.words.reversed()).map { [Float](repeating: 0, count: 11200) + tiny.word($0) }
        return parts.flatMap { $0 } + [Float](repeating: 0, count: 8000)
    }

    /// Frames and look-ahead size every stream's history: a damaged file whose geometry asks for
    /// seconds-long frames is refused at load, not by a stream allocating gigabytes.
    @Test func aModelWithFramesOfSecondsIsRefused() throws {
        var frontend = FrontendConfig()
        frontend.hopLength = 8000
        frontend.windowLength = 400
        #expect {
            _ = try Recognizer(model: blankModel(frontend: frontend), file: "huge.safetensors")
        } throws: { error in
            "\(error)".contains("huge.safetensors") && "\(error)".contains("not a speech model")
        }
    }

    @Test func perUtteranceNormalisedModelIsRefusedNamingTheFile() throws {
        var frontend = FrontendConfig()
        frontend.normalization = .perFeature
        let model = blankModel(frontend: frontend)
        do {
            _ = try Recognizer(model: model, file: "offline-only.safetensors")
            Issue.record("a perFeature model was accepted; its streams would crash")
        } catch {
            #expect(error.file == "offline-only.safetensors")
            #expect(error.description.contains("offline-only.safetensors") && error.description.contains("per-utterance normalisation is offline-only"),
                    "\(error)")
        }
        // The same model with per-feature normalisation off loads and streams.
        frontend.normalization = .none
        let fine = try Recognizer(model: blankModel(frontend: frontend))
        #expect(fine.recognize([Float](repeating: 0.01, count: 16000)).transcript.text.isEmpty)

        // And from a file, by its path.
        try withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("m.safetensors").path
            try model.save(path: path)
            #expect(throws: ModelError.self) { try Recognizer(modelPath: path) }
            do { _ = try Recognizer(modelPath: path) } catch { #expect("\(error)".hasPrefix(path), "\(error)") }
        }
    }

    /// `recognize` feeds long audio in bounded blocks (so no stage's buffers grow with the file), and
    /// gives what one push of everything, or any other chunking, gives.
    @Test func recognizeEqualsAnyChunkingAndPushesBoundedBlocks() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let samples = Self.longSpeech(tiny)
        let block = Int(Recognizer.recognizeBlockSeconds * Double(recognizer.sampleRate))
        try #require(samples.count > 3 * block, "the test audio must span several blocks")

        let (transcript, stream) = recognizer.recognizeReturningStream(samples)
        #expect(stream.largestPush <= block, "recognize pushed \(stream.largestPush) samples at once")
        // This model was trained on single words and never learnt the word separator, so the 12 words
        // (40 letters) come out as one run of letters; most of them must be there for the test to bite.
        #expect(transcript.text.count >= 30, "the model should hear most of the 12 words: '\(transcript.text)'")

        let whole = recognizer.makeStream()
        whole.accept(samples)
        let oneShot = whole.finish()
        #expect(whole.largestPush == samples.count)
        #expect(Self.mismatch(transcript, oneShot) == nil, "recognize vs one push: \(Self.mismatch(transcript, oneShot) ?? "")")

        var rng = SeededGenerator(state: 11)
        let chunked = recognizer.makeStream()
        var at = 0
        while at < samples.count {
            let end = min(samples.count, at + Int.random(in: 0...9000, using: &rng))
            chunked.accept(Array(samples[at..<end]))
            at = end
        }
        let random = chunked.finish()
        #expect(Self.mismatch(transcript, random) == nil, "recognize vs random chunks: \(Self.mismatch(transcript, random) ?? "")")
    }

    /// The streaming recogniser and training validation (`Trainer.validate`: offline frontend, whole
    /// utterance `Encoder.forward`, greedy decoding) must agree, or validation WER would not predict
    /// what users get.
    @Test(arguments: [4, 2]) func recognizeEqualsTheTrainingValidationPath(subsampling: Int) throws {
        let tiny = try TinyModel.shared(subsampling: subsampling)
        let recognizer = try Recognizer(model: tiny.trained)
        let frontend = try LogMelFrontend(config: recognizer.frontendConfig, mode: .offline)
        let encoder = try Encoder(model: tiny.trained)
        var heard = 0
        for samples in TinyModel.words.map({ tiny.word($0) }) + [Self.longSpeech(tiny)] {
            var decoder = GreedyDecoder(vocabulary: .earshot, frameDuration: recognizer.frameDuration)
            let offline = decoder.decode(encoder.forward(frontend.compute(samples)))
            let streamed = recognizer.recognize(samples).transcript
            #expect(Self.mismatch(streamed, offline) == nil, "\(Self.mismatch(streamed, offline) ?? "")")
            if !streamed.text.isEmpty { heard += 1 }
        }
        #expect(heard == TinyModel.words.count + 1, "the comparison needs non-empty transcripts")
    }

    @Test func emptyAndSubWindowInputGiveAnEmptyTranscript() throws {
        let tiny = try TinyModel.shared()
        let recognizer = try Recognizer(model: tiny.trained)
        let window = recognizer.frontendConfig.windowLength
        var rng = SeededGenerator(state: 5)
        for count in [0, 1, window / 2, window - 1] {
            let samples = (0..<count).map { _ in 0.1 * rng.gaussian() }
            let (transcript, timings) = recognizer.recognize(samples)
            #expect(transcript.text.isEmpty && transcript.words.isEmpty, "\(count) samples gave '\(transcript.text)'")
            #expect(timings.audioSeconds == Double(count) / 16000)
        }
        // A stream is reusable after an empty utterance.
        let stream = recognizer.makeStream()
        #expect(stream.finish().text.isEmpty)
        stream.accept(tiny.word("yes"))
        #expect(stream.finish().text == recognizer.recognize(tiny.word("yes")).transcript.text)
    }
}
