import Model
import Tensors

/// Fresh parameters for training from scratch, in the names and layouts `LayerSpec` documents.
///
/// Convolution and dense weights and biases are uniform in `±1/sqrt(fanIn)` (PyTorch's default for
/// `Conv1d`/`Linear`, fanIn = input channels per group x kernel), which keeps activation variance roughly
/// constant through the residual stack; LayerNorm starts as the identity (weight 1, bias 0). Drawn in
/// sorted name order, so a seed gives the same model whatever the dictionary order.
public func initialParameters(_ specs: [LayerSpec], using rng: inout some RandomNumberGenerator) -> [String: Tensor] {
    var shapes: [(name: String, shape: [Int], fanIn: Int)] = []
    func collect(_ layers: [LayerSpec]) {
        for layer in layers {
            switch layer {
            case .conv1d(let s):
                let fanIn = s.inChannels / max(s.groups, 1) * s.kernel
                shapes.append(("\(s.name).weight", [s.outChannels, s.inChannels / max(s.groups, 1), s.kernel], fanIn))
                if s.bias { shapes.append(("\(s.name).bias", [s.outChannels], fanIn)) }
            case .dense(let s):
                shapes.append(("\(s.name).weight", [s.outFeatures, s.inFeatures], s.inFeatures))
                if s.bias { shapes.append(("\(s.name).bias", [s.outFeatures], s.inFeatures)) }
            case .layerNorm(let s):
                shapes.append(("\(s.name).weight", [s.dim], 0))
                shapes.append(("\(s.name).bias", [s.dim], 0))
            case .relu: break
            case .residual(_, let body): collect(body)
            }
        }
    }
    collect(specs)
    var out: [String: Tensor] = [:]
    for (name, shape, fanIn) in shapes.sorted(by: { $0.name < $1.name }) {
        let count = shape.reduce(1, *)
        if fanIn == 0 {
            out[name] = Tensor(shape: shape, data: [Float](repeating: name.hasSuffix(".weight") ? 1 : 0, count: count))
        } else {
            let bound = 1 / Float(fanIn).squareRoot()
            out[name] = Tensor(shape: shape, data: (0..<count).map { _ in Float.random(in: -bound...bound, using: &rng) })
        }
    }
    return out
}
