import Foundation

extension NGramLanguageModel {
    /// Loads an ARPA file (`\data\`, `\1-grams:` ... `\N-grams:`, `\end\`; any order; log10 values).
    public init(arpaFile url: URL) throws {
        try self.init(arpaBytes: try Self.readBytes(url), name: url.path)
    }

    /// Parses ARPA text; `name` is used in error messages.
    public init(arpaText: String, name: String = "<ARPA text>") throws {
        try self.init(arpaBytes: Array(arpaText.utf8), name: name)
    }

    init(arpaBytes input: [UInt8], name: String) throws {
        var reader = ARPAParser(bytes: input, name: name)
        self = try reader.parse()
    }
}

/// Byte-level ARPA parser: one pass, no per-line `String` except for the words themselves.
private struct ARPAParser {
    let name: String
    var bytes: [UInt8]
    var position = 0
    var lineNumber = 0

    init(bytes: [UInt8], name: String) {
        self.bytes = bytes
        self.bytes.append(0) // strtod needs a terminator after the last number
        self.name = name
        // A UTF-8 byte-order mark (editors on Windows add one) is not part of the first line.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    /// Next line as a byte range without the newline, trimmed; nil at end of input.
    mutating func nextLine() -> Range<Int>? {
        let end = bytes.count - 1
        guard position < end else { return nil }
        var lineEnd = position
        while lineEnd < end && bytes[lineEnd] != 10 { lineEnd += 1 }
        var s = position
        var e = lineEnd
        position = lineEnd + 1
        lineNumber += 1
        while s < e && isSpace(bytes[s]) { s += 1 }
        while e > s && isSpace(bytes[e - 1]) { e -= 1 }
        return s..<e
    }

    @inline(__always) func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 13 }

