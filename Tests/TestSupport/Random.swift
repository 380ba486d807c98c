import Foundation
import Tensors

/// The tests' seeded generator, so random choices (chunkings, noise, fuzz inputs) are the same on every
/// run and a failure reproduces: Tensors' SplitMix64, the generator the library itself uses.
public typealias SeededGenerator = SplitMix64

extension SplitMix64 {
    /// A generator whose state starts at `state` (the same stream as `init(seed:)`).
    public init(state: UInt64) { self.init(seed: state) }

    /// A standard normal draw (Box-Muller).
    public mutating func gaussian() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self), u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
