#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFFTW
import Tensors

/// The log-mel frontend of one audio stream: it owns the FFTW plan, every per-frame buffer (allocated
/// once in `init`), the samples still needed by frames not yet computed, the pre-emphasis and dither
/// state, and the frames computed but not yet pulled.
///
/// Streaming and offline use are the same object: `accept` any number of samples (0 included) as they
/// come, `pullFrames` whatever is finished, `finish` at the end of input (it emits the tail frames that
/// centre padding produces), `reset` to start a new utterance. `compute` is all of that in one call.
/// Because every per-sample transform runs in sample order and every frame is computed by the same code
/// from the same samples, streaming yields bit-for-bit the frames of `compute` whatever the chunking
/// (dither included: its noise is drawn once per sample, in sample order, from the instance's seeded
/// generator).
///
/// Frame `t` covers samples `t * hopLength ..< t * hopLength + windowLength` (`center == false`), or is
/// centred on sample `t * hopLength` (`center == true`); see `FrontendConfig.frameCount(samples:)` for
/// how many frames a signal gives (non-centred: none for input shorter than a window). With `center`,
/// a frame is released once its window's last sample has arrived: about `windowLength / 2` samples after
/// its centre.
///
/// Not thread-safe: use one instance per stream, from one thread at a time.
public final class LogMelFrontend {
    /// How the frontend will be driven; a streaming frontend refuses per-utterance normalisation.
    public enum Mode: Sendable {
        /// Frames are wanted while audio still arrives.
        case streaming
        /// Frames are only needed after `finish` (`compute`); with `.perFeature` normalisation
        /// `pullFrames` returns nothing until `finish`.
        case offline
    }

    public let config: FrontendConfig
    public let normalizationStatistics: FeatureNormalization?
    public let mode: Mode
    public let ditherSeed: UInt64
    /// Frames per second of audio.
    public var framesPerSecond: Double { config.framesPerSecond }
    /// Input samples accepted since the last `reset`.
    public private(set) var samplesAccepted = 0
    /// Frames computed since the last `reset` (pulled or not).
    public private(set) var framesComputed = 0
    public private(set) var isFinished = false

    /// Frames a complete signal of `samples` samples gives under `config`.
    public static func frameCount(samples: Int, config: FrontendConfig) -> Int {
        config.frameCount(samples: samples)
    }

    // Geometry, in the "padded stream": the input preceded (and, at finish, followed) by `edgePad` zeros
    // when centring. Frame t occupies padded samples t*hop ..< t*hop + frameSpan; its window starts
    // `windowOffset` into that span (torch.stft's placement of a short window inside n_fft).
    private let melBins: Int
    private let bins: Int
    private let edgePad: Int
    private let frameSpan: Int
    private let windowOffset: Int

    // Padded-stream samples bufferStart ..< bufferStart + bufferCount, already scaled, dithered and
    // (signal-scope) pre-emphasised. Capacity: one frame span plus a block, so a chunk of any size is
    // consumed block by block with no allocation.
    private let buffer: UnsafeMutableBufferPointer<Float>
    private var bufferStart = 0
    private var bufferCount = 0
    private var previousSample: Float = 0
    private var noise: GaussianNoise

    // Per-frame scratch, each sized once.
    private let window: UnsafeMutableBufferPointer<Float>       // windowLength coefficients
    private let scratch: UnsafeMutableBufferPointer<Float>      // windowLength samples (DC / frame pre-emphasis)
    private let fftIn: UnsafeMutablePointer<Float>              // fftSize reals, 64-byte aligned
    private let fftOut: UnsafeMutablePointer<Float>             // (fftSize/2 + 1) interleaved (re, im)
    private let spectrum: UnsafeMutableBufferPointer<Float>     // fftSize/2 + 1 values |X|^power
    private let melOut: UnsafeMutableBufferPointer<Float>       // melBins values of the current frame
    private let plan: OpaquePointer

    // Sparse mel filters: filter m has weights melWeights[melOffset[m] ..< melOffset[m] + melEnd[m] - melFirst[m]]
    // for FFT bins melFirst[m] ..< melEnd[m].
    private let melWeights: [Float]
    private let melOffset: [Int]
    private let melFirst: [Int]
    private let melEnd: [Int]
    private let normMean: [Float]
    private let normStd: [Float]

