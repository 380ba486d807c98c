import CSampleRate

/// libsamplerate's band-limited sinc converters. All three reject aliases by about 97 dB; they differ in
/// how much of the band below the lower of the two Nyquist frequencies they keep flat, and in speed.
///
/// `.medium` is the default: at 16 kHz output it is flat to 7.2 kHz (90 % of Nyquist), which covers the
/// formants and nearly all fricative energy the 8 kHz log-mel frontend sees, and it is about 3.5x faster
/// than `.best` (flat to 7.76 kHz). Measured, release build, one core of the shared build machine:
/// 44.1 kHz -> 16 kHz at 227x real time for `.medium` against 63x for `.best` (8 kHz -> 16 kHz: 586x
/// against 187x). `.best` would make resampling cost as much as recognition on long files and a whole
/// training corpus; `.fastest` (500x, flat only to 6.4 kHz) would cut into the top mel bands.
public enum ResamplingQuality: Sendable, CaseIterable {
    case best, medium, fastest

    var converterType: Int32 {
        switch self {
        case .best: return Int32(SRC_SINC_BEST_QUALITY)
        case .medium: return Int32(SRC_SINC_MEDIUM_QUALITY)
        case .fastest: return Int32(SRC_SINC_FASTEST)
        }
    }
}

/// One-shot conversion of a whole mono buffer; owns nothing between calls.
public enum Resampler {
    /// Resamples mono `samples` from `fromRate` to `toRate` Hz. The result has exactly
    /// `ceil(samples.count * toRate / fromRate)` samples, time-aligned with the input (no delay), and equals
    /// what a `StreamingResampler` produces for the same input pushed in any chunks. Same rate: a copy.
    public static func resample(
        _ samples: [Float], from fromRate: Int, to toRate: Int, quality: ResamplingQuality = .medium
    ) throws(AudioError) -> [Float] {
        let resampler = try StreamingResampler(from: fromRate, to: toRate, quality: quality)
        var output: [Float] = []
        output.reserveCapacity(StreamingResampler.outputCount(forInput: Int64(samples.count),
                                                              from: fromRate, to: toRate))
        try resampler.push(samples)
        try resampler.finish()
        resampler.pull(into: &output)
        return output
    }
}

/// A mono sample-rate converter for audio that arrives in pieces (file blocks, ALSA periods, socket
/// messages). Owns a libsamplerate state (the sinc filter's history) and a queue of converted samples
/// waiting to be pulled. Push any number of samples at the input rate, pull what is ready at the output
/// rate, `finish()` at the end to flush the filter's tail. Whatever the chunking, the concatenated output is
/// the same as `Resampler.resample` of the whole input.
///
/// Not thread-safe and not `Sendable`: one stream, one owner.
public final class StreamingResampler {
    public let inputRate: Int
    public let outputRate: Int
    public let quality: ResamplingQuality

    /// nil when the rates are equal: then samples are copied through untouched.
    private var state: OpaquePointer?
    private let ratio: Double
    /// Converted samples not yet pulled. Grows to the largest amount pushed between two pulls and keeps
    /// that capacity, so a steady stream allocates nothing after warm-up.
    private var pending: [Float] = []
    /// libsamplerate writes here first; fixed size, reused for every call.
    private var scratch: [Float]
    private var inputCount: Int64 = 0
    private var outputCount: Int64 = 0
    private var finished = false

    /// Samples libsamplerate is asked to write per call; large enough that call overhead is negligible.
    private static let scratchSize = 8192

    public init(from inputRate: Int, to outputRate: Int, quality: ResamplingQuality = .medium) throws(AudioError) {
        self.inputRate = inputRate
        self.outputRate = outputRate
        self.quality = quality
        guard inputRate > 0, outputRate > 0 else {
            throw .resamplingFailed(path: nil, fromRate: inputRate, toRate: outputRate,
                                    reason: "sample rates must be positive")
        }
        ratio = Double(outputRate) / Double(inputRate)
        if inputRate == outputRate {
            scratch = []
            return
        }
        guard src_is_valid_ratio(ratio) != 0 else {
            throw .resamplingFailed(path: nil, fromRate: inputRate, toRate: outputRate,
                                    reason: "libsamplerate converts only by factors between 1/256 and 256")
        }
        var error: Int32 = 0
        guard let created = src_new(quality.converterType, 1, &error) else {
            throw .resamplingFailed(path: nil, fromRate: inputRate, toRate: outputRate,
                                    reason: String(cString: src_strerror(error)))
        }
        state = created
        scratch = [Float](repeating: 0, count: Self.scratchSize)
    }

    deinit {
        if let state { src_delete(state) }
    }

    /// The exact number of output samples a stream of `inputCount` samples yields once finished.
    public static func outputCount(forInput inputCount: Int64, from inputRate: Int, to outputRate: Int) -> Int {
        // ceil(n * out / in) in integers, so the length never depends on floating-point rounding.
        Int((inputCount * Int64(outputRate) + Int64(inputRate) - 1) / Int64(inputRate))
    }

    /// Number of converted samples waiting to be pulled.
    public var availableCount: Int { pending.count }

