import Tensors

// The generator itself lives in Tensors (Features seeds its dither with it too); only its checkpoint
// form is Training's, because restoring it reports a `TrainingError`.
extension SplitMix64 {
    /// The state as a checkpoint tensor: four 16-bit pieces, least significant first, each exact in a `Float`.
    public var stateTensor: Tensor {
        Tensor(shape: [4], data: (0..<4).map { Float((state >> (16 * UInt64($0))) & 0xFFFF) })
    }

    /// Restores a generator saved with `stateTensor`.
    public init(stateTensor t: Tensor) throws(TrainingError) {
        guard t.shape == [4] else { throw .generatorState("expected shape [4], found \(t.shape)") }
        var s: UInt64 = 0
        for i in 0..<4 {
            let v = t.data[i]
            guard v >= 0 && v <= 65535 && v == v.rounded() else {
                throw .generatorState("piece \(i) is \(v), not an integer in 0...65535")
            }
            s |= UInt64(v) << (16 * UInt64(i))
        }
        self.init(seed: s)
    }
}
