import Foundation

/// Why a language model could not be read or written; each case names the file.
public enum LanguageModelError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case malformed(file: String, line: Int, reason: String)
    case missingSection(file: String, section: String)
    case countMismatch(file: String, order: Int, declared: Int, found: Int)
    case unwritable(file: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason):
            return "cannot read language model \(file): \(reason)"
        case let .malformed(file, line, reason):
            return "\(file):\(line): malformed ARPA line: \(reason)"
        case let .missingSection(file, section):
            return "language model \(file) has no \(section) section; is it an ARPA file?"
        case let .countMismatch(file, order, declared, found):
            return "language model \(file): \\data\\ declares \(declared) \(order)-grams but the \\\(order)-grams: section has \(found)"
        case let .unwritable(file, reason):
            return "cannot write language model \(file): \(reason)"
        }
    }
}

/// A word n-gram language model with ARPA (Katz back-off) semantics.
///
/// Owns the word list (ids are positions in it), and per order a table of n-grams: each n-gram is
/// stored as (index of its (n-1)-gram prefix, last word id), hashed into one `UInt64` key, so looking
/// up an n-gram costs n-1 hash probes and no string work. Probabilities and back-offs are kept as the
/// log10 values of the ARPA file (exactly what was read or will be written); queries return natural
/// logs.
public struct NGramLanguageModel: Sendable {
    public static let sentenceStart = "<s>"
    public static let sentenceEnd = "</s>"
    public static let unknown = "<unk>"

    /// Highest n-gram order.
    public internal(set) var order: Int
    /// Words of the model; a word's id is its index.
    public internal(set) var words: [String] = []
    var wordIDs: [String: Int32] = [:]
    /// tables[n-1] holds the n-grams.
    var tables: [NGramTable]

    public var sentenceStartID: Int32? { wordIDs[Self.sentenceStart] }
    public var sentenceEndID: Int32? { wordIDs[Self.sentenceEnd] }
    public var unknownID: Int32? { wordIDs[Self.unknown] }

    init(order: Int) {
        precondition(order >= 1, "n-gram order must be at least 1")
        self.order = order
        self.tables = (0..<order).map { _ in NGramTable() }
    }

    /// Number of n-grams of order `n` (1-based) that carry a probability.
    public func count(order n: Int) -> Int { tables[n - 1].logProb.indices.filter { tables[n - 1].present[$0] }.count }

    public func wordID(_ word: String) -> Int32? { wordIDs[word] }

    mutating func addWord(_ word: String) -> Int32 {
        if let id = wordIDs[word] { return id }
        let id = Int32(words.count)
        words.append(word)
        wordIDs[word] = id
        return id
    }

    /// Natural-log probability of `word` after `history` (oldest first; only the last `order - 1` words
    /// count). Ids must come from this model. Follows ARPA back-off: use the longest stored n-gram
    /// ending in `word`, adding the back-off weight of every longer context that was not stored with
    /// `word`.
    public func logProbability(of word: Int32, history: [Int32]) -> Double {
        history.withUnsafeBufferPointer { logProbability(of: word, history: $0) }
    }

    func logProbability(of word: Int32, history: UnsafeBufferPointer<Int32>) -> Double {
        let maxContext = min(history.count, order - 1)
        var backoff: Float = 0
        var k = maxContext
        while k >= 1 {
            if let context = index(of: history, last: k) {
                if let i = tables[k].find(context: context, word: word), tables[k].present[Int(i)] {
                    return (Double(tables[k].logProb[Int(i)]) + Double(backoff)) * ln10
                }
                backoff += tables[k - 1].backoff[Int(context)]
            }
            k -= 1
        }
        let p = tables[0].logProb[Int(word)]
        return (Double(p) + Double(backoff)) * ln10
    }

    /// Convenience for strings: unknown words are scored as `<unk>`, or get `-infinity` when the model
    /// has no `<unk>`. Unknown history words break the context there (as `<unk>` if present).
    public func logProbability(_ word: String, history: [String]) -> Double {
        guard let w = wordIDs[word] ?? unknownID else { return -.infinity }
        var ids: [Int32] = []
        for h in history {
            if let id = wordIDs[h] ?? unknownID { ids.append(id) } else { ids.removeAll() }
        }
        return logProbability(of: w, history: ids)
    }

    /// Index in tables[k-1] of the k-gram made of the last k words of `history`.
    @inline(__always)
    func index(of history: UnsafeBufferPointer<Int32>, last k: Int) -> Int32? {
        var idx = history[history.count - k]
        var n = 1
        while n < k {
            guard let next = tables[n].find(context: idx, word: history[history.count - k + n]) else { return nil }
            idx = next
            n += 1
        }
        return idx
    }

    /// The words of n-gram `i` of order `n`.
    func ngramWords(order n: Int, index i: Int32) -> [Int32] {
        var out: [Int32] = []
        var idx = i
        var m = n
        while m > 1 {
            out.append(tables[m - 1].word[Int(idx)])
            idx = tables[m - 1].contextOf(idx)
            m -= 1
        }
        out.append(idx)
        return out.reversed()
    }
}

let ln10 = 2.302585092994046

