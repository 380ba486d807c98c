import Decoding
import Foundation

/// The output formats of `earshot transcribe`: plain text, JSON (with word times and confidences),
/// and the SubRip / WebVTT subtitle formats.
public enum TranscriptFormat: String, CaseIterable, Sendable {
    case text, json, srt, vtt

    public var fileExtension: String { rawValue == "text" ? "txt" : rawValue }

    /// Renders one file's transcript. `source` is the audio file it came from (recorded in JSON).
    /// `compact` puts a JSON document on one line (JSON Lines, for several files sharing one stream);
    /// the other formats ignore it.
    public func render(_ transcript: Transcript, source: String, duration: Double, compact: Bool = false) -> String {
        switch self {
        case .text:
            return transcript.text + "\n"
        case .json:
            return Self.json(transcript, source: source, duration: duration, compact: compact)
        case .srt:
            return Self.cues(transcript, duration: duration).enumerated().map { i, cue in
                "\(i + 1)\n\(Self.timestamp(cue.start, separator: ",")) --> \(Self.timestamp(cue.end, separator: ","))\n\(cue.text)\n"
            }.joined(separator: "\n")
        case .vtt:
            let body = Self.cues(transcript, duration: duration).map { cue in
                "\(Self.timestamp(cue.start, separator: ".")) --> \(Self.timestamp(cue.end, separator: "."))\n\(cue.text)\n"
            }.joined(separator: "\n")
            return "WEBVTT\n\n" + body
        }
    }

    struct Cue { var start: Double; var end: Double; var text: String }

    /// The shortest time a cue stays on screen, and the least gap kept before the next one when a
    /// short cue is lengthened (common subtitle guidance: about a second to read anything; two frames
    /// between cues so that a player shows them as two).
    static let minimumCueSeconds = 1.0
    static let cueGapSeconds = 0.08

    /// Subtitle cues: words grouped until a cue would pass 42 characters or 5 seconds, or the
    /// speaker pauses for more than 0.8 s (common subtitle reading-speed guidance). A cue shorter than
    /// `minimumCueSeconds` (one short word) stays up that long, or until just before the next cue, or
    /// the end of the audio (`duration`), never less than its words.
    static func cues(_ transcript: Transcript, duration: Double? = nil) -> [Cue] {
        var cues = groupedCues(transcript)
        for i in cues.indices where cues[i].end - cues[i].start < minimumCueSeconds {
            var end = cues[i].start + minimumCueSeconds
            if i + 1 < cues.count { end = min(end, cues[i + 1].start - cueGapSeconds) }
            if let duration { end = min(end, duration) }
            cues[i].end = max(cues[i].end, end)
        }
        return cues
    }

    static func groupedCues(_ transcript: Transcript) -> [Cue] {
        var cues: [Cue] = []
        var current: Cue?
        for word in transcript.words {
            if var cue = current {
                let tooLong = cue.text.count + 1 + word.text.count > 42 || word.end - cue.start > 5
                let pause = word.start - cue.end > 0.8
                if tooLong || pause {
                    cues.append(cue)
                    current = Cue(start: word.start, end: word.end, text: word.text)
                } else {
                    cue.text += " " + word.text
                    cue.end = word.end
                    current = cue
                }
            } else {
                current = Cue(start: word.start, end: word.end, text: word.text)
            }
        }
        if let cue = current { cues.append(cue) }
        return cues
    }

    static func timestamp(_ seconds: Double, separator: String) -> String {
        let ms = Int((max(0, seconds) * 1000).rounded())
        let h = ms / 3_600_000, m = ms / 60_000 % 60, s = ms / 1000 % 60, f = ms % 1000
        return String(format: "%02d:%02d:%02d%@%03d", h, m, s, separator, f)
    }

    static func json(_ transcript: Transcript, source: String, duration: Double, compact: Bool) -> String {
        // A word's key is "word", as in the daemon's final messages (docs/protocol.md), so one parser
        // reads both.
        struct JSONWord: Encodable {
            var word: String
            var start: Double
            var end: Double
            var confidence: Double
        }
        struct Document: Encodable {
            var file: String
            var duration: Double
            var text: String
            var words: [JSONWord]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = compact ? [.sortedKeys, .withoutEscapingSlashes] : [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Milliseconds are the frames' resolution (and confidences need no more than four digits); the raw
        // doubles print as 2.3000000000000003.
        func rounded(_ x: Double, _ scale: Double) -> Double { (x * scale).rounded() / scale }
        let words = transcript.words.map {
            JSONWord(word: $0.text, start: rounded($0.start, 1000), end: rounded($0.end, 1000),
                     confidence: rounded($0.confidence, 10000))
        }
        let doc = Document(file: source, duration: duration, text: transcript.text, words: words)
        // Encoding plain strings and doubles cannot fail.
        return String(decoding: try! encoder.encode(doc), as: UTF8.self) + "\n"
    }
}
