import Foundation
import Testing
import TestSupport
import Tensors
import Features
@testable import Model

/// A valid model (2 inputs, 4 tokens) whose metadata the tests then corrupt.
private func tinyModel(vocabulary: [String] = ["<blank>", " ", "a", "b"]) -> ModelFile {
    var rng = SeededRandom(seed: 5)
    let arch = EncoderArchitecture(layers: [
        .conv1d(Conv1DSpec(name: "conv", inChannels: 2, outChannels: 3, kernel: 3, stride: 2, rightContext: 1)),
        .dense(DenseSpec(name: "out", inFeatures: 3, outFeatures: 4)),
    ], inputDim: 2)
    return ModelFile(description: ModelDescription(architecture: arch, frontend: FrontendConfig(melBins: 2), vocabulary: vocabulary),
                     parameters: randomParameters(arch, rng: &rng))
}

/// Writes `model` with its metadata edited and without validation, loads it and returns the error
/// (recording an issue when there is none or it does not name the file).
private func loadError(_ model: ModelFile = tinyModel(), edit: (inout [String: String]) -> Void = { _ in }) throws -> ModelError? {
    let dir = try TempDir(); defer { dir.cleanup() }
    let path = dir.file("corrupt.earshot")
    var meta = model.metadata
    edit(&meta)
    try SafeTensors(tensors: model.parameters, metadata: meta).write(path: path)
    let e = modelError { _ = try ModelFile.load(path: path) }
    if let e {
        #expect(e.file == path)
        #expect(e.description.contains(path))
    } else {
        Issue.record("the corrupt model loaded without error")
    }
    return e
}

/// The architecture JSON of `tinyModel` with the conv layer's `key` set to `value` (a JSON literal) and,
/// unless `keepSubsampling`, the stored subsampling removed so that decoding has to derive it.
private func architectureJSON(conv edits: [String: String], keepSubsampling: Bool = false) -> String {
    var fields = ["\"type\":\"conv1d\"", "\"name\":\"conv\"", "\"bias\":true", "\"groups\":1"]
    let defaults = ["inChannels": "2", "outChannels": "3", "kernel": "3", "stride": "2", "rightContext": "1"]
    for (k, v) in defaults.merging(edits, uniquingKeysWith: { $1 }).sorted(by: { $0.key < $1.key }) {
        fields.append("\"\(k)\":\(v)")
    }
    let conv = "{" + fields.joined(separator: ",") + "}"
    let second = "{\"type\":\"conv1d\",\"name\":\"conv2\",\"inChannels\":3,\"outChannels\":3,\"kernel\":3,\"stride\":\(edits["stride"] ?? "1"),\"rightContext\":0,\"groups\":1,\"bias\":true}"
    let dense = "{\"type\":\"dense\",\"name\":\"out\",\"inFeatures\":3,\"outFeatures\":4,\"bias\":true}"
    return "{\"input_dim\":2,\"frame_duration_ms\":10,\(keepSubsampling ? "\"subsampling\":2," : "")\"layers\":[\(conv),\(second),\(dense)]}"
}

@Suite struct CorruptModelTests {
    // MARK: vocabulary

    @Test func spaceAsTheBlankIsRefusedNamingTheFile() throws {
        let e = try loadError(tinyModel(vocabulary: [" ", "<blank>", "a", "b"]))
        guard case .malformedMetadata(_, "vocabulary", let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("blank"))
    }

    @Test func repeatedOrEmptyTokensAreRefused() throws {
        for vocabulary in [["<blank>", " ", "a", "a"], ["<blank>", "a", "", "b"], ["a", " ", "a", "b"]] {
            let e = try loadError(tinyModel(vocabulary: vocabulary))
            guard case .malformedMetadata(_, "vocabulary", _) = e else { Issue.record("\(vocabulary): got \(String(describing: e))"); continue }
        }
    }

    @Test func encoderForAnUnvalidatedModelChecksTheVocabulary() {
        // A recogniser built from a model in memory (never loaded) goes through `Encoder(model:)`.
        let e = modelError { _ = try Encoder(model: tinyModel(vocabulary: [" ", "x", "a", "b"]), file: "mem.earshot") }
        guard case .malformedMetadata("mem.earshot", "vocabulary", _) = e else { Issue.record("got \(String(describing: e))"); return }
    }

    // MARK: architecture sizes are bounded before any arithmetic

    @Test(arguments: [
        ["stride": "4611686018427387904"],        // 2^62 twice: the derived subsampling overflowed
        ["stride": "17"],
        ["kernel": "4611686018427387904", "rightContext": "0"],
        ["kernel": "257", "rightContext": "0"],
        ["kernel": "-4611686018427387904"],
        ["rightContext": "-4611686018427387904"],
        ["rightContext": "3"],
        ["outChannels": "16385"],
        ["outChannels": "4611686018427387904"],
    ])
    func oversizedConvolutionIsAnErrorNotATrap(edits: [String: String]) throws {
        let e = try loadError { $0["architecture"] = architectureJSON(conv: edits) }
        guard case .inconsistentArchitecture = e else { Issue.record("\(edits): got \(String(describing: e))"); return }
    }

