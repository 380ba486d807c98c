/// One recognised word with its time span and a confidence.
///
/// Times are seconds from the start of the utterance (the first frame given to the decoder after
/// `reset()`). `start` is the start of the first frame in which the word's first character was
/// emitted; `end` is the end of the last frame in which its last character was still the most likely
/// state (so a word covering frames 3...5 at 40 ms spans 0.12 s to 0.24 s).
///
/// `confidence` is the geometric mean over the word's characters of each character's peak posterior
/// (the largest softmax probability that character had over the frames it occupied), i.e.
/// `exp(mean(log p_char))`. It is in [0, 1]; a single unsure character pulls it down more than an
/// arithmetic mean would, and, unlike the product, it does not penalise long words for their length.
public struct Word: Sendable, Codable, Equatable {
    public var text: String
    public var start: Double
    public var end: Double
    public var confidence: Double

    public init(text: String, start: Double, end: Double, confidence: Double) {
        self.text = text
        self.start = start
        self.end = end
        self.confidence = confidence
    }
}

/// The decoder's answer for one utterance: the text (words joined by single spaces) and its words.
public struct Transcript: Sendable, Codable, Equatable {
    public var text: String
    public var words: [Word]

    public init(text: String, words: [Word]) {
        self.text = text
        self.words = words
    }

    public init(words: [Word]) {
        self.text = words.map(\.text).joined(separator: " ")
        self.words = words
    }

    public static let empty = Transcript(text: "", words: [])

    /// The same transcript with every time moved by `seconds` (for utterances cut out of a stream).
    public func shifted(by seconds: Double) -> Transcript {
        Transcript(text: text, words: words.map {
            Word(text: $0.text, start: $0.start + seconds, end: $0.end + seconds, confidence: $0.confidence)
        })
    }
}

/// One emitted (collapsed) token: its frame span and its peak posterior.
struct EmittedToken: Equatable {
    var token: Int
    var startFrame: Int
    var endFrame: Int
    var peakPosterior: Double
}

/// Groups emitted tokens into words at the vocabulary's space token.
func assembleTranscript(_ emitted: [EmittedToken], vocabulary: Vocabulary, frameDuration: Double) -> Transcript {
    var words: [Word] = []
    var text = ""
    var first = 0
    var logSum = 0.0
    var chars = 0
    var lastEnd = 0

    func flush() {
        guard chars > 0 else { return }
        words.append(Word(text: text,
                          start: Double(first) * frameDuration,
                          end: Double(lastEnd + 1) * frameDuration,
                          confidence: exp(logSum / Double(chars))))
        text = ""
        chars = 0
        logSum = 0
    }

    for (i, e) in emitted.enumerated() {
        if e.token == vocabulary.space {
            flush()
            continue
        }
        // A character's end may not run past the next emission's start (the beam can extend a prefix's
        // tail after a longer prefix has branched off it).
        var end = e.endFrame
        if i + 1 < emitted.count { end = min(end, emitted[i + 1].startFrame - 1) }
        end = max(end, e.startFrame)
        if chars == 0 { first = e.startFrame }
        text += vocabulary.tokens[e.token]
        logSum += log(max(e.peakPosterior, Double.leastNormalMagnitude))
        chars += 1
        lastEnd = end
    }
    flush()
    return Transcript(words: words)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