    /// Frames computed and not yet pulled: frames x melBins, row-major.
    private var pending: [Float] = []

    /// A frontend for `config`; `normalization` supplies the statistics `config.normalization == .global`
    /// needs (and must be nil otherwise); `ditherSeed` seeds the dither noise (re-applied by `reset`).
    public init(config: FrontendConfig, normalization: FeatureNormalization? = nil,
                mode: Mode = .streaming, ditherSeed: UInt64 = 0) throws(FrontendConfigError) {
        try config.validate(streaming: mode == .streaming)
        switch (config.normalization, normalization) {
        case (.global, nil):
            throw .invalidField("normalization", reason: "is global but no mean/std statistics were supplied (the model file should carry them)")
        case (.global, let stats?):
            guard stats.mean.count == config.melBins, stats.std.count == config.melBins else {
                throw .invalidField("normalization", reason: "statistics have \(stats.mean.count) means and \(stats.std.count) standard deviations; melBins is \(config.melBins)")
            }
            if let i = stats.mean.firstIndex(where: { !$0.isFinite }) {
                throw .invalidField("normalization", reason: "mean[\(i)] is \(stats.mean[i]); every mean must be finite")
            }
            if let i = stats.std.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
                throw .invalidField("normalization", reason: "std[\(i)] is \(stats.std[i]); every standard deviation must be positive and finite")
            }
        case (_, .some):
            throw .invalidField("normalization", reason: "is \(config.normalization.rawValue), but mean/std statistics were supplied; set it to global to use them")
        case (_, nil):
            break
        }
        let filters = try MelFilterbank(config: config)

        self.config = config
        self.normalizationStatistics = normalization
        self.mode = mode
        self.ditherSeed = ditherSeed
        noise = GaussianNoise(seed: ditherSeed)
        melBins = config.melBins
        bins = config.fftSize / 2 + 1
        if config.center {
            edgePad = config.fftSize / 2
            frameSpan = config.fftSize
            windowOffset = (config.fftSize - config.windowLength) / 2
        } else {
            edgePad = 0
            frameSpan = config.windowLength
            windowOffset = 0
        }
        buffer = .allocate(capacity: frameSpan + max(4096, config.fftSize, 4 * config.hopLength))
        window = .allocate(capacity: config.windowLength)
        _ = window.initialize(from: config.window.coefficients(length: config.windowLength, periodic: config.periodicWindow))
        scratch = .allocate(capacity: config.windowLength)
        fftIn = UnsafeMutableRawPointer.allocate(byteCount: config.fftSize * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: config.fftSize)
        fftIn.initialize(repeating: 0, count: config.fftSize)
        fftOut = UnsafeMutableRawPointer.allocate(byteCount: bins * 8, alignment: 64)
            .bindMemory(to: Float.self, capacity: 2 * bins)
        fftOut.initialize(repeating: 0, count: 2 * bins)
        spectrum = .allocate(capacity: bins)
        spectrum.initialize(repeating: 0)
        melOut = .allocate(capacity: config.melBins)
        melOut.initialize(repeating: 0)
        plan = FFTWPlanner.shared.makeRealForwardPlan(
            n: config.fftSize, input: fftIn,
            output: UnsafeMutableRawPointer(fftOut).assumingMemoryBound(to: fftwf_complex.self))

