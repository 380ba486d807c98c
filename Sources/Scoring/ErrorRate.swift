/// Substitution, deletion and insertion counts of hypotheses against references.
///
/// Owns the counts only; the rate is derived. Counts add, so corpus scores are sums of utterance
/// scores: corpus error rate = sum of errors / sum of reference lengths, as NIST sclite reports it.
public struct ErrorCounts: Sendable, Equatable, Codable, CustomStringConvertible {
    public var hits = 0
    public var substitutions = 0
    public var deletions = 0
    public var insertions = 0

    public init(hits: Int = 0, substitutions: Int = 0, deletions: Int = 0, insertions: Int = 0) {
        self.hits = hits
        self.substitutions = substitutions
        self.deletions = deletions
        self.insertions = insertions
    }

    /// Tokens in the reference: hits + substitutions + deletions.
    public var referenceLength: Int { hits + substitutions + deletions }
    public var errors: Int { substitutions + deletions + insertions }
    /// errors / reference length (can exceed 1); 0 for an empty reference with no errors and
    /// +infinity for an empty reference with insertions.
    public var rate: Double {
        if errors == 0 { return 0 }
        return referenceLength == 0 ? .infinity : Double(errors) / Double(referenceLength)
    }

    public static func + (a: ErrorCounts, b: ErrorCounts) -> ErrorCounts {
        ErrorCounts(hits: a.hits + b.hits, substitutions: a.substitutions + b.substitutions,
                    deletions: a.deletions + b.deletions, insertions: a.insertions + b.insertions)
    }

    public static func += (a: inout ErrorCounts, b: ErrorCounts) { a = a + b }

    public var description: String {
        let pct = referenceLength == 0 ? (errors == 0 ? "0.0" : "inf") : String(format1(100 * rate))
        return "\(pct)% (\(referenceLength) ref: \(substitutions) sub, \(deletions) del, \(insertions) ins)"
    }
}

/// Formats with one decimal (no Foundation needed).
func format1(_ x: Double) -> String {
    let scaled = (x * 10).rounded()
    let whole = Int(scaled) / 10
    let tenth = abs(Int(scaled) % 10)
    return "\(scaled < 0 && whole == 0 ? "-" : "")\(whole).\(tenth)"
}

/// One step of an alignment.
public enum AlignmentOperation: Sendable, Equatable {
    case correct(String)
    case substitution(reference: String, hypothesis: String)
    case deletion(String)
    case insertion(String)
}

/// Levenshtein alignment with sclite's costs and tie-breaking, and word/character error rates.
///
/// Costs are those of sclite's `wwd_WORD`: correct 0, substitution 4, insertion 3, deletion 3, so
/// that among minimum-cost alignments the counts (S, D, I) are exactly the ones sclite reports. Ties
/// between predecessors are broken as sclite's dynamic programme does: diagonal (correct or
/// substitution) if no worse than both others, else deletion if strictly better than insertion, else
/// insertion; the path is traced back from the end of both sequences.
public enum ErrorRate {
    public static let substitutionCost = 4
    public static let insertionCost = 3
    public static let deletionCost = 3