    public func push(_ samples: [Float]) throws(AudioError) {
        try samples.withUnsafeBufferPointer { (buffer) throws(AudioError) in try push(buffer) }
    }

    public func push(_ samples: ArraySlice<Float>) throws(AudioError) {
        try samples.withUnsafeBufferPointer { (buffer) throws(AudioError) in try push(buffer) }
    }

    /// Converts `samples` (at `inputRate`); the result joins the queue that `pull` drains.
    public func push(_ samples: UnsafeBufferPointer<Float>) throws(AudioError) {
        precondition(!finished, "StreamingResampler.push after finish(); call reset() to start a new stream")
        inputCount += Int64(samples.count)
        guard let state else {
            pending.append(contentsOf: samples)
            outputCount += Int64(samples.count)
            return
        }
        guard let base = samples.baseAddress, !samples.isEmpty else { return }
        var offset = 0
        // libsamplerate takes input into its own buffer faster than it writes output when upsampling
        // (1 kHz to 16 kHz: 32 768 samples taken in the call that filled the 8 192-sample scratch), so
        // it is called on, with no new input, until a call leaves room in the scratch: otherwise most of
        // a frame's output would wait for the next push, or for `finish`.
        var scratchFilled = false
        while offset < samples.count || scratchFilled {
            let (used, generated) = try process(state, base + offset, count: samples.count - offset)
            offset += used
            if used == 0 && generated == 0 {
                if offset == samples.count { break }
                throw .resamplingFailed(path: nil, fromRate: inputRate, toRate: outputRate,
                                        reason: "libsamplerate made no progress (internal error)")
            }
            scratchFilled = generated == scratch.count
        }
    }

    /// Ends the stream: the filter's tail (the last few milliseconds it was holding back) joins the queue,
    /// so the total output is exactly `outputCount(forInput:from:to:)` samples.
    ///
    /// libsamplerate's own end-of-input flush drops up to half a filter length of output when input came in
    /// several calls (libsndfile/libsamplerate issues #55 and #90), so instead the input is extended with
    /// silence - what an ideal converter assumes lies beyond the end - until enough output exists, and the
    /// surplus is cut.
    public func finish() throws(AudioError) {
        guard !finished else { return }
        finished = true
        guard let state else { return }
        let target = Int64(Self.outputCount(forInput: inputCount, from: inputRate, to: outputRate))
        // Bound the padding: the longest sinc filter (best quality, ratio 1/256) spans well under a
        // million input samples; running past this means libsamplerate misbehaves, not that we need more.
        var paddingLeft = 1 << 20
        let zeros = [Float](repeating: 0, count: 1024)
        try zeros.withUnsafeBufferPointer { (zeroBuffer) throws(AudioError) in
            while outputCount < target {
                guard paddingLeft > 0 else {
                    throw .resamplingFailed(path: nil, fromRate: inputRate, toRate: outputRate,
                                            reason: "libsamplerate did not flush its tail (internal error)")
                }
                let (used, _) = try process(state, zeroBuffer.baseAddress!, count: zeroBuffer.count)
                paddingLeft -= max(used, 1)
            }
        }
        let surplus = Int(outputCount - target)
        if surplus > 0 {
            pending.removeLast(min(surplus, pending.count))
            outputCount = target
        }
    }

    /// Appends every converted sample waiting in the queue to `output` and empties the queue.
    public func pull(into output: inout [Float]) {
        output.append(contentsOf: pending)
        pending.removeAll(keepingCapacity: true)
    }

    /// Takes every converted sample waiting in the queue. Allocates a fresh queue each call; a live loop
    /// should use `pull(into:)` with a buffer it reuses.
    public func pull() -> [Float] {
        var output: [Float] = []
        swap(&output, &pending)
        pending.reserveCapacity(output.count)
        return output
    }

    /// Forgets all history and queued output so the object can convert an unrelated stream.
    public func reset() {
        if let state { src_reset(state) }
        pending.removeAll(keepingCapacity: true)
        inputCount = 0
        outputCount = 0
        finished = false
    }

    /// One src_process call into `scratch`, moved onto the queue; returns (input used, output generated).
    private func process(
        _ state: OpaquePointer, _ input: UnsafePointer<Float>, count: Int
    ) throws(AudioError) -> (Int, Int) {
        let ratio = self.ratio
        let result: (Int32, Int, Int) = scratch.withUnsafeMutableBufferPointer { out in
            var data = SRC_DATA()
            data.data_in = input
            data.input_frames = count
            data.data_out = out.baseAddress
            data.output_frames = out.count
            data.end_of_input = 0
            data.src_ratio = ratio
            let status = src_process(state, &data)
            return (status, Int(data.input_frames_used), Int(data.output_frames_gen))
        }
        let (status, used, generated) = result
        if status != 0 {
            throw .resamplingFailed(path: nil, fromRate: inputRate, toRate: outputRate,
                                    reason: String(cString: src_strerror(status)))
        }
        pending.append(contentsOf: scratch[0..<generated])
        outputCount += Int64(generated)
        return (used, generated)
    }
}

@available(*, unavailable, message: "StreamingResampler holds C state that one owner mutates")
extension StreamingResampler: Sendable {}