        var weights = [Float](), offsets = [Int]()
        for m in 0..<config.melBins {
            offsets.append(weights.count)
            for k in filters.firstBin[m]..<filters.endBin[m] { weights.append(filters.weights[m, k]) }
        }
        melWeights = weights
        melOffset = offsets
        melFirst = filters.firstBin
        melEnd = filters.endBin
        normMean = normalization?.mean ?? []
        normStd = normalization?.std ?? []
        pending.reserveCapacity(config.melBins * 128)
        startUtterance()
    }

    deinit {
        FFTWPlanner.shared.destroy(plan)
        buffer.deallocate()
        window.deallocate()
        scratch.deallocate()
        UnsafeMutableRawPointer(fftIn).deallocate()
        UnsafeMutableRawPointer(fftOut).deallocate()
        spectrum.deallocate()
        melOut.deallocate()
    }

    /// Forgets all input and pending frames and re-seeds the dither: the next sample starts a new utterance.
    public func reset() {
        pending.removeAll(keepingCapacity: true)
        startUtterance()
    }

    private func startUtterance() {
        bufferStart = 0
        bufferCount = 0
        previousSample = 0
        noise = GaussianNoise(seed: ditherSeed)
        samplesAccepted = 0
        framesComputed = 0
        isFinished = false
        // The leading centre padding: zeros that no per-sample transform touches (NeMo pads after
        // dither and pre-emphasis).
        for i in 0..<edgePad { buffer[i] = 0 }
        bufferCount = edgePad
    }

    /// Appends samples (any count, 0 included) and computes every frame they complete.
    /// Calling it after `finish` without `reset` is a programming error.
    public func accept(_ samples: UnsafeBufferPointer<Float>) {
        precondition(!isFinished, "LogMelFrontend.accept after finish(); call reset() to start a new utterance")
        guard let source = samples.baseAddress, samples.count > 0 else { return }
        let scale = config.sampleScale
        let dither = config.dither
        let preemphasis: Float = config.preemphasisScope == .signal ? (config.preemphasis ?? 0) : 0
        var consumed = 0
        while consumed < samples.count {
            discardConsumedSamples()
            let take = min(buffer.count - bufferCount, samples.count - consumed)
            let out = buffer.baseAddress! + bufferCount
            let input = source + consumed
            // One loop per combination keeps the common case (no dither) free of the RNG call.
            if dither > 0 {
                var previous = previousSample
                for i in 0..<take {
                    let x = input[i] * scale + dither * noise.next()
                    out[i] = x - preemphasis * previous
                    previous = x
                }
                previousSample = previous
            } else {
                var previous = previousSample
                for i in 0..<take {
                    let x = input[i] * scale
                    out[i] = x - preemphasis * previous
                    previous = x
                }
                previousSample = previous
            }
            bufferCount += take
            consumed += take
            samplesAccepted += take
            computeReadyFrames()
        }
    }

    /// Appends samples (any count, 0 included) and computes every frame they complete.
    public func accept(_ samples: [Float]) {
        samples.withUnsafeBufferPointer { accept($0) }
    }

    /// Marks the end of input: appends the trailing centre padding, computes the last frames and, for
    /// `.perFeature`, normalises the utterance. Further calls do nothing until `reset`.
    public func finish() {
        guard !isFinished else { return }
        if edgePad > 0 && samplesAccepted > 0 {
            discardConsumedSamples()
            precondition(buffer.count - bufferCount >= edgePad, "frontend buffer too small for the tail padding")
            for i in 0..<edgePad { buffer[bufferCount + i] = 0 }
            bufferCount += edgePad
        }
        isFinished = true
        computeReadyFrames()
        if config.normalization == .perFeature { normalizePerFeature() }
    }

    /// Every frame computed since the last pull: rows are frames, columns mel bins.
    /// With `.perFeature` normalisation nothing is released before `finish`.
    public func pullFrames() -> Matrix {
        if config.normalization == .perFeature && !isFinished { return Matrix(rows: 0, cols: melBins) }
        let frames = Matrix(rows: pending.count / melBins, cols: melBins, data: pending)
        pending = []
        pending.reserveCapacity(melBins * 128)
        return frames
    }

    /// The frames of a whole signal: `reset`, `accept`, `finish`, `pullFrames`.
    public func compute(_ samples: [Float]) -> Matrix {
        reset()
        accept(samples)
        finish()
        return pullFrames()
    }

    // MARK: - Frames

    /// Drops buffered samples that no future frame reads, moving the rest to the front.
    private func discardConsumedSamples() {
        let nextWindowStart = framesComputed * config.hopLength + windowOffset
        let drop = min(bufferCount, nextWindowStart - bufferStart)
        guard drop > 0 else { return }
        let base = buffer.baseAddress!
        (base).update(from: base + drop, count: bufferCount - drop)
        bufferStart += drop
        bufferCount -= drop
    }

    private func computeReadyFrames() {
        let hop = config.hopLength
        let available = bufferStart + bufferCount
        // Before finish, a centred frame is certain to exist (and so may be released) once its window is
        // complete and the trailing padding still to come will cover its span.
        let spanLimit = isFinished ? available : available + edgePad
        if !isFinished && edgePad > 0 && samplesAccepted == 0 { return }
        while true {
            let start = framesComputed * hop
            guard start + windowOffset + config.windowLength <= available, start + frameSpan <= spanLimit else { return }
            computeFrame(at: start + windowOffset - bufferStart)
            framesComputed += 1
        }
    }

    /// Computes the frame whose window starts at `buffer[offset]` and appends it to `pending`.
    private func computeFrame(at offset: Int) {
        let n = config.windowLength
        let src = UnsafePointer(buffer.baseAddress! + offset)
        let w = window.baseAddress!
        let removeDC = config.removeDCOffset
        let framePreemphasis: Float? = config.preemphasisScope == .frame ? config.preemphasis : nil
        if removeDC || framePreemphasis != nil {
            let s = scratch.baseAddress!
            s.update(from: src, count: n)
            if removeDC {
                var sum: Float = 0
                for i in 0..<n { sum += s[i] }
                let mean = sum / Float(n)
                for i in 0..<n { s[i] -= mean }
            }
            if let c = framePreemphasis {
                var i = n - 1
                while i > 0 { s[i] -= c * s[i - 1]; i -= 1 }
                s[0] -= c * s[0]
            }
            for i in 0..<n { fftIn[i] = s[i] * w[i] }
        } else {
            for i in 0..<n { fftIn[i] = src[i] * w[i] }
        }
        // The zero padding up to fftSize is rewritten every frame rather than trusted to survive execution.
        for i in n..<config.fftSize { fftIn[i] = 0 }

        fftwf_execute(plan)

        let spec = spectrum.baseAddress!
        let power = config.power
        if power == 2 {
            for k in 0..<bins { let re = fftOut[2 * k], im = fftOut[2 * k + 1]; spec[k] = re * re + im * im }
        } else if power == 1 {
            for k in 0..<bins { let re = fftOut[2 * k], im = fftOut[2 * k + 1]; spec[k] = (re * re + im * im).squareRoot() }
        } else {
            let half = power / 2
            for k in 0..<bins { let re = fftOut[2 * k], im = fftOut[2 * k + 1]; spec[k] = powf(re * re + im * im, half) }
        }

        let mel = melOut.baseAddress!
        let guardValue = config.logGuard
        let clamp = config.logGuardKind == .clamp
        melWeights.withUnsafeBufferPointer { weights in
            for m in 0..<melBins {
                let first = melFirst[m], count = melEnd[m] - first
                let wm = weights.baseAddress! + melOffset[m]
                let sm = spec + first
                var sum: Float = 0
                for j in 0..<count { sum += wm[j] * sm[j] }
                mel[m] = clamp ? logf(max(sum, guardValue)) : logf(sum + guardValue)
            }
        }
        if config.normalization == .global {
            for m in 0..<melBins { mel[m] = (mel[m] - normMean[m]) / normStd[m] }
        }
        pending.append(contentsOf: UnsafeBufferPointer(melOut))
    }

    /// NeMo's `per_feature`: per mel bin, subtract the utterance mean and divide by the unbiased standard
    /// deviation (0 for a single frame) plus 1e-5. Statistics accumulate in double precision.
    private func normalizePerFeature() {
        let frames = pending.count / melBins
        guard frames > 0 else { return }
        pending.withUnsafeMutableBufferPointer { x in
            for m in 0..<melBins {
                var sum = 0.0
                for t in 0..<frames { sum += Double(x[t * melBins + m]) }
                let mean = sum / Double(frames)
                var squares = 0.0
                for t in 0..<frames { let d = Double(x[t * melBins + m]) - mean; squares += d * d }
                let std = (frames > 1 ? (squares / Double(frames - 1)).squareRoot() : 0) + 1e-5
                for t in 0..<frames { x[t * melBins + m] = Float((Double(x[t * melBins + m]) - mean) / std) }
            }
        }
    }
}