/// The n-grams of one order.
///
/// Built with a hash index (`insert`, `find` by `context index << 32 | word id`); `freeze()` then
/// lays every order out as a trie: the n-grams sorted by (context, word), each context's followers a
/// contiguous range (`childStart`) searched by bisection. The frozen layout is what every loaded or
/// trained model serves from, and what the binary format (`NGramLanguageModel+Binary`) stores: flat
/// arrays that load with a copy instead of two million hash insertions. Unigrams are indexed by word
/// id in both.
struct NGramTable: Sendable {
    var index: [UInt64: Int32] = [:]
    /// Each entry's context (an index into the order below) while building; empty once frozen, where
    /// `childStart` holds the same and scoring never asks (a 15 MB array for the general English LM).
    var context: [Int32] = []
    var word: [Int32] = []
    /// log10 probability (ARPA value).
    var logProb: [Float] = []
    /// log10 back-off weight; 0 when absent. Empty for the highest order once frozen: nothing follows
    /// its n-grams, so scoring never reads it.
    var backoff: [Float] = []
    /// false for placeholder entries created only because a longer n-gram needs them as a context
    /// (ARPA files should list every prefix, but not all tools do).
    var present: [Bool] = []
    /// Frozen layout only (orders 2 and up): the followers of context `c` (an index into the order below)
    /// are entries `childStart[c] ..< childStart[c + 1]`, sorted by word id. Empty while building.
    var childStart: [Int32] = []

    var count: Int { logProb.count }
    var isFrozen: Bool { !childStart.isEmpty }

    @inline(__always)
    static func key(_ context: Int32, _ word: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: context)) << 32 | UInt64(UInt32(bitPattern: word))
    }

    @inline(__always)
    func find(context: Int32, word w: Int32) -> Int32? {
        guard isFrozen else { return index[Self.key(context, w)] }
        return childStart.withUnsafeBufferPointer { starts -> Int32? in
            let c = Int(context)
            guard c >= 0, c + 1 < starts.count else { return nil }
            var lo = Int(starts[c]), hi = Int(starts[c + 1])
            return word.withUnsafeBufferPointer { words -> Int32? in
                while lo < hi {
                    let mid = (lo + hi) >> 1
                    let m = words[mid]
                    if m == w { return Int32(mid) }
                    if m < w { lo = mid + 1 } else { hi = mid }
                }
                return nil
            }
        }
    }

    /// The context (an index into the order below) of entry `i`: stored while building, found by
    /// bisection in `childStart` once frozen (the last context whose followers start at or before `i`,
    /// so empty ranges are passed over).
    func contextOf(_ i: Int32) -> Int32 {
        guard isFrozen else { return context[Int(i)] }
        var lo = 0, hi = childStart.count - 1
        while lo + 1 < hi {
            let mid = (lo + hi) >> 1
            if childStart[mid] <= i { lo = mid } else { hi = mid }
        }
        return Int32(lo)
    }

    /// Appends an entry (higher orders) and returns its index, or the existing index. Only while building.
    mutating func insert(context: Int32, word w: Int32, logProb p: Float, backoff b: Float, present isPresent: Bool) -> (Int32, inserted: Bool) {
        precondition(!isFrozen, "n-gram table is frozen")
        let k = Self.key(context, w)
        if let existing = index[k] { return (existing, false) }
        let i = Int32(logProb.count)
        index[k] = i
        self.context.append(context)
        word.append(w)
        logProb.append(p)
        backoff.append(b)
        present.append(isPresent)
        return (i, true)
    }

    /// Renumbers this table's contexts through `contextMap` (old index in the order below -> new),
    /// sorts the entries by (context, word), fills `childStart` for `contextCount` contexts and drops the
    /// hash index. Returns this table's own old -> new map, which the order above renumbers through.
    mutating func freeze(contextMap: [Int32], contextCount: Int, highest: Bool) -> [Int32] {
        let n = count
        let contexts = context.map { contextMap[Int($0)] }
        let keys = (0..<n).map { Self.key(contexts[$0], word[$0]) }
        let order = (0..<n).sorted { keys[$0] < keys[$1] }
        var map = [Int32](repeating: 0, count: n)
        for (new, old) in order.enumerated() { map[old] = Int32(new) }
        word = order.map { word[$0] }
        logProb = order.map { logProb[$0] }
        backoff = highest ? [] : order.map { backoff[$0] }
        present = order.map { present[$0] }
        childStart = Self.starts(of: order.map { contexts[$0] }, contextCount: contextCount)
        context = []
        index = [:]
        return map
    }

    /// `childStart` for entries sorted by `contexts`: the first entry of each context, then the end.
    static func starts(of contexts: [Int32], contextCount: Int) -> [Int32] {
        var starts = [Int32](repeating: 0, count: contextCount + 1)
        for c in contexts { starts[Int(c) + 1] += 1 }
        for c in 0..<contextCount { starts[c + 1] += starts[c] }
        return starts
    }
}

extension NGramLanguageModel {
    /// Lays every order out as a sorted trie (see `NGramTable`); n-gram indices change, probabilities
    /// do not. Called once a model is complete (parsed or trained); a frozen model takes no insertions.
    mutating func freeze() {
        guard order >= 2, !tables[1].isFrozen else { return }
        var map = (0..<Int32(tables[0].count)).map { $0 }
        tables[0].context = []
        for n in 2...order {
            map = tables[n - 1].freeze(contextMap: map, contextCount: tables[n - 2].count, highest: n == order)
        }
    }
}
