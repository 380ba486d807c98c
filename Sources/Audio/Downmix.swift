/// Averages `channels` interleaved channels (frame-major: a frame's channels adjacent) of `frames`
/// frames at `samples` into one channel at `target`, converting each sample with `value` and scaling
/// the result by `scale` (1 for float samples; 2^-15 or 2^-31 for integers, as libsndfile scales them).
///
/// The one downmix of the module: files (`AudioFile`) and capture (`CaptureConversion`) both use it,
/// so a file and a live device deliver the same mono signal for the same samples. Inlined into each
/// caller so `value` and the sample type are specialised and the loops vectorise.
@inline(__always)
func downmix<Sample>(_ samples: UnsafePointer<Sample>, frames: Int, channels: Int, scale: Float = 1,
                     into target: UnsafeMutablePointer<Float>, _ value: (Sample) -> Float) {
    if channels == 1 {
        for i in 0..<frames { target[i] = value(samples[i]) * scale }
        return
    }
    let gain = scale / Float(channels)
    for i in 0..<frames {
        var sum: Float = 0
        let frame = samples + i * channels
        for c in 0..<channels { sum += value(frame[c]) }
        target[i] = sum * gain
    }
}
