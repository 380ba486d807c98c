import Tensors

/// A seedable random generator whose whole state is one `UInt64`, so a training run can save it in a
/// checkpoint and resume with exactly the same augmentation and shuffling sequence.
///
/// SplitMix64 (Steele, Lea & Flood, 2014): fast, passes BigCrush, and trivially serialisable. Not for
/// cryptography.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable, Codable {
    /// The complete generator state.
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

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
        state = s
    }
}
