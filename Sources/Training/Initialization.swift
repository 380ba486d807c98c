import Model
import Tensors

/// Fresh parameters for training from scratch, in the names and layouts `LayerSpec` documents.
///
/// Convolution and dense weights and biases are uniform in `±1/sqrt(fanIn)` (PyTorch's default for
/// `Conv1d`/`Linear`, fanIn = input channels per group x kernel), which keeps activation variance roughly
/// constant through the residual stack; LayerNorm starts as the identity (weight 1, bias 0). Drawn in
/// sorted name order, so a seed gives the same model whatever the dictionary order.
public func initialParameters(_ specs: [LayerSpec], using rng: inout some RandomNumberGenerator) -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for p in LayerSpec.parameters(of: specs).sorted(by: { $0.name < $1.name }) {
        if let fanIn = p.fanIn {
            let bound = 1 / Float(fanIn).squareRoot()
            out[p.name] = Tensor(shape: p.shape, data: (0..<p.count).map { _ in Float.random(in: -bound...bound, using: &rng) })
        } else {
            out[p.name] = Tensor(shape: p.shape, data: [Float](repeating: p.name.hasSuffix(".weight") ? 1 : 0, count: p.count))
        }
    }
    return out
}
