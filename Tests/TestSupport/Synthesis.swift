import Foundation
import Testing

/// One spoken rendering of a text: which voice, speed (words per minute) and pitch (0-99) espeak-ng used.
public struct Rendering: Sendable, Hashable {
    public var text: String
    public var voice: String
    public var speed: Int
    public var pitch: Int

    public init(text: String, voice: String, speed: Int, pitch: Int = 50) {
        self.text = text
        self.voice = voice
        self.speed = speed
        self.pitch = pitch
    }

    /// What espeak-ng is asked to say: a comma between words, so phrases have audible pauses
    /// (where a CTC model learns to put the word separator).
    public var spoken: String { text.replacingOccurrences(of: " ", with: ", ") }

    public var fileName: String {
        "\(text.replacingOccurrences(of: " ", with: "_"))-\(voice)-s\(speed)-p\(pitch).wav"
    }
}

/// Synthesises each rendering into `directory` (22.05 kHz 16-bit WAV, espeak-ng's native output, so
/// the readers' resampling to 16 kHz is part of every test) and returns the file URLs in order.
@discardableResult
public func synthesize(_ renderings: [Rendering], into directory: URL) throws -> [URL] {
    let espeak = try espeakPath()
    return try renderings.map { r in
        let url = directory.appendingPathComponent(r.fileName)
        let result = try runProcess(espeak, ["-v", r.voice, "-s", "\(r.speed)", "-p", "\(r.pitch)", "-w", url.path, r.spoken],
                                    scratch: directory)
        try #require(result.status == 0, "espeak-ng failed for \(r): \(result.stderr)")
        return url
    }
}
