import Foundation
import Testing
import Tensors
@testable import Model

func smallModel(seed: UInt64 = 30) -> ModelFile {
    var rng = SeededRandom(seed: seed)
    let arch = EncoderArchitecture(layers: [
        .conv1d(Conv1DSpec(name: "conv", inChannels: 4, outChannels: 6, kernel: 3, stride: 2, rightContext: 1)),
        .layerNorm(LayerNormSpec(name: "norm", dim: 6)),
        .relu,
        .residual(name: "block", body: [
            .conv1d(Conv1DSpec(name: "block.dw", inChannels: 6, outChannels: 6, kernel: 3, rightContext: 1, groups: 6)),
        ]),
        .dense(DenseSpec(name: "out", inFeatures: 6, outFeatures: 5)),
    ], inputDim: 4)
    var params = randomParameters(arch, rng: &rng)
    params["frontend.mean"] = Tensor(shape: [4], data: rng.floats(4))
    params["frontend.std"] = Tensor(shape: [4], data: [1, 2, 3, 4])
    params["optimizer.conv.weight.m"] = Tensor(shape: [6, 4, 3], data: rng.floats(72))  // ignored extra
    return ModelFile(description: ModelDescription(
        architecture: arch, frontendJSON: #"{"melBins":4,"sampleRate":16000}"#,
        vocabulary: ["<blank>", " ", "a", "b", "'"],
        provenance: ["trained_by": .string("earshot 0.1"), "steps": .number(1200), "data": .object(["hours": .number(1.5)])],
        decodingJSON: #"{"lm_weight":0.5}"#), parameters: params)
}

/// Writes `model`'s tensors and (edited) metadata without validation, to make corrupt model files.
private func writeRaw(_ model: ModelFile, to path: String, edit: (inout [String: String]) -> Void = { _ in }) throws {
    var meta = model.metadata
    edit(&meta)
    try SafeTensors(tensors: model.parameters, metadata: meta).write(path: path)
}

@Suite struct ModelFileTests {
    /// A provenance nested deeper than JSON can be written (here 600 levels; Foundation's reader takes
    /// 512, its writer 511) is an error naming the key, not a trap, and nothing is written.
    @Test func aDescriptionJSONCannotWriteIsAnErrorNamingTheKey() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        var model = smallModel()
        var deep = JSONValue.object([:])
        for _ in 0..<600 { deep = .object(["a": deep]) }
        model.description.provenance = ["nested": deep]
        let path = dir.file("deep.earshot")
        #expect {
            try model.save(path: path)
        } throws: { error in
            guard case .malformedMetadata(let file, let key, _) = error as? ModelError else { return false }
            return file == path && key == "provenance"
        }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func saveThenLoadRestoresDescriptionAndParameters() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let model = smallModel()
        let path = dir.file("m.earshot")
        try model.save(path: path)
        let loaded = try ModelFile.load(path: path)
        #expect(loaded.description == model.description)
        #expect(loaded.parameters == model.parameters)
        #expect(loaded.sha256 == SHA256.hex(try readFile(path)))
        // The encoder ignores the extra tensor and gives identical outputs.
        var rng = SeededRandom(seed: 31)
        let x = rng.matrix(9, 4)
        #expect(try loaded.makeEncoder().forward(x) == model.makeEncoder().forward(x))
    }

    @Test func savingReplacesAtomicallyAndLeavesNoTemporaryFiles() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.file("m.earshot")
        try smallModel(seed: 1).save(path: path)
        try smallModel(seed: 2).save(path: path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["m.earshot"])
        #expect(try ModelFile.load(path: path).parameters == smallModel(seed: 2).parameters)
    }

    @Test func savingIntoAMissingDirectoryIsUnwritable() throws {
        let e = modelError { try smallModel().save(path: "/nonexistent-dir/m.earshot") }
        guard case .unwritable(let f, _) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(f == "/nonexistent-dir/m.earshot")
    }

    @Test func invalidModelIsNeverWritten() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        var model = smallModel()
        model.description.vocabulary.removeLast()
        let path = dir.file("bad.earshot")
        #expect(modelError { try model.save(path: path) } != nil)
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    // MARK: each corrupt model is a specific error naming the file

    private func loadError(_ name: String, model: ModelFile = smallModel(), edit: (inout [String: String]) -> Void = { _ in }) throws -> ModelError? {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.file(name)
        try writeRaw(model, to: path, edit: edit)
        let e = modelError { _ = try ModelFile.load(path: path) }
        if let e {
            #expect(e.file == path)
            #expect(e.description.contains(path))
        } else {
            Issue.record("\(name) loaded without error")
        }
        return e
    }

    /// A recording or a text file given where a model belongs is refused from its first bytes: a 5 GiB
    /// (sparse) WAV is not read, and not refused for its size, but as not being a safetensors file.
    @Test func aFileThatIsNotSafetensorsIsRefusedFromItsFirstBytes() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let wav = dir.file("talk.wav")
        try Data("RIFF\u{24}\u{0}\u{0}\u{0}WAVEfmt ".utf8).write(to: URL(fileURLWithPath: wav))
        #expect(truncate(wav, 5 << 30) == 0)
        do {
            _ = try ModelFile.load(path: wav)
            Issue.record("a WAV loaded as a model")
        } catch {
            guard case .truncated(let file, let reason) = error else { Issue.record("got \(error)"); return }
            #expect(file == wav && reason.contains("is this a safetensors file?"), "\(reason)")
        }
        let text = dir.file("notes.txt")
        try Data("hello there, this is not a model\n".utf8).write(to: URL(fileURLWithPath: text))
        do {
            _ = try ModelFile.load(path: text)
            Issue.record("a text file loaded as a model")
        } catch {
            guard case .truncated(_, let reason) = error, reason.contains("is this a safetensors file?") else { Issue.record("got \(error)"); return }
        }
    }

    @Test func decodingEntryMustBeAJSONObjectWithinTheSizeLimit() throws {
        for (name, value, reason) in [("array.earshot", "[1,2]", "not a JSON object"), ("text.earshot", "lm_weight=1", "not a JSON object")] {
            let e = try loadError(name) { $0["decoding"] = value }
            #expect(e == .malformedMetadata(file: e?.file ?? "", key: "decoding", reason: reason))
        }
        let big = #"{"arpa":""# + String(repeating: "a", count: ModelDescription.maximumDecodingJSONBytes) + #""}"#
        let e = try loadError("big.earshot") { $0["decoding"] = big }
        #expect(e?.description.contains("\(ModelDescription.maximumDecodingJSONBytes)-byte limit") == true, "\(e.map(\.description) ?? "")")
        // `summary` gives the entry's size, not its (possibly megabytes of) text.
        #expect(smallModel().summary().contains("decoding:      17 bytes of JSON"))
    }

    /// The word-timing correction travels in the file: absent stays nil, present comes back as written,
    /// and a value no model could need (over a second, or not a number) is refused naming the key.
    @Test func wordTimingRoundTripsAndImpossibleValuesAreRefused() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        #expect(smallModel().metadata["timing"] == nil)
        var model = smallModel()
        model.description.timing = WordTiming(startDelayMs: 160, endDelayMs: -20.5)
        try model.save(path: dir.file("timed.earshot"))
        let loaded = try ModelFile.load(path: dir.file("timed.earshot"))
        #expect(loaded.description.timing == WordTiming(startDelayMs: 160, endDelayMs: -20.5))
        #expect(loaded.metadata["timing"] == #"{"end_delay_ms":-20.5,"start_delay_ms":160}"#)
        #expect(loaded.summary().contains("word timing:   starts emitted 160 ms and ends -20 ms after the audio's"))
        #expect(smallModel().summary().contains("word timing:   not calibrated"))

        for (name, value, reason) in [
            ("late.earshot", #"{"start_delay_ms":1500,"end_delay_ms":0}"#, "start_delay_ms is 1500.0; it must be a number of milliseconds within ±1000"),
            ("early.earshot", #"{"start_delay_ms":0,"end_delay_ms":-1000.5}"#, "end_delay_ms is -1000.5; it must be a number of milliseconds within ±1000"),
        ] {
            let e = try loadError(name) { $0["timing"] = value }
            #expect(e == .malformedMetadata(file: e?.file ?? "", key: "timing", reason: reason))
        }
        let missing = try loadError("half.earshot") { $0["timing"] = #"{"start_delay_ms":10}"# }
        guard case .malformedMetadata(_, let key, _)? = missing else { Issue.record("got \(String(describing: missing))"); return }
        #expect(key == "timing")
        // A non-finite delay is never written.
        model.description.timing = WordTiming(startDelayMs: .nan, endDelayMs: 0)
        #expect(modelError { try model.save(path: dir.file("nan.earshot")) } != nil)
        #expect(!FileManager.default.fileExists(atPath: dir.file("nan.earshot")))
    }

    @Test func wrongParameterShapeIsNamed() throws {
        var model = smallModel()
        model.parameters["conv.weight"] = Tensor(zeros: [6, 4, 5])
        let e = try loadError("shape.earshot", model: model)
        #expect(e == .wrongShape(file: e?.file ?? "", name: "conv.weight", expected: [6, 4, 3], found: [6, 4, 5]))
    }

    @Test func missingParameterIsNamed() throws {
        var model = smallModel()
        model.parameters["block.dw.bias"] = nil
        let e = try loadError("missing.earshot", model: model)
        #expect(e == .missingParameter(file: e?.file ?? "", name: "block.dw.bias", expectedShape: [6]))
    }

    @Test func unknownLayerTypeIsNamed() throws {
        let e = try loadError("layer.earshot") { meta in
            meta["architecture"] = meta["architecture"]!.replacingOccurrences(of: #""type":"relu""#, with: #""type":"gelu""#)
        }
        #expect(e == .unknownLayerType(file: e?.file ?? "", type: "gelu"))
    }

    @Test func futureFormatVersionAsksToUpgrade() throws {
        let e = try loadError("future.earshot") { $0["format_version"] = "2" }
        #expect(e == .unsupportedFormatVersion(file: e?.file ?? "", found: "2", supported: 1))
        #expect(e?.description.contains("upgrade Earshot") == true)
    }

    @Test func nanWeightIsRejected() throws {
        var model = smallModel()
        model.parameters["out.weight"]!.data[7] = .nan
        let e = try loadError("nan.earshot", model: model)
        #expect(e == .nonFiniteParameter(file: e?.file ?? "", name: "out.weight", index: 7))
    }

    @Test func vocabularyThatDisagreesWithOutputSizeIsRejected() throws {
        var model = smallModel()
        model.description.vocabulary.append("c")
        let e = try loadError("vocab.earshot", model: model)
        #expect(e == .vocabularyMismatch(file: e?.file ?? "", vocabularySize: 6, outputSize: 5))
    }

    @Test func otherSafetensorsFileIsNotAModel() throws {
        let e = try loadError("other.earshot") { $0["format"] = "pt" }
        guard case .notAModel = e else { Issue.record("got \(String(describing: e))"); return }
    }

    @Test func layersThatDoNotChainAreRejected() throws {
        var model = smallModel()
        model.description.architecture.layers[3] = .residual(name: "block", body: [
            .conv1d(Conv1DSpec(name: "block.dw", inChannels: 6, outChannels: 6, kernel: 3, stride: 2, rightContext: 1, groups: 6)),
        ])
        model.parameters["block.dw.weight"] = Tensor(zeros: [6, 1, 3])
        let e = try loadError("chain.earshot", model: model)
        guard case .inconsistentArchitecture(_, let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("frame rate"))
    }

    @Test func malformedVocabularyIsNamed() throws {
        let e = try loadError("vocabjson.earshot") { $0["vocabulary"] = "{\"a\": 1}" }
        guard case .malformedMetadata(_, "vocabulary", _) = e else { Issue.record("got \(String(describing: e))"); return }
    }

    // MARK: architecture checks

    @Test func architectureValidationCatchesChannelAndGroupMistakes() {
        let bad: [[LayerSpec]] = [
            [.conv1d(Conv1DSpec(name: "a", inChannels: 3, outChannels: 4, kernel: 3))],                      // input is 2
            [.conv1d(Conv1DSpec(name: "a", inChannels: 2, outChannels: 4, kernel: 3, groups: 2))],           // groups neither 1 nor depthwise
            [.conv1d(Conv1DSpec(name: "a", inChannels: 2, outChannels: 2, kernel: 3, rightContext: 3))],     // context beyond kernel
            [.dense(DenseSpec(name: "a", inFeatures: 2, outFeatures: 3)), .layerNorm(LayerNormSpec(name: "n", dim: 2))],
            [.residual(name: "r", body: [.dense(DenseSpec(name: "a", inFeatures: 2, outFeatures: 3))])],  // changes channels
            [.dense(DenseSpec(name: "a", inFeatures: 2, outFeatures: 2)), .dense(DenseSpec(name: "a", inFeatures: 2, outFeatures: 2))],
            // Each size within its limit, but 16 384 x 256 values per output frame: gigabytes per block.
            [.dense(DenseSpec(name: "a", inFeatures: 2, outFeatures: 16384)), .conv1d(Conv1DSpec(name: "c", inChannels: 16384, outChannels: 1, kernel: 256))],
        ]
        for layers in bad {
            let e = modelError { try EncoderArchitecture(layers: layers, inputDim: 2).validate(file: "x.earshot") }
            guard case .inconsistentArchitecture("x.earshot", _) = e else { Issue.record("\(layers): got \(String(describing: e))"); continue }
        }
        var stored = EncoderArchitecture(layers: [.conv1d(Conv1DSpec(name: "a", inChannels: 2, outChannels: 2, kernel: 3, stride: 2))], inputDim: 2)
        #expect(stored.subsampling == 2)
        stored.subsampling = 4
        #expect(modelError { try stored.validate() } != nil)
    }

    @Test func architectureJSONRoundTripsWithSnakeCaseKeys() throws {
        let model = smallModel()
        let json = model.metadata["architecture"]!
        #expect(json.contains("\"input_dim\":4") && json.contains("\"subsampling\":2") && json.contains("\"frame_duration_ms\":10"))
        #expect(try JSONDecoder().decode(EncoderArchitecture.self, from: Data(json.utf8)) == model.description.architecture)
    }

    @Test func summaryReportsLayersParametersLookAheadVocabularyAndProvenance() throws {
        let model = smallModel()
        let s = model.summary()
        // conv 6*4*3+6, norm 12, depthwise 6*3+6, dense 6*5+5
        let count = 78 + 12 + 24 + 35
        #expect(model.parameterCount == count)
        #expect(s.contains("parameters:    \(count) (+ 1 extra tensors"))
        // look-ahead: conv 1 frame + depthwise 1 frame at stride 2 = 3 frames = 30 ms
        #expect(s.contains("look-ahead:    3 frames = 30 ms"))
        #expect(s.contains("5 tokens"))
        #expect(s.contains("trained_by: earshot 0.1"))
        #expect(s.contains("depthwise conv1d block.dw"))
    }
}
