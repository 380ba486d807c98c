/// A closed vocabulary for the prefix beam search: the words a transcript may contain, as a character
/// trie over a model's tokens.
///
/// Owns the distinct words it was made from (sorted) and the trie of those it can spell, in a flat
/// layout built once and shared, copy-on-write, by every decoder whose configuration carries it (a
/// recogniser makes a decoder per stream; none of them rebuilds it). State 0 is the root (no letter of
/// the word yet). A state's number is above its parent's (states are numbered as first reached). State `s`'s children are `childTokens[childStart[s]..<childStart[s+1]]`, ascending,
/// leading to the states at the same positions of `childStates`; `allowed` holds the same children as
/// one bit per token (`maskWords` 64-bit words per state) so a frame's likeliest tokens can be tested
/// against a state in constant time.
public struct Lexicon: Sendable, Equatable {
    /// The vocabulary the trie spells words in.
    public let vocabulary: Vocabulary
    /// Distinct words given, sorted (those the vocabulary cannot spell included: see `unspellable`).
    public let words: [String]
    /// Words with a character the vocabulary has no token for (or a space); they are not in the trie.
    public let unspellable: [String]

    // Trie, flat (see the type's comment). Every array is indexed by state, except the child arrays.
    let childStart: [Int32]
    let childTokens: [Int32]
    let childStates: [Int32]
    /// Index in `words` of the word that ends at a state, -1 where none does.
    let wordAt: [Int32]
    let maskWords: Int
    let allowed: [UInt64]
    /// Bounds from a language model for the search's lookahead, computed once by `scored(by:)`.
    public private(set) var lookahead: LanguageModelLookahead? = nil

    /// What the beam search adds to a partial word in advance (see `BeamSearchDecoder`): per trie state,
    /// the best context-free log probability a language model gives a word below it. The search adds it
    /// only to rank prefixes (the real score replaces it when the word completes), so a lexicon scored by
    /// another model than the decoder's still decodes correctly, only with less apt pruning.
    public struct LanguageModelLookahead: Sendable, Equatable {
        /// Per state: the highest unigram natural-log probability of a word below it that the model
        /// knows; -infinity when it knows none.
        var bestKnown: [Double]
        /// Per state: whether a word below it is unknown to the model.
        var unknownBelow: [Bool]
        /// The model's `<unk>` unigram natural-log probability; nil when it has no `<unk>`.
        var unknownLogProbability: Double?
    }

    /// The lexicon of `words` (duplicates and empty strings ignored) spelled in `vocabulary`'s tokens,
    /// one token per character.
    public init(words: some Sequence<String>, vocabulary: Vocabulary) {
        self.vocabulary = vocabulary
        let sorted = Set(words.filter { !$0.isEmpty }).sorted()
        self.words = sorted
        var tokenOf: [Character: Int32] = [:]
        for (i, t) in vocabulary.tokens.enumerated() where i != vocabulary.blank && i != vocabulary.space && t.count == 1 {
            tokenOf[t.first!] = Int32(i)
        }
        // Build with a hash map of edges, then lay the states' children out contiguously.
        var edges: [UInt64: Int32] = [:]
        var endOf: [Int32] = [-1]
        var unspellable: [String] = []
        var spelled: [Int32] = []
        for (index, word) in sorted.enumerated() {
            spelled.removeAll(keepingCapacity: true)
            for ch in word {
                guard let t = tokenOf[ch] else { break }
                spelled.append(t)
            }
            guard spelled.count == word.count else { unspellable.append(word); continue }
            var state: Int32 = 0
            for t in spelled {
                let key = UInt64(UInt32(state)) << 32 | UInt64(UInt32(t))
                if let s = edges[key] {
                    state = s
                } else {
                    let s = Int32(endOf.count)
                    endOf.append(-1)
                    edges[key] = s
                    state = s
                }
            }
            endOf[Int(state)] = Int32(index)
        }
        self.unspellable = unspellable
        let states = endOf.count
        var perState = [[(token: Int32, state: Int32)]](repeating: [], count: states)
        for (key, child) in edges { perState[Int(key >> 32)].append((Int32(truncatingIfNeeded: key & 0xffff_ffff), child)) }
        var start: [Int32] = [0]
        var tokens: [Int32] = []
        var targets: [Int32] = []
        let maskWords = (vocabulary.count + 63) / 64
        var allowed = [UInt64](repeating: 0, count: states * maskWords)
        for s in 0..<states {
            for (t, c) in perState[s].sorted(by: { $0.token < $1.token }) {
                tokens.append(t)
                targets.append(c)
                allowed[s * maskWords + Int(t) / 64] |= 1 << UInt64(Int(t) % 64)
            }
            start.append(Int32(tokens.count))
        }
        childStart = start
        childTokens = tokens
        childStates = targets
        wordAt = endOf
        self.maskWords = maskWords
        self.allowed = allowed
    }