    /// Aligns two token sequences.
    ///
    /// Memory: one byte per cell (the back-pointers, needed for the trace-back) plus two rows of costs,
    /// so a long utterance (10 000 x 10 000 characters: 100 MB) still aligns.
    public static func align(reference: [String], hypothesis: [String]) -> [AlignmentOperation] {
        let n = reference.count, m = hypothesis.count
        let w = m + 1
        // Back-pointer per cell, row-major (reference index x hypothesis index): 0 diagonal, 1 deletion,
        // 2 insertion. Costs of the previous and the current reference row only.
        var back = [UInt8](repeating: 0, count: (n + 1) * w)
        var previous = [Int](repeating: 0, count: w)
        var current = [Int](repeating: 0, count: w)
        for b in 1...max(m, 1) where b <= m { previous[b] = b * insertionCost; back[b] = 2 }
        // Token ids, so the inner loop compares integers rather than strings.
        var ids: [String: Int] = [:]
        func id(_ token: String) -> Int {
            if let i = ids[token] { return i }
            ids[token] = ids.count
            return ids.count - 1
        }
        let ref = reference.map(id), hyp = hypothesis.map(id)
        if n > 0 {
            for a in 1...n {
                current[0] = a * deletionCost; back[a * w] = 1
                let r = ref[a - 1]
                for b in stride(from: 1, through: m, by: 1) {
                    let diagonal = previous[b - 1] + (r == hyp[b - 1] ? 0 : substitutionCost)
                    let deletion = previous[b] + deletionCost
                    let insertion = current[b - 1] + insertionCost
                    if diagonal <= deletion && diagonal <= insertion {
                        current[b] = diagonal; back[a * w + b] = 0
                    } else if deletion < insertion {
                        current[b] = deletion; back[a * w + b] = 1
                    } else {
                        current[b] = insertion; back[a * w + b] = 2
                    }
                }
                swap(&previous, &current)
            }
        }
        var ops: [AlignmentOperation] = []
        var a = n, b = m
        while a > 0 || b > 0 {
            switch back[a * w + b] {
            case 0:
                let r = reference[a - 1], h = hypothesis[b - 1]
                ops.append(r == h ? .correct(r) : .substitution(reference: r, hypothesis: h))
                a -= 1; b -= 1
            case 1:
                ops.append(.deletion(reference[a - 1]))
                a -= 1
            default:
                ops.append(.insertion(hypothesis[b - 1]))
                b -= 1
            }
        }
        return ops.reversed()
    }

    /// Counts of an alignment.
    public static func counts(_ ops: [AlignmentOperation]) -> ErrorCounts {
        var c = ErrorCounts()
        for op in ops {
            switch op {
            case .correct: c.hits += 1
            case .substitution: c.substitutions += 1
            case .deletion: c.deletions += 1
            case .insertion: c.insertions += 1
            }
        }
        return c
    }

    /// Word errors after normalising both texts.
    public static func words(reference: String, hypothesis: String, normalizer: TextNormalizer = TextNormalizer()) -> ErrorCounts {
        counts(align(reference: normalizer.words(reference), hypothesis: normalizer.words(hypothesis)))
    }

    /// Character errors over the normalised texts. Spaces are left out by default, as `sclite -c`
    /// does (so a missed word boundary costs nothing); `includeSpaces` aligns them as characters too.
    /// A character is a Unicode code point, as `sclite -c -e utf-8` counts: "é" written as e and a
    /// combining accent is two, and a hypothesis missing the accent has one deletion.
    public static func characters(reference: String, hypothesis: String, normalizer: TextNormalizer = TextNormalizer(),
                                  includeSpaces: Bool = false) -> ErrorCounts {
        func chars(_ s: String) -> [String] {
            normalizer.normalize(s).unicodeScalars.compactMap { (includeSpaces || $0 != " ") ? String($0) : nil }
        }
        return counts(align(reference: chars(reference), hypothesis: chars(hypothesis)))
    }
}

/// Corpus-level scores: sums over utterances of word and character counts.
public struct CorpusScore: Sendable, Equatable, Codable {
    public var words = ErrorCounts()
    public var characters = ErrorCounts()
    public var utterances = 0
    /// Utterances with at least one word error (sclite's S.Err).
    public var utterancesWithErrors = 0

    public init() {}

    /// Scores `pairs` of (reference, hypothesis) texts.
    public init(pairs: [(reference: String, hypothesis: String)], normalizer: TextNormalizer = TextNormalizer(),
                charactersIncludeSpaces: Bool = false) {
        for p in pairs { add(reference: p.reference, hypothesis: p.hypothesis, normalizer: normalizer, charactersIncludeSpaces: charactersIncludeSpaces) }
    }

    public mutating func add(reference: String, hypothesis: String, normalizer: TextNormalizer = TextNormalizer(),
                             charactersIncludeSpaces: Bool = false) {
        let w = ErrorRate.words(reference: reference, hypothesis: hypothesis, normalizer: normalizer)
        words += w
        characters += ErrorRate.characters(reference: reference, hypothesis: hypothesis, normalizer: normalizer,
                                           includeSpaces: charactersIncludeSpaces)
        utterances += 1
        if w.errors > 0 { utterancesWithErrors += 1 }
    }

    /// Word error rate in percent, as sclite prints it (one decimal when formatted).
    public var wordErrorRatePercent: Double { 100 * words.rate }
    public var characterErrorRatePercent: Double { 100 * characters.rate }
}
