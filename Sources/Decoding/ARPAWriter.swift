import Foundation

extension NGramLanguageModel {
    /// The model as ARPA text. Values are written in Swift's shortest round-trip form, so reading the
    /// text back gives bit-identical log10 values.
    public func arpaText() -> String {
        var out = "\\data\\\n"
        var present: [[Int32]] = []
        for n in 1...order {
            let t = tables[n - 1]
            let idx = (0..<t.count).filter { t.present[$0] }.map { Int32($0) }
            present.append(idx)
            out += "ngram \(n)=\(idx.count)\n"
        }
        for n in 1...order {
            out += "\n\\\(n)-grams:\n"
            let t = tables[n - 1]
            for i in present[n - 1] {
                let ws = ngramWords(order: n, index: i).map { words[Int($0)] }.joined(separator: " ")
                out += "\(t.logProb[Int(i)])\t\(ws)"
                if n < order { out += "\t\(t.backoff[Int(i)])" }
                out += "\n"
            }
        }
        out += "\n\\end\\\n"
        return out
    }

    /// Writes `arpaText()` to `url`.
    public func writeARPA(to url: URL) throws {
        do {
            try Data(arpaText().utf8).write(to: url, options: .atomic)
        } catch {
            throw LanguageModelError.unwritable(file: url.path, reason: error.localizedDescription)
        }
    }

    /// Estimates an `order`-gram model from `sentences` (words separated by whitespace, already
    /// normalised) with interpolated Witten-Bell smoothing, stored in back-off form.
    ///
    /// Every sentence is padded with `<s>` and `</s>`. The predicted vocabulary is every training word
    /// plus `</s>` and `<unk>`; `<s>` is only a context (log10 probability -99, the ARPA convention).
    /// Unigrams interpolate with the uniform distribution over that vocabulary; order n interpolates
    /// with order n-1:
    ///
    ///     p(w|h) = (c(h w) + T(h) p(w|h')) / (c(h .) + T(h))
    ///
    /// where T(h) is the number of distinct words seen after h and h' drops h's oldest word. Seen n-grams
    /// are stored with that probability and each context gets the back-off weight
    /// `(1 - sum_seen p(w|h)) / (1 - sum_seen p(w|h'))`, which makes the back-off model equal to the
    /// interpolated one, so probabilities sum to 1 over the vocabulary for every history.
    public static func train(sentences: [String], order: Int) -> NGramLanguageModel {
        precondition(order >= 1, "n-gram order must be at least 1")
        var model = NGramLanguageModel(order: order)
        let bos = model.addWord(sentenceStart)
        let eos = model.addWord(sentenceEnd)
        let unk = model.addWord(unknown)

        var corpus: [[Int32]] = []
        for s in sentences {
            var ids: [Int32] = [bos]
            for w in s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
                ids.append(model.addWord(String(w)))
            }
            ids.append(eos)
            corpus.append(ids)
        }

        // counts[n-1][gram] for n-grams ending in a predicted word (never in <s>).
        var counts: [[[Int32]: Int]] = Array(repeating: [:], count: order)
        for ids in corpus {
            for i in 1..<ids.count {
                for n in 1...order where i - n + 1 >= 0 {
                    counts[n - 1][Array(ids[(i - n + 1)...i]), default: 0] += 1
                }
            }
        }

        // Unigrams.
        let vocabularySize = Double(model.words.count - 1) // all but <s>
        let total = Double(counts[0].values.reduce(0, +))
        let types = Double(counts[0].count)
        for id in 0..<Int32(model.words.count) {
            var p: Double
            if id == bos {
                p = -99
            } else {
                let c = Double(counts[0][[id]] ?? 0)
                p = log10((c + types / vocabularySize) / (total + types))
            }
            model.tables[0].context.append(-1)
            model.tables[0].word.append(id)
            model.tables[0].logProb.append(Float(p))
            model.tables[0].backoff.append(0)
            model.tables[0].present.append(true)
        }
        _ = unk

        guard order >= 2 else { return model }
        for n in 2...order {
            // Group n-grams by context, in a fixed order so the model is deterministic.
            var byContext: [[Int32]: [(Int32, Int)]] = [:]
            for (gram, c) in counts[n - 1] {
                byContext[Array(gram.dropLast()), default: []].append((gram.last!, c))
            }
            let contexts = byContext.keys.sorted { $0.lexicographicallyPrecedes($1) }
            for h in contexts {
                let followers = byContext[h]!.sorted { $0.0 < $1.0 }
                let hc = Double(followers.reduce(0) { $0 + $1.1 })
                let t = Double(followers.count)
                let lowerHistory = Array(h.dropFirst())
                var seenMass = 0.0
                var seenLowerMass = 0.0
                var entries: [(Int32, Float)] = []
                for (w, c) in followers {
                    let lower = exp(model.logProbability(of: w, history: lowerHistory))
                    let p = (Double(c) + t * lower) / (hc + t)
                    seenMass += p
                    seenLowerMass += lower
                    entries.append((w, Float(log10(p))))
                }
                // The context h is an (n-1)-gram that occurred (it was followed by something).
                guard let contextIndex = h.withUnsafeBufferPointer({ model.index(of: $0, last: h.count) }) else {
                    preconditionFailure("context of a counted n-gram is missing from the model")
                }
                let numerator = 1 - seenMass
                let denominator = 1 - seenLowerMass
                let bo: Float = (numerator > 0 && denominator > 0) ? Float(log10(numerator / denominator)) : 0
                model.tables[n - 2].backoff[Int(contextIndex)] = bo
                for (w, p) in entries {
                    _ = model.tables[n - 1].insert(context: contextIndex, word: w, logProb: p, backoff: 0, present: true)
                }
            }
        }
        model.freeze()
        return model
    }
}
