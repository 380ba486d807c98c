import Foundation
import Testing
@testable import Recognizer

@Suite struct Probe {
    @Test func probe() throws {
        let tiny = try TinyModel.shared()
        let rec = try Recognizer(model: tiny.trained)
        for w in TinyModel.words {
            let raw = tiny.spoken[w]!, trimmed = tiny.word(w)
            let lead = raw.firstIndex { abs($0) > 1e-3 }!, trail = raw.count - 1 - raw.lastIndex { abs($0) > 1e-3 }!
            var out = "\(w) lead \(lead) trail \(trail):"
            for pad in [0.0, 0.05, 0.1, 0.2, 0.5, 1.0] {
                let z = [Float](repeating: 0, count: Int(pad * 16000))
                out += " \(pad): raw '\(rec.recognize(z + raw + z).transcript.text)' trim '\(rec.recognize(z + trimmed + z).transcript.text)'"
            }
            print(out)
        }
    }
}
