import Foundation

/// The samples from the first to the last loud 10 ms frame of `samples`: loud is within `rangeDB` of the
/// loudest frame's energy. Nil when no frame is quieter than that (nothing to trim: continuous sound or
/// noise) or the signal is silent. Training cuts utterances to it (edge trimming), and word-timing
/// calibration (Recognizer's `WordTimingCalibration`) takes it as where a recording's speech is.
public func speechBounds(_ samples: [Float], sampleRate: Int, rangeDB: Double = 40) -> Range<Int>? {
    let frame = max(1, sampleRate / 100)
    let frames = samples.count / frame
    guard frames > 0 else { return nil }
    var energy = [Double](repeating: 0, count: frames)
    for f in 0..<frames {
        var e = 0.0
        for x in samples[f * frame ..< (f + 1) * frame] { e += Double(x) * Double(x) }
        energy[f] = e / Double(frame)
    }
    guard let peak = energy.max(), peak > 0 else { return nil }
    let threshold = peak * pow(10, -rangeDB / 10)
    guard energy.contains(where: { $0 < threshold }),
          let first = energy.firstIndex(where: { $0 >= threshold }),
          let last = energy.lastIndex(where: { $0 >= threshold }) else { return nil }
    // A loud last frame keeps the tail shorter than a frame too: only quiet audio is ever cut.
    return first * frame ..< (last == frames - 1 ? samples.count : (last + 1) * frame)
}
