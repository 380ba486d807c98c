import Audio

/// Turns a session's audio frames (interleaved s16le/f32le at the client's rate) into mono Float samples at
/// the engine's rate. Owns the resampler's filter state and the reusable buffers; one per session, used on
/// the session's queue only.
final class AudioConverter {
    let format: AudioFormat
    let outputRate: Int
    private let resampler: StreamingResampler
    /// Mono samples at the client's rate for the frame being converted; sized up once, then reused.
    private var mono: [Float] = []

    init(format: AudioFormat, outputRate: Int) throws(AudioError) {
        self.format = format
        self.outputRate = outputRate
        resampler = try StreamingResampler(from: format.sampleRate, to: outputRate)
    }

    /// Converts one frame's payload (a whole number of sample frames, checked by the caller) and appends
    /// the resampled samples to `output`.
    func convert(_ payload: [UInt8], into output: inout [Float]) throws(AudioError) {
        let channels = format.channels
        let frames = payload.count / format.bytesPerFrame
        if mono.count < frames { mono = [Float](repeating: 0, count: frames) }
        let scale = 1 / Float(channels)
        payload.withUnsafeBytes { raw in
            mono.withUnsafeMutableBufferPointer { out in
                switch format.encoding {
                case .s16le:
                    for f in 0..<frames {
                        var sum: Float = 0
                        for c in 0..<channels {
                            let bits = raw.loadUnaligned(fromByteOffset: (f * channels + c) * 2, as: UInt16.self)
                            sum += Float(Int16(bitPattern: UInt16(littleEndian: bits)))
                        }
                        out[f] = sum * scale / 32768
                    }
                case .f32le:
                    for f in 0..<frames {
                        var sum: Float = 0
                        for c in 0..<channels {
                            let bits = raw.loadUnaligned(fromByteOffset: (f * channels + c) * 4, as: UInt32.self)
                            let v = Float(bitPattern: UInt32(littleEndian: bits))
                            // A NaN or infinity would poison the resampler's filter state for good.
                            sum += v.isFinite ? v : 0
                        }
                        out[f] = sum * scale
                    }
                }
            }
        }
        try mono.withUnsafeBufferPointer { (buffer) throws(AudioError) in
            try resampler.push(UnsafeBufferPointer(rebasing: buffer[0..<frames]))
        }
        resampler.pull(into: &output)
    }

    /// Flushes the resampler's tail into `output`.
    func finish(into output: inout [Float]) throws(AudioError) {
        try resampler.finish()
        resampler.pull(into: &output)
    }
}
