import Decoding
import Foundation
@testable import Recognizer
import TestSupport

/// A test stream: words and silences laid end to end at 16 kHz, with where each word is.
struct Scene {
    /// `fragment`: the first seconds of a word (a burst, shorter than a word).
    enum Part { case word(String), silence(Double), fragment(String, Double) }

    var samples: [Float] = []
    var words: [(text: String, span: Range<Int>)] = []

    /// `noise` > 0 adds Gaussian noise of that standard deviation to every sample (seeded).
    init(_ parts: [Part], model: TinyModel, noise: Float = 0, seed: UInt64 = 1) {
        for part in parts {
            switch part {
            case .word(let w):
                let s = model.word(w)
                words.append((w, samples.count..<(samples.count + s.count)))
                samples += s
            case .silence(let seconds):
                samples += [Float](repeating: 0, count: Int(seconds * 16000))
            case .fragment(let w, let seconds):
                let s = model.word(w).prefix(Int(seconds * 16000))
                words.append((w, samples.count..<(samples.count + s.count)))
                samples += s
            }
        }
        if noise > 0 {
            var rng = SeededGenerator(state: seed)
            for i in samples.indices { samples[i] += noise * rng.gaussian() }
        }
    }
}

/// An event with the number of samples accepted when it came back.
struct Timed: Equatable {
    var event: RecognitionEvent
    var received: Int
}

/// Feeds `samples` in random chunks of 0 ... `maxChunk` samples (every tenth chunk empty or one
/// sample), then finishes; returns every event with where it came back.
func run(_ session: StreamingSession, _ samples: [Float], maxChunk: Int, rng: inout SeededGenerator,
         finish: Bool = true, each: (Int) -> Void = { _ in }) -> [Timed] {
    var out: [Timed] = []
    var at = 0, chunks = 0
    while at < samples.count {
        let n = chunks % 10 == 3 ? 0 : chunks % 10 == 7 ? 1 : Int.random(in: 0...maxChunk, using: &rng)
        let end = min(samples.count, at + n)
        out += session.accept(Array(samples[at..<end])).map { Timed(event: $0, received: end) }
        at = end
        chunks += 1
        each(at)
    }
    if finish { out += session.finish().map { Timed(event: $0, received: samples.count) } }
    return out
}

/// What a final carries, pulled out of the enum.
struct Final {
    var utterance: Int
    var transcript: Transcript
    var start: Double
    var end: Double
    var segment: Range<Int>
    /// The reason of the endpoint that followed it (nil in the rare test that stops listening before).
    var reason: EndpointReason?
}

extension Array where Element == Timed {
    var events: [RecognitionEvent] { map(\.event) }
    var finals: [Final] {
        let reasons = Dictionary(endpoints.map { ($0.utterance, $0.reason) }, uniquingKeysWith: { first, _ in first })
        return compactMap {
            if case .final(let u, let t, let s, let e, let seg) = $0.event {
                return Final(utterance: u, transcript: t, start: s, end: e, segment: seg, reason: reasons[u])
            }
            return nil
        }
    }
    var endpoints: [(utterance: Int, reason: EndpointReason, at: Double)] {
        compactMap {
            if case .endpoint(let u, let r, let a) = $0.event { return (u, r, a) }
            return nil
        }
    }
    var partials: [(utterance: Int, text: String, start: Double, received: Int)] {
        compactMap {
            if case .partial(let u, let t, let s) = $0.event { return (u, t, s, $0.received) }
            return nil
        }
    }
}

