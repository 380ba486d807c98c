/// A seedable random generator whose whole state is one `UInt64`, so a training run can save it in a
/// checkpoint and resume with exactly the same augmentation and shuffling sequence, a frontend can
/// seed its dither, and tests can reproduce a failing random case.
///
/// SplitMix64 (Steele, Lea & Flood, 2014): fast, passes BigCrush, and trivially serialisable. Not for
/// cryptography.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable, Codable {
    /// The complete generator state.
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