    /// States in the trie (the root included).
    public var stateCount: Int { wordAt.count }
    /// Words in the trie: `words` less `unspellable`.
    public var spellableCount: Int { words.count - unspellable.count }

    /// Whether `words` holds `word`, spelled in the trie (the question the search answers by construction).
    public func contains(_ word: String) -> Bool {
        var state: Int32 = 0
        guard let tokens = vocabulary.tokenize(word), !tokens.isEmpty else { return false }
        for t in tokens {
            state = child(of: state, token: t)
            if state < 0 { return false }
        }
        return wordAt[Int(state)] >= 0
    }

    /// This lexicon with `languageModel`'s lookahead bounds, so decoders need not compute them: a
    /// recogniser makes a decoder per stream, and for a lexicon of many thousand words the bounds cost
    /// milliseconds each time.
    public func scored(by languageModel: NGramLanguageModel) -> Lexicon {
        var out = self
        out.lookahead = lookahead(for: languageModel)
        return out
    }

    /// The lookahead bounds for `lm`. A child's state number is above its parent's, so one pass from
    /// the last state up takes every subtree's maximum.
    func lookahead(for lm: NGramLanguageModel) -> LanguageModelLookahead {
        var best = [Double](repeating: -.infinity, count: stateCount)
        var unknown = [Bool](repeating: false, count: stateCount)
        for s in stride(from: stateCount - 1, through: 1, by: -1) {
            let w = wordAt[s]
            if w >= 0 {
                if let id = lm.wordID(words[Int(w)]) {
                    best[s] = max(best[s], lm.logProbability(of: id, history: []))
                } else {
                    unknown[s] = true
                }
            }
            for i in Int(childStart[s])..<Int(childStart[s + 1]) {
                let c = Int(childStates[i])
                best[s] = max(best[s], best[c])
                unknown[s] = unknown[s] || unknown[c]
            }
        }
        return LanguageModelLookahead(bestKnown: best, unknownBelow: unknown,
                                      unknownLogProbability: lm.unknownID.map { lm.logProbability(of: $0, history: []) })
    }

    /// The words an open-vocabulary search with `languageModel` spells without the unknown-letter cost
    /// (`BeamSearchConfiguration.knownWords`): the model's words but its sentence markers and `<unk>`, and
    /// the words of the hotwords with a positive weight, scored by the model.
    public static func knownWords(of languageModel: NGramLanguageModel, hotwords: [Hotword], vocabulary: Vocabulary) -> Lexicon {
        let special: Set<String> = [NGramLanguageModel.sentenceStart, NGramLanguageModel.sentenceEnd, NGramLanguageModel.unknown]
        return Lexicon(words: languageModel.words.filter { !special.contains($0) } + hotwords.favouredWords, vocabulary: vocabulary)
            .scored(by: languageModel)
    }

    /// The same words spelled in `other`'s tokens (itself when `other` is its vocabulary).
    public func respelled(for other: Vocabulary) -> Lexicon {
        other == vocabulary ? self : Lexicon(words: words, vocabulary: other)
    }

    @inline(__always)
    func isAllowed(_ token: Int, from state: Int32) -> Bool {
        allowed[Int(state) * maskWords + token >> 6] & (1 << UInt64(token & 63)) != 0
    }

    /// The state after `token` from `state`, -1 when the trie has no such edge. Children are few (at most
    /// the alphabet) and sorted; a linear scan is as fast as anything at these sizes.
    @inline(__always)
    func child(of state: Int32, token: Int) -> Int32 {
        let t = Int32(token)
        var i = Int(childStart[Int(state)])
        let end = Int(childStart[Int(state) + 1])
        while i < end {
            let c = childTokens[i]
            if c == t { return childStates[i] }
            if c > t { return -1 }
            i += 1
        }
        return -1
    }

    @inline(__always)
    func endsWord(_ state: Int32) -> Bool { wordAt[Int(state)] >= 0 }
}
