import Model
import Tensors

/// Why a model cannot be deepened.
public struct DeepenError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var reason: String
    public var description: String { "cannot deepen \(file): \(reason)" }
}

extension ModelFile {
    /// The model with `count` more residual blocks inserted between its own, each starting close to the
    /// identity, so that training can go on from what the model already knows with more capacity
    /// (progressive growing; Chen, Goodfellow & Shlens's Net2DeeperNet, 2016). Pre-training is the
    /// project's long pole: a deeper model trained on from the shipped one reuses hours of training
    /// that a fresh start would repeat.
    ///
    /// The new blocks copy the shape of the model's first residual block (depthwise conv, pointwise conv,
    /// LayerNorm, ReLU) with a causal depthwise conv (no look-ahead, so the model's latency is unchanged)
    /// and are spread evenly between the old ones (adding 6 to 12: one after every second old block). Convolutions start as a fresh model's do (`initialParameters`); the LayerNorm's gain
    /// starts at `gain` and its bias at 0, so each new block adds at most `relu(gain x z)` to the stream:
    /// at gain 0 the model computes exactly what it did (but the gain's gradient through ReLU at 0 is
    /// 0, so it would never learn), and a small gain keeps it close while every weight gets a gradient.
    /// Blocks are renamed "blocks.0" ... in order, their tensors with them; the feature statistics,
    /// frontend, vocabulary and domain decoding are kept, and provenance records the operation.
    public func deepened(by count: Int, gain: Float = 0.05, seed: UInt64 = 1, file: String = "<memory>") throws(DeepenError) -> ModelFile {
        func fail(_ reason: String) -> DeepenError { DeepenError(file: file, reason: reason) }
        guard (1...256).contains(count) else { throw fail("the number of blocks to add must be in 1...256, not \(count)") }
        let layers = description.architecture.layers
        let blockIndexes = layers.indices.filter { if case .residual = layers[$0] { return true } else { return false } }
        guard let firstBlock = blockIndexes.first, case .residual(_, let templateBody) = layers[firstBlock],
              templateBody.count == 4, case .conv1d(let depthwise) = templateBody[0], depthwise.groups == depthwise.inChannels,
              depthwise.inChannels == depthwise.outChannels, case .conv1d(let pointwise) = templateBody[1], pointwise.kernel == 1,
              case .layerNorm = templateBody[2], case .relu = templateBody[3]
        else { throw fail("it has no residual block of depthwise conv, pointwise conv, layernorm and relu to copy") }
        let channels = depthwise.inChannels
        for i in blockIndexes {
            guard case .residual(let name, let body) = layers[i] else { continue }
            guard body.count == 4, case .conv1d(let d) = body[0], d.inChannels == channels, d.outChannels == channels,
                  d.kernel == depthwise.kernel else {
                throw fail("its residual blocks differ in shape (\(name) is not like the first), so a new block has no one shape to copy")
            }
        }

        // Every residual layer becomes "blocks.<position>", its body's layers and tensors following;
        // other layers keep their names. Tensors that are neither the layers' nor the feature statistics
        // (a checkpoint's optimiser state) are left behind: they belong to the old shapes and names.
        var newLayers: [LayerSpec] = []
        var parameters: [String: Tensor] = [:]
        for name in [InputNormalization.meanName, InputNormalization.stdName] { parameters[name] = self.parameters[name] }
        var added: [LayerSpec] = []
        let existing = blockIndexes.count
        var oldSeen = 0, inserted = 0
        func append(_ body: [LayerSpec], from old: String) -> [LayerSpec] {
            let name = "blocks.\(oldSeen + inserted)"
            let renamed = body.map { $0.renamed(prefix: old, to: name) }
            newLayers.append(.residual(name: name, body: renamed))
            return renamed
        }
        for layer in layers {
            guard case .residual(let old, let body) = layer else {
                newLayers.append(layer)
                for p in layer.parameters {
                    guard let tensor = self.parameters[p.name] else { throw fail("tensor '\(p.name)' is missing") }
                    parameters[p.name] = tensor
                }
                continue
            }
            let renamedBody = append(body, from: old)
            oldSeen += 1
            for (p, q) in zip(layer.parameters, LayerSpec.parameters(of: renamedBody)) {
                guard let tensor = self.parameters[p.name] else { throw fail("tensor '\(p.name)' is missing") }
                parameters[q.name] = tensor
            }
            // Spread evenly: after the b-th old block, b x count / existing new ones in all.
            while inserted < oldSeen * count / existing {
                _ = append([
                    .conv1d(Conv1DSpec(name: "new.depthwise", inChannels: channels, outChannels: channels, kernel: depthwise.kernel,
                                       rightContext: 0, groups: channels)),
                    .conv1d(Conv1DSpec(name: "new.pointwise", inChannels: channels, outChannels: channels, kernel: 1)),
                    .layerNorm(LayerNormSpec(name: "new.norm", dim: channels)),
                    .relu,
                ], from: "new")
                inserted += 1
                added.append(newLayers.last!)
            }
        }
        var rng = SplitMix64(seed: seed)
        for (name, tensor) in initialParameters(added, using: &rng) {
            parameters[name] = name.hasSuffix(".norm.weight") ? Tensor(shape: tensor.shape, data: tensor.data.map { _ in gain }) : tensor
        }
        var description = self.description
        description.architecture = EncoderArchitecture(layers: newLayers, inputDim: description.architecture.inputDim,
                                                       frameDurationMs: description.architecture.frameDurationMs)
        description.provenance["best_valid_wer"] = nil
        // New blocks are new weights: a word-timing calibration of the original no longer applies.
        description.timing = nil
        description.provenance["timing_calibration"] = nil
        description.provenance["deepened_from"] = .string(sha256.map { "\(file) (sha256 \($0))" } ?? file)
        description.provenance["deepened_by"] = .string("\(count) blocks, gain \(gain), seed \(seed)")
        return ModelFile(description: description, parameters: parameters)
    }
}

extension LayerSpec {
    /// The layer with a name that starts with `prefix` (the whole name or up to a ".") starting with
    /// `replacement` instead, recursively.
    func renamed(prefix: String, to replacement: String) -> LayerSpec {
        func rename(_ name: String) -> String {
            if name == prefix { return replacement }
            if name.hasPrefix(prefix + ".") { return replacement + name.dropFirst(prefix.count) }
            return name
        }
        switch self {
        case .conv1d(var s): s.name = rename(s.name); return .conv1d(s)
        case .dense(var s): s.name = rename(s.name); return .dense(s)
        case .layerNorm(var s): s.name = rename(s.name); return .layerNorm(s)
        case .relu: return .relu
        case .residual(let name, let body):
            return .residual(name: rename(name), body: body.map { $0.renamed(prefix: prefix, to: replacement) })
        }
    }
}
