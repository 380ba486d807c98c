#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

/// A seeded standard-normal generator (xoshiro256** + Box-Muller) owned by one frontend, so dither is
/// reproducible per stream and no global RNG is touched. Draws are consumed one per input sample, in
/// sample order, which makes the noise independent of how the input is chunked.
struct GaussianNoise {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    private var spare: Float = 0
    private var hasSpare = false

    init(seed: UInt64) {
        // SplitMix64 expands the seed into the four state words (xoshiro's recommended seeding).
        var seeder = SplitMix64(seed: seed)
        s0 = seeder.next(); s1 = seeder.next(); s2 = seeder.next(); s3 = seeder.next()
    }

    private mutating func nextUInt64() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in (0, 1]: never 0, so the logarithm below is finite.
    private mutating func nextUnit() -> Double {
        Double((nextUInt64() >> 11) + 1) * 0x1p-53
    }

    mutating func next() -> Float {
        if hasSpare {
            hasSpare = false
            return spare
        }
        let r = (-2 * log(nextUnit())).squareRoot()
        let theta = 2 * Double.pi * nextUnit()
        spare = Float(r * sin(theta))
        hasSpare = true
        return Float(r * cos(theta))
    }
}