    @Test func manyStridedLayersCannotOverflowTheSubsampling() throws {
        // 16 per layer is allowed, but 16 layers of it would be 2^64: the running product is bounded.
        var layers: [LayerSpec] = []
        for i in 0..<16 { layers.append(.conv1d(Conv1DSpec(name: "c\(i)", inChannels: 2, outChannels: 2, kernel: 1, stride: 16))) }
        let arch = EncoderArchitecture(layers: layers, inputDim: 2)
        let e = modelError { try arch.validate(file: "deep.earshot") }
        guard case .inconsistentArchitecture("deep.earshot", let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("subsampling"))
    }

    @Test func hugeInputDimensionIsRefused() throws {
        let e = modelError { try EncoderArchitecture(layers: [.relu], inputDim: 1 << 40).validate(file: "wide.earshot") }
        guard case .inconsistentArchitecture("wide.earshot", _) = e else { Issue.record("got \(String(describing: e))"); return }
    }

    // MARK: frame duration agrees with the frontend

    @Test func frameDurationThatDisagreesWithTheFrontendIsRefused() throws {
        let e = try loadError { meta in
            meta["architecture"] = meta["architecture"]!.replacingOccurrences(of: "\"frame_duration_ms\":10", with: "\"frame_duration_ms\":20")
        }
        guard case .malformedMetadata(_, "architecture", let reason) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(reason.contains("frame_duration_ms"))
    }

    @Test func frameDurationIsDerivedFromTheFrontend() throws {
        // Built from a typed frontend: set from its hop (80 samples at 16 kHz = 5 ms).
        var model = tinyModel()
        model.description = ModelDescription(architecture: model.description.architecture,
                                             frontend: FrontendConfig(hopLength: 80, melBins: 2),
                                             vocabulary: model.description.vocabulary)
        #expect(model.description.architecture.frameDurationMs == 5)
        #expect(model.summary().contains("look-ahead:    1 frames = 5 ms"))

        // Loaded from a file that omits it: derived too, not assumed to be 10 ms.
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.file("nodur.earshot")
        var meta = model.metadata
        meta["architecture"] = meta["architecture"]!.replacingOccurrences(of: "\"frame_duration_ms\":5,", with: "")
        #expect(!meta["architecture"]!.contains("frame_duration_ms"))
        try SafeTensors(tensors: model.parameters, metadata: meta).write(path: path)
        let loaded = try ModelFile.load(path: path)
        #expect(loaded.description.architecture.frameDurationMs == 5)
    }

    // MARK: special files

    @Test(.timeLimit(.minutes(1)))
    func namedPipeIsRefusedWithoutWaitingForAWriter() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.file("pipe.earshot")
        try #require(mkfifo(path, 0o600) == 0)
        let outcome = try returnsPromptly(unblocking: path) { modelError { _ = try ModelFile.load(path: path) } }
        #expect(outcome == .unreadable(file: path, reason: "not a regular file"))
    }

    // MARK: the one parameter naming scheme

    @Test func layerSpecParametersSpellTheDocumentedNamesShapesAndFanIns() {
        let layers: [LayerSpec] = [
            .conv1d(Conv1DSpec(name: "c", inChannels: 4, outChannels: 6, kernel: 3)),
            .residual(name: "r", body: [
                .conv1d(Conv1DSpec(name: "r.dw", inChannels: 6, outChannels: 6, kernel: 5, groups: 6, bias: false)),
                .layerNorm(LayerNormSpec(name: "r.n", dim: 6)),
                .relu,
            ]),
            .dense(DenseSpec(name: "d", inFeatures: 6, outFeatures: 2)),
        ]
        #expect(LayerSpec.parameters(of: layers) == [
            ParameterSpec(name: "c.weight", shape: [6, 4, 3], fanIn: 12),
            ParameterSpec(name: "c.bias", shape: [6], fanIn: 12),
            ParameterSpec(name: "r.dw.weight", shape: [6, 1, 5], fanIn: 5),
            ParameterSpec(name: "r.n.weight", shape: [6], fanIn: nil),
            ParameterSpec(name: "r.n.bias", shape: [6], fanIn: nil),
            ParameterSpec(name: "d.weight", shape: [2, 6], fanIn: 6),
            ParameterSpec(name: "d.bias", shape: [2], fanIn: 6),
        ])
        #expect(EncoderArchitecture(layers: layers, inputDim: 4).parameterShapes.map(\.name) == LayerSpec.parameters(of: layers).map(\.name))
    }
}