    func text(_ r: Range<Int>) -> String {
        bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[r]), as: UTF8.self) }
    }

    func malformed(_ reason: String) -> LanguageModelError {
        .malformed(file: name, line: lineNumber, reason: reason)
    }

    /// Splits a trimmed line into at most `limit` whitespace-separated fields.
    func fields(_ r: Range<Int>, into out: inout [Range<Int>]) {
        out.removeAll(keepingCapacity: true)
        var i = r.lowerBound
        while i < r.upperBound {
            while i < r.upperBound && isSpace(bytes[i]) { i += 1 }
            if i >= r.upperBound { break }
            let s = i
            while i < r.upperBound && !isSpace(bytes[i]) { i += 1 }
            out.append(s..<i)
        }
    }

    func number(_ r: Range<Int>) throws -> Float {
        let value: Double? = bytes.withUnsafeBufferPointer { buf in
            let base = UnsafeRawPointer(buf.baseAddress! + r.lowerBound).assumingMemoryBound(to: CChar.self)
            var endPtr: UnsafeMutablePointer<CChar>? = nil
            let v = strtod(base, &endPtr)
            guard let endPtr, UnsafeRawPointer(endPtr) == UnsafeRawPointer(buf.baseAddress! + r.upperBound) else { return nil }
            return v
        }
        guard let value, value.isFinite else { throw malformed("'\(text(r))' is not a number") }
        // Stored as Float: a value beyond its range would become infinite.
        guard Float(value).isFinite else { throw malformed("'\(text(r))' is out of range") }
        return Float(value)
    }

    func isLine(_ r: Range<Int>, _ literal: String) -> Bool {
        let u = Array(literal.utf8)
        guard r.count == u.count else { return false }
        for (i, b) in u.enumerated() where bytes[r.lowerBound + i] != b { return false }
        return true
    }

    mutating func parse() throws -> NGramLanguageModel {
        // Header: skip to \data\.
        var found = false
        while let line = nextLine() {
            if isLine(line, "\\data\\") { found = true; break }
        }
        guard found else { throw LanguageModelError.missingSection(file: name, section: "\\data\\") }

        // Counts: "ngram N=count" until the first section header.
        var declared: [Int] = []
        var pending: Range<Int>? = nil
        while let line = nextLine() {
            if line.isEmpty { continue }
            let s = text(line)
            if s.hasPrefix("\\") { pending = line; break }
            let parts = s.dropFirst("ngram".count).split(separator: "=")
            guard s.hasPrefix("ngram "), parts.count == 2,
                  let n = Int(parts[0].trimmingCharacters(in: .whitespaces)),
                  let c = Int(parts[1].trimmingCharacters(in: .whitespaces)), c >= 0 else {
                throw malformed("expected 'ngram N=count' in the \\data\\ section, found '\(s)'")
            }
            guard n == declared.count + 1 else { throw malformed("n-gram orders must be listed in order from 1; found order \(n)") }
            declared.append(c)
        }
        guard !declared.isEmpty else { throw malformed("the \\data\\ section declares no n-gram counts") }
        let order = declared.count
        var model = NGramLanguageModel(order: order)
        // The declared counts size the tables, but only as far as the file can back them: an n-gram line
        // is at least 2(n+1) bytes ("p w1 .. wn\n"), so a header claiming more (corrupt or hostile) gets
        // no more memory than the file's size justifies; the count check after each section still
        // reports the disagreement.
        func capacity(_ n: Int) -> Int { min(declared[n - 1], bytes.count / (2 * (n + 1))) }
        model.words.reserveCapacity(capacity(1))
        model.wordIDs.reserveCapacity(capacity(1))
        model.tables[0].logProb.reserveCapacity(capacity(1))
        for n in 2...max(2, order) where n <= order {
            model.tables[n - 1].index.reserveCapacity(capacity(n))
            model.tables[n - 1].logProb.reserveCapacity(capacity(n))
            model.tables[n - 1].backoff.reserveCapacity(capacity(n))
            model.tables[n - 1].context.reserveCapacity(capacity(n))
            model.tables[n - 1].word.reserveCapacity(capacity(n))
            model.tables[n - 1].present.reserveCapacity(capacity(n))
        }

        var f: [Range<Int>] = []
        var ids = [Int32](repeating: 0, count: order)
        var sawEnd = false
        var expectedOrder = 1
        var header = pending
        while let h = header {
            header = nil
            if isLine(h, "\\end\\") { sawEnd = true; break }
            let hs = text(h)
            // A section past the declared order (a header that lost its last 'ngram N=' line) is refused
            // here: the tables and the counts are sized by the header.
            guard expectedOrder <= order, hs == "\\\(expectedOrder)-grams:" else {
                if expectedOrder > order {
                    throw malformed("expected \\end\\ after the \\\(order)-grams: section, found '\(hs)'")
                }
                throw malformed("expected section \\\(expectedOrder)-grams:, found '\(hs)'")
            }
            let n = expectedOrder
            var seen = 0
            while let line = nextLine() {
                if line.isEmpty { continue }
                if bytes[line.lowerBound] == 92 /* \ */ { header = line; break }
                fields(line, into: &f)
                guard f.count == n + 1 || f.count == n + 2 else {
                    throw malformed("a \(n)-gram line needs a log10 probability, \(n) word\(n == 1 ? "" : "s") and an optional back-off; found \(f.count) fields")
                }
                let p = try number(f[0])
                guard p <= 0 else { throw malformed("log10 probability \(p) is positive") }
                let b: Float = f.count == n + 2 ? try number(f[n + 1]) : 0
                if n == 1 {
                    // Words are UTF-8: another encoding's bytes would become U+FFFD, a word that is not
                    // the one written (and two of them a false duplicate).
                    guard let w = bytes.withUnsafeBufferPointer({ String(validating: UnsafeBufferPointer(rebasing: $0[f[1]]), as: UTF8.self) }) else {
                        throw malformed("the word '\(text(f[1]))' is not UTF-8 (convert the file, e.g. iconv -f latin1 -t utf-8)")
                    }
                    guard model.wordIDs[w] == nil else { throw malformed("duplicate 1-gram '\(w)'") }
                    let id = model.addWord(w)
                    model.tables[0].context.append(-1)
                    model.tables[0].word.append(id)
                    model.tables[0].logProb.append(p)
                    model.tables[0].backoff.append(b)
                    model.tables[0].present.append(true)
                } else {
                    for k in 0..<n {
                        let w = text(f[k + 1])
                        guard let id = model.wordIDs[w] else { throw malformed("word '\(w)' is not among the 1-grams") }
                        ids[k] = id
                    }
                    var context = ids[0]
                    if n > 2 {
                        for m in 1..<(n - 1) {
                            // A missing prefix gets a placeholder: usable as a context (back-off 0) but
                            // never as a probability.
                            context = model.tables[m].insert(context: context, word: ids[m], logProb: -99, backoff: 0, present: false).0
                        }
                    }
                    let (i, inserted) = model.tables[n - 1].insert(context: context, word: ids[n - 1], logProb: p, backoff: b, present: true)
                    if !inserted {
                        guard !model.tables[n - 1].present[Int(i)] else {
                            throw malformed("duplicate \(n)-gram '\(f[1...n].map(text).joined(separator: " "))'")
                        }
                        model.tables[n - 1].logProb[Int(i)] = p
                        model.tables[n - 1].backoff[Int(i)] = b
                        model.tables[n - 1].present[Int(i)] = true
                    }
                }
                seen += 1
            }
            guard seen == declared[n - 1] else {
                throw LanguageModelError.countMismatch(file: name, order: n, declared: declared[n - 1], found: seen)
            }
            expectedOrder += 1
            if header == nil { break }
        }
        guard sawEnd else { throw LanguageModelError.missingSection(file: name, section: "\\end\\") }
        guard expectedOrder == order + 1 else {
            throw LanguageModelError.missingSection(file: name, section: "\\\(expectedOrder)-grams:")
        }
        model.freeze()
        return model
    }
}
