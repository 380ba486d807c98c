import Foundation
import Testing
import Tensors
@testable import Decoding

@Suite struct LargeLanguageModelTests {
    /// A generated trigram ARPA with 300k n-grams, with the values of a few entries remembered.
    func syntheticARPA(unigrams: Int, bigramsPerWord: Int, trigramsPerBigram: Int) -> (String, [([String], Double)]) {
        var rng = SplitMix64(seed: 3)
        var words = ["<s>", "</s>", "<unk>"]
        for i in 0..<(unigrams - 3) { words.append("w\(i)") }
        var uni = "", bi = "", tri = ""
        var nb = 0, nt = 0
        var remembered: [([String], Double)] = []
        for (i, w) in words.enumerated() {
            let p = -Double(Int.random(in: 1000...7000, using: &rng)) / 1000
            uni += "\(p)\t\(w)\t-0.25\n"
            if i % 997 == 5 { remembered.append(([w], p)) }
            var used = Set<Int>()
            for _ in 0..<bigramsPerWord {
                let j = Int.random(in: 0..<unigrams, using: &rng)
                guard used.insert(j).inserted else { continue }
                let bp = -Double(Int.random(in: 100...5000, using: &rng)) / 1000
                bi += "\(bp)\t\(w) \(words[j])\t-0.5\n"
                nb += 1
                if nb % 1009 == 7 { remembered.append(([w, words[j]], bp)) }
                for k in 0..<trigramsPerBigram {
                    let tp = -Double(Int.random(in: 10...3000, using: &rng)) / 1000
                    tri += "\(tp)\t\(w) \(words[j]) \(words[(j + k * 7919 + 1) % unigrams])\n"
                    nt += 1
                    if nt % 1013 == 11 { remembered.append(([w, words[j], words[(j + k * 7919 + 1) % unigrams]], tp)) }
                }
            }
        }
        let text = "\\data\\\nngram 1=\(words.count)\nngram 2=\(nb)\nngram 3=\(nt)\n\n\\1-grams:\n\(uni)\n\\2-grams:\n\(bi)\n\\3-grams:\n\(tri)\n\\end\\\n"
        return (text, remembered)
    }

    @Test func loadsAGeneratedThreeHundredThousandNgramModelExactly() throws {
        let (text, remembered) = syntheticARPA(unigrams: 20000, bigramsPerWord: 8, trigramsPerBigram: 1)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-large-\(UUID()).arpa")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(text.utf8).write(to: url)
        let lm = try NGramLanguageModel(arpaFile: url)
        #expect(lm.order == 3)
        #expect(lm.words.count == 20000)
        #expect(lm.count(order: 2) > 150_000)
        #expect(!remembered.isEmpty)
        for (gram, log10p) in remembered {
            let got = lm.logProbability(gram.last!, history: Array(gram.dropLast()))
            #expect(abs(got - log10p * log(10.0)) < 1e-5, "\(gram)")
        }
    }
}
