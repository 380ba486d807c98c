#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

extension WindowFunction {
    /// The window's `length` coefficients, computed in double precision.
    /// Periodic windows are the first `length` points of the symmetric window of `length + 1`.
    public func coefficients(length: Int, periodic: Bool) -> [Float] {
        precondition(length >= 1, "window length \(length) must be at least 1")
        if length == 1 { return [1] }  // what scipy and torch return for one point, periodic or not
        let denominator = Double(periodic ? length : length - 1)
        return (0..<length).map { n in
            let x = 2 * Double.pi * Double(n) / denominator
            let w: Double = switch self {
            case .hann: 0.5 - 0.5 * cos(x)
            case .hamming: 0.54 - 0.46 * cos(x)
            case .povey: pow(0.5 - 0.5 * cos(x), 0.85)
            case .blackman: 0.42 - 0.5 * cos(x) + 0.08 * cos(2 * x)
            case .bartlett: 1 - abs(2 * Double(n) / denominator - 1)
            case .rectangular: 1
            }
            return Float(w)
        }
    }
}

extension MelScale {
    /// Hz to mel on this scale (librosa's `hz_to_mel(htk=)`).
    public func mel(hz f: Double) -> Double {
        switch self {
        case .htk:
            return 2595 * log10(1 + f / 700)
        case .slaney:
            let fSp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fSp, logStep = log(6.4) / 27
            return f >= minLogHz ? minLogMel + log(f / minLogHz) / logStep : f / fSp
        }
    }

    /// Mel on this scale to Hz (librosa's `mel_to_hz(htk=)`).
    public func hz(mel m: Double) -> Double {
        switch self {
        case .htk:
            return 700 * (pow(10, m / 2595) - 1)
        case .slaney:
            let fSp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fSp, logStep = log(6.4) / 27
            return m >= minLogMel ? minLogHz * exp(logStep * (m - minLogMel)) : fSp * m
        }
    }
}

/// The triangular mel filters of a frontend: dense weights for inspection and a sparse form
/// (each filter's nonzero bin range) for the per-frame projection.
///
/// With `melTriangles == .linearInHertz` the weights equal `librosa.filters.mel(sr, n_fft, n_mels,
/// fmin, fmax, htk=(scale == .htk), norm=(normalization == .slaney ? "slaney" : None))`; with
/// `.linearInMel` they equal Kaldi's `MelBanks` (computed in double precision here, float in Kaldi).
public struct MelFilterbank: Sendable, Equatable {
    /// melBins x (fftSize / 2 + 1), row-major: row `m` is filter `m` over the FFT bins.
    public let weights: Matrix
    /// First nonzero FFT bin of each filter (a filter with no nonzero bin has an empty range).
    public let firstBin: [Int]
    /// One past the last nonzero FFT bin of each filter.
    public let endBin: [Int]

    /// The filters of `config` (validated first).
    public init(config: FrontendConfig) throws(FrontendConfigError) {
        try config.validate()
        let bins = config.fftSize / 2 + 1
        let nMels = config.melBins
        let scale = config.melScale
        let fMin = Double(config.fMin), fMax = Double(config.effectiveFMax)
        let binHz = (0..<bins).map { Double($0) * Double(config.sampleRate) / Double(config.fftSize) }
        // n + 2 corner frequencies equally spaced in mel: filter m rises from corner m to m+1, falls to m+2.
        let melLo = scale.mel(hz: fMin), melHi = scale.mel(hz: fMax)
        let cornerMel = (0..<(nMels + 2)).map { melLo + (melHi - melLo) * Double($0) / Double(nMels + 1) }
        let cornerHz = cornerMel.map { scale.hz(mel: $0) }

        var w = [Double](repeating: 0, count: nMels * bins)
        for m in 0..<nMels {
            for k in 0..<bins {
                let value: Double
                switch config.melTriangles {
                case .linearInHertz:
                    let rise = (binHz[k] - cornerHz[m]) / (cornerHz[m + 1] - cornerHz[m])
                    let fall = (cornerHz[m + 2] - binHz[k]) / (cornerHz[m + 2] - cornerHz[m + 1])
                    value = max(0, min(rise, fall))
                case .linearInMel:
                    let mel = scale.mel(hz: binHz[k])
                    let rise = (mel - cornerMel[m]) / (cornerMel[m + 1] - cornerMel[m])
                    let fall = (cornerMel[m + 2] - mel) / (cornerMel[m + 2] - cornerMel[m + 1])
                    value = max(0, min(rise, fall))
                }
                w[m * bins + k] = value
            }
            if config.melNormalization == .slaney {
                let areaNorm = 2 / (cornerHz[m + 2] - cornerHz[m])
                for k in 0..<bins { w[m * bins + k] *= areaNorm }
            }
        }
        let dense = w.map { Float($0) }
        var first = [Int](), end = [Int]()
        for m in 0..<nMels {
            let row = dense[(m * bins)..<((m + 1) * bins)]
            if let lo = row.firstIndex(where: { $0 != 0 }), let hi = row.lastIndex(where: { $0 != 0 }) {
                first.append(lo - m * bins); end.append(hi - m * bins + 1)
            } else {
                first.append(0); end.append(0)
            }
        }
        weights = Matrix(rows: nMels, cols: bins, data: dense)
        firstBin = first
        endBin = end
    }

    /// The filters for explicit parameters, for comparison with `librosa.filters.mel` and Kaldi.
    public init(sampleRate: Int, fftSize: Int, melBins: Int, fMin: Float = 0, fMax: Float? = nil,
                scale: MelScale, normalization: MelNormalization,
                triangles: MelTriangles = .linearInHertz) throws(FrontendConfigError) {
        var c = FrontendConfig()
        c.sampleRate = sampleRate; c.fftSize = fftSize; c.windowLength = fftSize; c.melBins = melBins
        c.fMin = fMin; c.fMax = fMax; c.melScale = scale; c.melNormalization = normalization
        c.melTriangles = triangles
        try self.init(config: c)
    }
}
