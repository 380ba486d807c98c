import Audio
import Decoding
import Features
import Foundation
import Model
import Tensors
import TestSupport
import Training

/// A sine tone (with a little harmonic so the log-mels are not mostly the log guard), for items whose
/// content does not matter: discovery, validation, the cache.
func tone(seconds: Double, frequency: Double = 220, sampleRate: Int = 16000) -> [Float] {
    (0..<Int(seconds * Double(sampleRate))).map { i in
        let t = Double(i) / Double(sampleRate)
        return Float(0.3 * sin(2 * .pi * frequency * t) + 0.1 * sin(2 * .pi * 3 * frequency * t))
    }
}

/// Writes a tone to `dir/name` and, when `text` is given, its transcript beside it as `.txt`.
@discardableResult
func writeItem(_ dir: URL, _ name: String, seconds: Double = 1, frequency: Double = 220, text: String?) throws -> URL {
    let url = dir.appendingPathComponent(name)
    try AudioWriter.write(tone(seconds: seconds, frequency: frequency), sampleRate: 16000, to: url.path)
    if let text { try Data(text.utf8).write(to: url.deletingPathExtension().appendingPathExtension("txt")) }
    return url
}

/// A small untrained model in Earshot's base architecture (random weights from `seed`), saved to `path`:
/// enough for everything about adaptation that is not recognition quality, built in milliseconds.
@discardableResult
func writeRandomModel(to path: String, seed: UInt64 = 7) throws -> ModelFile {
    let frontend = FrontendConfig()
    let arch = BaseArchitecture.architecture(inputDim: frontend.melBins, channels: 24, blocks: 2, kernel: 3, hidden: 32,
                                             vocabularySize: Vocabulary.earshot.count, lookAheadBlocks: 1)
    var rng = SplitMix64(seed: seed)
    var parameters = initialParameters(arch.layers, using: &rng)
    // Log-mel levels of the tones are around -5..5; rough statistics keep the activations in range.
    parameters[InputNormalization.meanName] = Tensor(shape: [frontend.melBins], data: [Float](repeating: -8, count: frontend.melBins))
    parameters[InputNormalization.stdName] = Tensor(shape: [frontend.melBins], data: [Float](repeating: 4, count: frontend.melBins))
    let model = ModelFile(description: ModelDescription(architecture: arch, frontend: frontend, vocabulary: Vocabulary.earshot.tokens,
                                                         provenance: ["trainer": .string("test")]),
                          parameters: parameters)
    try model.save(path: path)
    return model
}

/// Runs the CLI (the build's `earshot`) with `arguments`; output goes to files in `scratch`, so a full
/// pipe cannot stall the child.
func runEarshot(_ arguments: [String], scratch: URL) throws -> ProcessResult {
    try runProcess(try earshotExecutable(), arguments, scratch: scratch)
}

/// Sets the modification time of every file in `folder` `days` days back: how the pruning tests make
/// cache entries and rehearsal sets look unused.
func backdateFiles(in folder: URL, days: Double = 50) throws {
    for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-days * 86_400)],
                                              ofItemAtPath: folder.appendingPathComponent(name).path)
    }
}

/// Two different random models in `dir` (a.safetensors seed 1, b.safetensors seed 2): two base models
/// whose caches must stay apart.
func twoRandomModels(in dir: URL) throws -> (a: String, b: String) {
    let a = dir.appendingPathComponent("a.safetensors").path, b = dir.appendingPathComponent("b.safetensors").path
    try writeRandomModel(to: a, seed: 1)
    try writeRandomModel(to: b, seed: 2)
    return (a, b)
}
