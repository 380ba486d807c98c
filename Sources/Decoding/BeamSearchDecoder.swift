import Tensors

/// A word or phrase whose recognition should be encouraged, with its bonus (natural-log units).
public struct Hotword: Sendable, Equatable, Codable {
    /// One or more words separated by spaces, spelled in the vocabulary's tokens.
    public var phrase: String
    /// Added to a hypothesis' score each time it completes the phrase's last word right after the
    /// phrase's other words.
    public var weight: Double

    public init(_ phrase: String, weight: Double) {
        self.phrase = phrase
        self.weight = weight
    }
}

extension Array where Element == Hotword {
    /// These hotwords with `extra` added; a phrase already here takes the later weight (they do not
    /// add up).
    public func merging(_ extra: [Hotword]) -> [Hotword] {
        var merged = self
        for h in extra {
            if let i = merged.firstIndex(where: { $0.phrase == h.phrase }) { merged[i] = h } else { merged.append(h) }
        }
        return merged
    }

    /// The words of the phrases with a positive weight: the ones a search may spell for free (a negative
    /// weight asks for a phrase less often, not for its words).
    public var favouredWords: [String] {
        filter { $0.weight > 0 }.flatMap { $0.phrase.split(separator: " ").map(String.init) }
    }
}

/// Settings of the prefix beam search. Scores are natural logs.
public struct BeamSearchConfiguration: Sendable, Equatable {
    /// Prefixes kept after each frame.
    public var beamWidth: Int = 16
    /// At most this many non-blank tokens are tried as extensions per frame (`nil`: all).
    public var tokenTopK: Int? = nil
    /// Per frame, tokens are taken from the most likely down until their posteriors (blank included)
    /// add up to this; the non-blank ones among them are tried as extensions. 1 keeps every token.
    public var tokenCumulativeProbability: Double = 1.0
    /// Frames whose blank posterior exceeds this only extend existing prefixes by blank or by
    /// repeating their last token (no new tokens), which skips most of the work on silence. `nil`
    /// disables the shortcut.
    public var blankSkipThreshold: Double? = nil
    /// alpha: weight of the language model's natural-log word probability.
    public var lmWeight: Double = 0.5
    /// beta: added for every completed word (balances the LM's preference for few words).
    public var wordInsertionBonus: Double = 0
    /// Added for a completed word the language model does not know (on top of its `<unk>`
    /// probability, when the model has `<unk>`). Only used with a language model.
    public var unknownWordPenalty: Double = -10
    /// Open-vocabulary search with a language model: the natural-log probability of each letter of a word
    /// that is neither the language model's nor a hotword's, a spelling model that, weighted by `lmWeight`
    /// like the rest of the LM score, is added for such a word (on top of `unknownWordPenalty`) and
    /// charged while it is spelled. With a flat penalty alone, one long invented word, paying it once,
    /// undercut the several real words it swallowed, and the search ran whole sentences together: 74.6 %
    /// WER against 34.3 % closed on 200 validation utterances with the general trigram, 35.2 % with this
    /// (any value from about -2.5 to -6.3 per letter gave the same; models/README.md).
    public var unknownLetterLogProbability: Double = defaultUnknownLetterLogProbability
    /// ln(1/28): every letter as likely as any other of 26 letters, the apostrophe and the end of the word.
    public static let defaultUnknownLetterLogProbability = -3.332204510175204
    /// Phrases to boost.
    public var hotwords: [Hotword] = []
    /// Per matched character, added while the word being spelled is a prefix of a hotword's word, so
    /// the beam keeps a partial hotword alive until it is complete. The bonus is temporary: it is
    /// removed when the word ends (then the hotword's full weight applies if the phrase matched).
    public var hotwordPrefixBonus: Double = 0
    /// Closed-vocabulary search: when set, prefixes only grow along the lexicon's trie (a word ends, and
    /// a space may follow it, only where a lexicon word ends), so every word of every result is one of
    /// its words. Each prefix then tries the letters its trie state allows: all of them when they are at
    /// most `tokenTopK`, else the `tokenTopK` likeliest of them this frame (so a word is reachable even
    /// when its next letter is far from the frame's global top-k), plus a space after a complete word.
    /// `tokenCumulativeProbability` does not apply (it is a global cut, the thing this mode avoids).
    public var lexicon: Lexicon? = nil
    /// Open-vocabulary search with a language model (`lexicon` nil): the words spelled without the
    /// unknown-letter cost, as a trie: the language model's words and the hotwords' (see
    /// `BeamSearchDecoder`). nil: the decoder builds it from its language model and hotwords; given, it
    /// is built (and scored, `Lexicon.scored(by:)`) once for every decoder a recogniser makes.
    public var knownWords: Lexicon? = nil

    public init(beamWidth: Int = 16, tokenTopK: Int? = nil, tokenCumulativeProbability: Double = 1.0,
                blankSkipThreshold: Double? = nil, lmWeight: Double = 0.5, wordInsertionBonus: Double = 0,
                unknownWordPenalty: Double = -10, hotwords: [Hotword] = [], hotwordPrefixBonus: Double = 0,
                lexicon: Lexicon? = nil, knownWords: Lexicon? = nil,
                unknownLetterLogProbability: Double = defaultUnknownLetterLogProbability) {
        self.beamWidth = beamWidth
        self.tokenTopK = tokenTopK
        self.tokenCumulativeProbability = tokenCumulativeProbability
        self.blankSkipThreshold = blankSkipThreshold
        self.lmWeight = lmWeight
        self.wordInsertionBonus = wordInsertionBonus
        self.unknownWordPenalty = unknownWordPenalty
        self.hotwords = hotwords
        self.hotwordPrefixBonus = hotwordPrefixBonus
        self.lexicon = lexicon
        self.knownWords = knownWords
        self.unknownLetterLogProbability = unknownLetterLogProbability
    }
}

/// One prefix of the beam.
public struct BeamHypothesis: Sendable, Equatable {
    /// Collapsed token sequence (no blanks).
    public var tokens: [Int]
    public var text: String
    /// log P_ctc(tokens | frames so far): the sum over every alignment of the prefix.
    public var acousticLogProbability: Double
    /// Acoustic log probability plus LM, word bonus and hotword scores (and, after `finalHypotheses`,
    /// the last word's and the end-of-sentence LM scores).
    public var score: Double
}

/// CTC prefix beam search with optional word n-gram shallow fusion and hotword boosting.
///
/// Owns the prefix tree of every hypothesis seen in the current utterance (each node caches its
/// LM/hotword score so a prefix is scored once), a parallel tree of emission records (frame spans and
/// posteriors, for word times and confidences), the current beam, and per-frame scratch buffers sized
/// once. The score of a prefix is
/// `log P_ctc + alpha * sum log P_lm(word | history) + beta * words + hotword bonuses`; LM and bonuses
/// are added when a word is completed by a space (or by `finalize()`, which also adds
/// `alpha * log P_lm(</s> | history)`). Every operation is per frame, so streaming over any chunking
/// equals offline decoding.
///
/// Every candidate extension tried gets a tree node, so the trees grow by up to
/// `beamWidth x candidates` nodes per frame; they are compacted (rebuilt keeping only what the live beam
/// can still reach: the ancestors of its prefixes and emission records, and the words they spell) whenever
/// they have doubled since the last compaction, so memory stays proportional to `beamWidth` times the
/// utterance length however long the audio runs. Node ids never decide anything (ties between equal
/// scores are broken by the prefixes' tokens, see `precedes`), so compaction cannot change a result.
///
/// A frame whose logits cannot be normalised (a NaN or +infinity in it, or no finite entry) carries no
/// usable evidence; it is skipped: the beam stays as it was and only the frame clock advances, so word
/// times after it stay right. (Treating it as a certain blank would instead split a token held across it.)
public struct BeamSearchDecoder: StreamingCTCDecoder {
    public let vocabulary: Vocabulary
    public let frameDuration: Double
    public let configuration: BeamSearchConfiguration
    public let languageModel: NGramLanguageModel?

    struct Node {
        var parent: Int32
        var token: Int32
        /// First node of the word being spelled, -1 when none (after a space or at the start).
        var wordStart: Int32
        /// Most recent node that completed a word on this prefix (itself if it completes one), -1 if none.
        var lastWord: Int32
        /// For word-completing nodes: the previous word-completing node.
        var previousWord: Int32
        /// For word-completing nodes: the completed word's id in `wordStrings`.
        var wordID: Int32
        /// LM, word-bonus and hotword scores of the completed words.
        var fixedScore: Double
        /// Temporary scores of the word being spelled, replaced by its real ones when it completes: the
        /// hotword-prefix bonus, and the LM lookahead or the unknown-word cost it is bound for (see
        /// `lmLookahead`, `knownWords`).
        var partialBonus: Double
        /// State in the hotword character trie for the word being spelled; -1 when off the trie.
        var hotwordState: Int32
        /// Tokens in the prefix (0 for the root), for the id-free tie-break in `precedes`.
        var depth: Int32
        /// The trie state of the word being spelled in the closed vocabulary (`lexicon`), or in an open
        /// search with a language model in its `knownWords` (-1: off that trie, an unknown word); 0 (the
        /// root) after a space or at the start. 0 throughout in an open search without a language model.
        var lexState: Int32 = 0
    }

    struct Record {
        var parent: Int32
        var token: Int32
        var start: Int32
        var end: Int32
        var peak: Double
        /// A later record has this one as its parent: a prefix that stays on this character must then
        /// write its new end and peak into a copy, not into its children's history.
        var shared = false
    }

    struct Entry {
        var node: Int32
        var record: Int32
        var pb: Double
        var pnb: Double
    }

    struct NextEntry {
        var node: Int32
        var record: Int32
        var pending: Bool
        var peak: Double
        var pb: Double
        var pnb: Double
        /// The largest single contribution to this prefix so far: the path carrying it decides the
        /// timing record (continuing the prefix's own, or starting its last character this frame).
        var lead = -Double.infinity
        /// The continuation stayed on its last character (rather than moving to a blank), with this
        /// posterior: the record's end moves to this frame if the continuation decides the record.
        var stayPeak: Double?
    }

    // Prefix tree and emission records.
    private var nodes: [Node] = []
    private var children: [UInt64: Int32] = [:]
    private var records: [Record] = []
    private var slotOf: [Int32] = []
    // Beam and scratch.
    private var beam: [Entry] = []
    private var next: [NextEntry] = []
    private var order: [Int] = []
    private var scores: [Double] = []
    private var candidates: [Int] = []
    private var sortedTokens: [Int] = []
    private var logPosteriors: [Double]
    private var frame = 0
    // Words seen in this decoder (ids index `wordStrings`), with their LM ids (-1: unknown).
    private var wordIDs: [String: Int32] = [:]
    private var wordStrings: [String] = []
    private var lmIDs: [Int32] = []
    /// Words interned by `init` (the hotwords'); their ids are fixed because `phrasesByLastWord` uses them.
    private var fixedWordCount = 0
    private var historyScratch: [Int32] = []
    // Compaction: when the trees next get rebuilt, and scratch maps reused by every rebuild.
    var compaction: Compaction = .automatic
    private var compactAt = 0
    private var nodeMap: [Int32] = []
    private var recordMap: [Int32] = []
    private var wordMap: [Int32] = []
    // Hotwords: a character trie over their words, and phrases indexed by their last word.
    private var hotwordTrie: [UInt64: Int32] = [:]
    private var hotwordDepth: [Int32] = [0]
    private var phrasesByLastWord: [Int32: [(words: [Int32], weight: Double)]] = [:]
    /// The words of hotwords with a positive weight: exempt from the unknown-word penalty.
    private var favouredWords: Set<Int32> = []
    // Closed vocabulary: the trie (in this decoder's vocabulary), and whether `sortedTokens` holds this
    // frame's ranking yet (it is only needed for trie states with more than `tokenTopK` children).
    private let lexicon: Lexicon?
    /// Open vocabulary with a language model and a letter cost (`unknownLetterLogProbability` not 0):
    /// `configuration.knownWords`, or built from the model and the hotwords. A partial word on its trie is ranked, like a closed-vocabulary one, by the best known
    /// word it can become (`lmLookahead`); one that leaves it can only become an unknown word, and is
    /// ranked by what that will cost, its letters' `unknownLetterLogProbability` included, so a run of
    /// words glued into one long invented word pays for its length while it grows, before the beam has
    /// dropped the real words it displaced. nil otherwise.
    private let knownWords: Lexicon?
    private var rankedThisFrame = false
    /// For the trie in use (the closed `lexicon`, or `knownWords`): bounds for the best completion score of
    /// the words below each trie state (the word bonus plus alpha times the LM's context-free log
    /// probability; alpha times `<unk>`'s for a favoured hotword the LM lacks), added to a partial word as a
    /// temporary bonus ("LM smearing") and replaced by the real score when the word completes. In a
    /// closed search every started word must complete, so this only anticipates a score the prefix will
    /// get: half-spelled words compete with complete transcripts (the empty one included) on the bonus
    /// and LM score they are bound for, not on acoustics alone. In an open one a word on the trie may
    /// still leave it; then the unknown-word cost replaces the bound. The trie's own when
    /// `Lexicon.scored(by:)` made them, else computed here.
    private let lmLookahead: Lexicon.LanguageModelLookahead?

    public init(vocabulary: Vocabulary = .earshot, frameDuration: Double = 0.04,
                configuration: BeamSearchConfiguration = BeamSearchConfiguration(),
                languageModel: NGramLanguageModel? = nil) {
        precondition(configuration.beamWidth >= 1, "beam width must be at least 1")
        self.vocabulary = vocabulary
        self.frameDuration = frameDuration
        self.configuration = configuration
        self.languageModel = languageModel
        self.logPosteriors = [Double](repeating: 0, count: vocabulary.count)
        self.lexicon = configuration.lexicon?.respelled(for: vocabulary)
        // Without a letter cost (domain decoding) the open search is the plain one, whose flat unknown-word
        // penalty was tuned without a trie.
        if configuration.lexicon == nil, configuration.unknownLetterLogProbability != 0, let languageModel {
            knownWords = (configuration.knownWords ?? Lexicon.knownWords(of: languageModel, hotwords: configuration.hotwords,
                                                                          vocabulary: vocabulary)).respelled(for: vocabulary)
        } else {
            knownWords = nil
        }
        if let trie = lexicon ?? knownWords, let languageModel {
            lmLookahead = trie.lookahead ?? trie.lookahead(for: languageModel)
        } else {
            lmLookahead = nil
        }
        for hotword in configuration.hotwords {
            let phraseWords = hotword.phrase.split(separator: " ").map(String.init)
            guard let last = phraseWords.last else { continue }
            let ids = phraseWords.map { intern($0) }
            phrasesByLastWord[intern(last), default: []].append((ids, hotword.weight))
            // A negative weight asks for the phrase less often: its letters get no prefix bonus.
            guard hotword.weight > 0 else { continue }
            favouredWords.formUnion(ids)
            for w in phraseWords {
                guard let tokens = vocabulary.tokenize(w) else { continue }
                var state: Int32 = 0
                for t in tokens {
                    let key = UInt64(UInt32(state)) << 32 | UInt64(t)
                    if let s = hotwordTrie[key] {
                        state = s
                    } else {
                        let s = Int32(hotwordDepth.count)
                        hotwordDepth.append(hotwordDepth[Int(state)] + 1)
                        hotwordTrie[key] = s
                        state = s
                    }
                }
            }
        }
        fixedWordCount = wordStrings.count
        reset()
    }

    /// When the prefix tree and the emission records are rebuilt (internal so tests can force it).
    enum Compaction: Sendable, Equatable {
        /// When nodes plus records reach twice what survived the last rebuild (at least `minimumSize`).
        case automatic
        /// After every frame (tests: results must not change).
        case everyFrame
        /// Never (tests: the reference the other policies must equal).
        case never

        static let minimumSize = 1 << 14
    }

    public mutating func reset() {
        nodes.removeAll(keepingCapacity: true)
        children.removeAll(keepingCapacity: true)
        records.removeAll(keepingCapacity: true)
        slotOf.removeAll(keepingCapacity: true)
        nodes.append(Node(parent: -1, token: -1, wordStart: -1, lastWord: -1, previousWord: -1, wordID: -1,
                          fixedScore: 0, partialBonus: 0, hotwordState: 0, depth: 0))
        slotOf.append(-1)
        beam = [Entry(node: 0, record: -1, pb: 0, pnb: -.infinity)]
        frame = 0
        // Words of finished utterances are dropped with their nodes; a long-lived decoder must not
        // accumulate every word string it ever tried.
        wordStrings.removeSubrange(fixedWordCount...)
        lmIDs.removeSubrange(fixedWordCount...)
        wordIDs = wordIDs.filter { $0.value < Int32(fixedWordCount) }
        compactAt = Compaction.minimumSize
    }

    // MARK: - Frames

    public mutating func accept(_ logits: Matrix) {
        precondition(logits.cols == vocabulary.count, "logits have \(logits.cols) columns, vocabulary has \(vocabulary.count) tokens")
        let v = logits.cols
        var lp = logPosteriors
        logPosteriors = []
        logits.data.withUnsafeBufferPointer { all in
            lp.withUnsafeMutableBufferPointer { out in
                for r in 0..<logits.rows {
                    if logSoftmax(UnsafeBufferPointer(rebasing: all[(r * v)..<((r + 1) * v)]), into: out) {
                        step(UnsafeBufferPointer(out))
                        compactIfDue()
                    }
                    frame += 1
                }
            }
        }
        logPosteriors = lp
    }

    private mutating func selectCandidates(_ lp: UnsafeBufferPointer<Double>) {
        candidates.removeAll(keepingCapacity: true)
        let blank = vocabulary.blank
        let topK = configuration.tokenTopK ?? lp.count
        if configuration.tokenCumulativeProbability >= 1 && topK >= lp.count - 1 {
            for c in 0..<lp.count where c != blank { candidates.append(c) }
            return
        }
        rankTokens(lp)
        var mass = 0.0
        for c in sortedTokens {
            if mass >= configuration.tokenCumulativeProbability || candidates.count >= topK { break }
            mass += exp(lp[c])
            if c != blank { candidates.append(c) }
        }
    }

    /// `sortedTokens`: every token, likeliest first (ties: lower id first).
    private mutating func rankTokens(_ lp: UnsafeBufferPointer<Double>) {
        sortedTokens.removeAll(keepingCapacity: true)
        sortedTokens.append(contentsOf: 0..<lp.count)
        sortedTokens.sort { lp[$0] > lp[$1] || (lp[$0] == lp[$1] && $0 < $1) }
    }

    @inline(__always)
    private mutating func slot(for node: Int32, record: Int32, pending: Bool, peak: Double) -> Int {
        let s = slotOf[Int(node)]
        if s >= 0 { return Int(s) }
        next.append(NextEntry(node: node, record: record, pending: pending, peak: peak, pb: -.infinity, pnb: -.infinity))
        slotOf[Int(node)] = Int32(next.count - 1)
        return next.count - 1
    }

    private mutating func step(_ lp: UnsafeBufferPointer<Double>) {
        next.removeAll(keepingCapacity: true)
        let blankLP = lp[vocabulary.blank]
        let onlyContinue = configuration.blankSkipThreshold.map { exp(blankLP) > $0 } ?? false
        if onlyContinue || lexicon != nil {
            candidates.removeAll(keepingCapacity: true)
        } else {
            selectCandidates(lp)
        }
        rankedThisFrame = false
        for e in beam {
            let total = logAddExp(e.pb, e.pnb)
            let last = nodes[Int(e.node)].token
            let toBlank = total + blankLP
            // Continuation of the prefix itself: blank, or repeating its last token (collapsed).
            let s = slot(for: e.node, record: e.record, pending: false, peak: 0)
            let stay = last >= 0 ? e.pnb + lp[Int(last)] : -Double.infinity
            let own = logAddExp(toBlank, stay)
            // Ties go to the continuation: a character starts anew only when the path entering it
            // now carries more than the prefix already there (a prefix can enter the beam frames
            // before its character is the likeliest state; its start is when the dominant path enters).
            if own >= next[s].lead {
                next[s].record = e.record
                next[s].pending = false
                next[s].lead = own
            }
            next[s].pb = logAddExp(next[s].pb, toBlank)
            if last >= 0 {
                next[s].pnb = logAddExp(next[s].pnb, stay)
                // The last character lasts while staying in it beats moving on to a blank.
                if stay > toBlank, e.record >= 0 { next[s].stayPeak = exp(lp[Int(last)]) }
            }
            if lexicon != nil {
                if !onlyContinue { extendInLexicon(e, total: total, last: last, lp) }
                continue
            }
            for c in candidates { extend(e, token: c, total: total, last: last, lp) }
        }
        // Keep the best `beamWidth`; ties broken by the prefixes themselves, so the result never depends
        // on chunking or on node ids (which compaction renumbers).
        order.removeAll(keepingCapacity: true)
        scores.removeAll(keepingCapacity: true)
        for i in next.indices {
            scores.append(score(next[i]))
            // A repeat from a prefix with no blank-ending path is impossible; don't let it take a slot.
            if scores[i] > -.infinity { order.append(i) }
        }
        // A frame that leaves nothing possible (blank and every allowed letter at -inf, as a masked
        // logit can give in a closed search) is skipped like a non-finite one: the beam would otherwise
        // be empty for the rest of the utterance.
        if order.isEmpty {
            for n in next { slotOf[Int(n.node)] = -1 }
            return
        }
        if order.count > configuration.beamWidth {
            // Sorted outside `self` (the comparator reads the tree); the buffer moves, nothing is copied.
            var ranked = order
            order = []
            ranked.sort { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && precedes(next[$0].node, next[$1].node)) }
            if lexicon != nil { reserveEndablePrefixes(&ranked) }
            ranked.removeLast(ranked.count - configuration.beamWidth)
            order = ranked
        }
        beam.removeAll(keepingCapacity: true)
        // Parents first: a prefix that stays on a character this frame while a child moves on from it
        // must not write this frame into the record the child's history goes through.
        for i in order where next[i].pending && next[i].record >= 0 { records[Int(next[i].record)].shared = true }
        for i in order {
            let n = next[i]
            var record = n.record
            if n.pending {
                records.append(Record(parent: n.record, token: nodes[Int(n.node)].token, start: Int32(frame), end: Int32(frame), peak: n.peak))
                record = Int32(records.count - 1)
            } else if let stayPeak = n.stayPeak, record >= 0 {
                var r = records[Int(record)]
                r.end = Int32(frame)
                r.peak = max(r.peak, stayPeak)
                if r.shared {
                    r.shared = false
                    records.append(r)
                    record = Int32(records.count - 1)
                } else {
                    records[Int(record)] = r
                }
            }
            beam.append(Entry(node: n.node, record: record, pb: n.pb, pnb: n.pnb))
        }
        for n in next { slotOf[Int(n.node)] = -1 }
    }

    @inline(__always)
    private mutating func extend(_ e: Entry, token c: Int, total: Double, last: Int32, _ lp: UnsafeBufferPointer<Double>) {
        let child = childOf(e.node, token: c)
        // After the same token only a blank-ending path may emit it again.
        let add = Int32(c) == last ? e.pb + lp[c] : total + lp[c]
        let cs = slot(for: child, record: e.record, pending: true, peak: exp(lp[c]))
        if add > next[cs].lead {
            next[cs].record = e.record
            next[cs].pending = true
            next[cs].peak = exp(lp[c])
            next[cs].lead = add
        }
        next[cs].pnb = logAddExp(next[cs].pnb, add)
    }

    /// Closed vocabulary: extends `e` by the letters its trie state allows (all, or the `tokenTopK`
    /// likeliest of them this frame) and by a space when its word is complete.
    private mutating func extendInLexicon(_ e: Entry, total: Double, last: Int32, _ lp: UnsafeBufferPointer<Double>) {
        let lexicon = self.lexicon.unsafelyUnwrapped
        let state = nodes[Int(e.node)].lexState
        let first = Int(lexicon.childStart[Int(state)]), end = Int(lexicon.childStart[Int(state) + 1])
        let topK = configuration.tokenTopK ?? lp.count
        if end - first <= topK {
            for i in first..<end { extend(e, token: Int(lexicon.childTokens[i]), total: total, last: last, lp) }
        } else {
            if !rankedThisFrame { rankTokens(lp); rankedThisFrame = true }
            var taken = 0
            for c in sortedTokens where lexicon.isAllowed(c, from: state) {
                extend(e, token: c, total: total, last: last, lp)
                taken += 1
                if taken == topK { break }
            }
        }
        if state > 0, lexicon.endsWord(state), let space = vocabulary.space {
            extend(e, token: space, total: total, last: last, lp)
        }
    }

    /// Whether a word ending at trie state `state` escapes the unknown-letter cost: always in a closed
    /// search (every word is the lexicon's), in an open one when `knownWords` has it.
    private func isListed(_ state: Int32) -> Bool {
        if lexicon != nil { return true }
        guard let knownWords else { return false }
        return state > 0 && knownWords.endsWord(state)
    }

    /// Open vocabulary: what completing an unknown, unlisted word of `letters` letters adds (`completeWord`).
    private func unknownWordScore(letters: Int) -> Double {
        var score = configuration.wordInsertionBonus + configuration.unknownWordPenalty
            + configuration.lmWeight * configuration.unknownLetterLogProbability * Double(letters)
        if let p = lmLookahead?.unknownLogProbability { score += configuration.lmWeight * p }
        return score
    }

    /// See `lmLookahead`.
    private func anticipatedWordScore(_ state: Int32) -> Double {
        guard let la = lmLookahead else { return configuration.wordInsertionBonus }
        var best = -Double.infinity
        let known = la.bestKnown[Int(state)]
        // (alpha may be 0: never multiply the -infinity of "no known word".)
        if known > -.infinity { best = configuration.lmWeight * known }
        // A listed word the LM lacks is a hotword's, which completes without the unknown-word penalty.
        if la.unknownBelow[Int(state)] {
            best = max(best, configuration.lmWeight * (la.unknownLogProbability ?? 0))
        }
        return configuration.wordInsertionBonus + best
    }

    /// Closed vocabulary: at least `max(1, beamWidth / 4)` of the prefixes kept (when that many exist)
    /// are ones a transcript may end with: empty, or ending in a complete word. Half-spelled words are
    /// cheaper than whole ones (every letter the acoustics barely support costs), so on weak acoustics
    /// they can fill the beam, and by the end of the audio no prefix it holds may end there; the
    /// reserved slots keep the best complete transcripts alive. They replace the lowest-ranked prefixes
    /// that are not endable; `ranked` is sorted best first and cut to `beamWidth` by the caller.
    private func reserveEndablePrefixes(_ ranked: inout [Int]) {
        let width = configuration.beamWidth
        let reserve = max(1, width / 4)
        var have = 0
        for i in 0..<width where !endsMidWord(next[ranked[i]].node) { have += 1 }
        var slot = width - 1
        var j = width
        while have < reserve && j < ranked.count {
            if !endsMidWord(next[ranked[j]].node) {
                while slot >= 0 && !endsMidWord(next[ranked[slot]].node) { slot -= 1 }
                if slot < 0 { return }
                ranked[slot] = ranked[j]
                slot -= 1
                have += 1
            }
            j += 1
        }
    }

    @inline(__always)
    private func score(_ n: NextEntry) -> Double {
        let node = nodes[Int(n.node)]
        return logAddExp(n.pb, n.pnb) + node.fixedScore + node.partialBonus
    }

    // MARK: - Prefix tree and word scores

    private mutating func childOf(_ parent: Int32, token: Int) -> Int32 {
        // 32 bits each: token ids of any vocabulary size, node ids up to Int32.max.
        let key = childKey(parent, token)
        if let c = children[key] { return c }
        let p = nodes[Int(parent)]
        let index = Int32(nodes.count)
        var n = Node(parent: parent, token: Int32(token), wordStart: -1, lastWord: p.lastWord, previousWord: -1,
                     wordID: -1, fixedScore: p.fixedScore, partialBonus: 0, hotwordState: 0, depth: p.depth + 1)
        if token == vocabulary.space {
            if p.wordStart >= 0 {
                // The lexicon knows the word at a word-end state; no need to walk back and spell it.
                let word = lexicon.map { $0.words[Int($0.wordAt[Int(p.lexState)])] } ?? spelling(from: p.wordStart, to: parent)
                let (id, delta) = completeWord(word, lastWord: p.lastWord, listed: isListed(p.lexState),
                                               letters: Int(p.depth - nodes[Int(p.wordStart)].depth) + 1)
                n.wordID = id
                n.previousWord = p.lastWord
                n.lastWord = index
                n.fixedScore = p.fixedScore + delta
            }
        } else {
            if let lexicon {
                n.lexState = lexicon.child(of: p.lexState, token: token)
                precondition(n.lexState > 0, "closed-vocabulary search extended a prefix off its lexicon")
            } else if let knownWords {
                n.lexState = p.lexState >= 0 ? knownWords.child(of: p.lexState, token: token) : -1
            }
            n.wordStart = p.wordStart >= 0 ? p.wordStart : index
            let from: Int32 = p.wordStart >= 0 ? p.hotwordState : 0
            if from >= 0, let s = hotwordTrie[UInt64(UInt32(from)) << 32 | UInt64(token)] {
                n.hotwordState = s
                n.partialBonus = configuration.hotwordPrefixBonus * Double(hotwordDepth[Int(s)])
            } else {
                n.hotwordState = -1
            }
            if lexicon != nil || (knownWords != nil && n.lexState > 0) {
                n.partialBonus += anticipatedWordScore(n.lexState)
            } else if knownWords != nil {
                let letters = p.wordStart >= 0 ? Int(n.depth - nodes[Int(p.wordStart)].depth) + 1 : 1
                n.partialBonus += unknownWordScore(letters: letters)
            }
        }
        nodes.append(n)
        slotOf.append(-1)
        children[key] = index
        return index
    }

    @inline(__always)
    private func childKey(_ parent: Int32, _ token: Int) -> UInt64 { UInt64(UInt32(parent)) << 32 | UInt64(UInt32(token)) }

    /// Whether prefix `a` goes before prefix `b` when their scores tie: the shorter first, then the one
    /// with the smaller token at the first difference. A total order on distinct prefixes that ignores
    /// node ids. Only reached on exact ties, so walking to the common ancestor costs nothing in practice.
    private func precedes(_ a: Int32, _ b: Int32) -> Bool {
        if a == b { return false }
        let da = nodes[Int(a)].depth, db = nodes[Int(b)].depth
        if da != db { return da < db }
        var x = a, y = b
        while nodes[Int(x)].parent != nodes[Int(y)].parent {
            x = nodes[Int(x)].parent
            y = nodes[Int(y)].parent
        }
        return nodes[Int(x)].token < nodes[Int(y)].token
    }

    /// The text spelled by nodes `first`...`last` (one word).
    private func spelling(from first: Int32, to last: Int32) -> String {
        var tokens: [Int32] = []
        var i = last
        while true {
            tokens.append(nodes[Int(i)].token)
            if i == first || i <= 0 { break }
            i = nodes[Int(i)].parent
        }
        return tokens.reversed().map { vocabulary.tokens[Int($0)] }.joined()
    }

    private mutating func intern(_ word: String) -> Int32 {
        if let id = wordIDs[word] { return id }
        let id = Int32(wordStrings.count)
        wordStrings.append(word)
        wordIDs[word] = id
        lmIDs.append(languageModel?.wordID(word) ?? -1)
        return id
    }

    /// LM history (oldest first, at most order-1 words) ending with the word at `lastWord`, then
    /// `extra` if given; `<s>` starts it when the utterance start is within reach.
    private func lmHistory(lastWord: Int32, appending extra: Int32?, lm: NGramLanguageModel) -> [Int32] {
        let room = lm.order - 1
        var reversed: [Int32] = []
        if let extra, room > 0 { reversed.append(lmOrUnknown(extra, lm)) }
        var w = lastWord
        while reversed.count < room && w >= 0 {
            reversed.append(lmOrUnknown(nodes[Int(w)].wordID, lm))
            w = nodes[Int(w)].previousWord
        }
        if reversed.count < room && w < 0, let bos = lm.sentenceStartID { reversed.append(bos) }
        // An unknown word without <unk> in the model cuts the history there.
        if let cut = reversed.firstIndex(of: -1) { reversed.removeLast(reversed.count - cut) }
        return reversed.reversed()
    }

    private func lmOrUnknown(_ word: Int32, _ lm: NGramLanguageModel) -> Int32 {
        let id = lmIDs[Int(word)]
        return id >= 0 ? id : (lm.unknownID ?? -1)
    }

    /// Word id and score change for completing `word` (`letters` tokens) after the words ending at
    /// `lastWord`; `listed`: the word is exempt from `unknownLetterLogProbability` (`isListed`).
    private mutating func completeWord(_ word: String, lastWord: Int32, listed: Bool, letters: Int) -> (Int32, Double) {
        let id = intern(word)
        var delta = configuration.wordInsertionBonus
        if let lm = languageModel {
            let history = lmHistory(lastWord: lastWord, appending: nil, lm: lm)
            let lmID = lmIDs[Int(id)]
            if lmID >= 0 {
                delta += configuration.lmWeight * lm.logProbability(of: lmID, history: history)
            } else {
                if let unk = lm.unknownID {
                    delta += configuration.lmWeight * lm.logProbability(of: unk, history: history)
                }
                // A listed word the LM lacks is a hotword: the user named it, so it is scored as the LM's
                // rarest words are (`<unk>`), not as an invented spelling; its own weight does the rest.
                if !favouredWords.contains(id) {
                    delta += configuration.unknownWordPenalty
                }
                if !listed { delta += configuration.lmWeight * configuration.unknownLetterLogProbability * Double(letters) }
            }
        }
        if let phrases = phrasesByLastWord[id] {
            for phrase in phrases where matches(phrase.words, lastWord: lastWord) {
                delta += phrase.weight
            }
        }
        return (id, delta)
    }

    /// Whether the words before the last of `phrase` are the most recent completed words.
    private func matches(_ phrase: [Int32], lastWord: Int32) -> Bool {
        var w = lastWord
        for k in stride(from: phrase.count - 2, through: 0, by: -1) {
            guard w >= 0, nodes[Int(w)].wordID == phrase[k] else { return false }
            w = nodes[Int(w)].previousWord
        }
        return true
    }

    // MARK: - Compaction

    /// Nodes in the prefix tree (tests: it must stay bounded).
    var nodeCount: Int { nodes.count }
    /// Emission records held (tests).
    var recordCount: Int { records.count }
    /// Word strings held (tests).
    var wordCount: Int { wordStrings.count }

    private mutating func compactIfDue() {
        switch compaction {
        case .never: return
        case .everyFrame: compact()
        case .automatic:
            if nodes.count + records.count >= compactAt {
                compact()
                compactAt = max(Compaction.minimumSize, 2 * (nodes.count + records.count))
            }
        }
    }

    /// Rebuilds the trees with only what the beam can reach. Everything a node refers to (parent, word
    /// start, last and previous word) is one of its ancestors, and a record's parent is an earlier
    /// record of the same path, so the ancestors of the beam's nodes and records are closed under every
    /// link. Survivors keep their relative order (parents stay before children). Runs between frames,
    /// when no `slotOf` entry is in use.
    mutating func compact() {
        // Nodes: mark ancestors of the beam (nodeMap: 0 = dropped, 1 = kept), then number the kept.
        nodeMap.removeAll(keepingCapacity: true)
        nodeMap.append(contentsOf: repeatElement(0, count: nodes.count))
        nodeMap[0] = 1
        for e in beam {
            var n = e.node
            while n >= 0 && nodeMap[Int(n)] == 0 { nodeMap[Int(n)] = 1; n = nodes[Int(n)].parent }
        }
        recordMap.removeAll(keepingCapacity: true)
        recordMap.append(contentsOf: repeatElement(0, count: records.count))
        for e in beam {
            var r = e.record
            while r >= 0 && recordMap[Int(r)] == 0 { recordMap[Int(r)] = 1; r = records[Int(r)].parent }
        }
        // Words: the hotwords' keep their ids, others survive if a kept node completes them.
        wordMap.removeAll(keepingCapacity: true)
        wordMap.append(contentsOf: repeatElement(0, count: wordStrings.count))
        for w in 0..<fixedWordCount { wordMap[w] = 1 }
        for i in nodes.indices where nodeMap[i] != 0 && nodes[i].wordID >= 0 { wordMap[Int(nodes[i].wordID)] = 1 }

        func renumber(_ map: inout [Int32]) -> Int {
            var next: Int32 = 0
            for i in map.indices {
                if map[i] != 0 { map[i] = next; next += 1 } else { map[i] = -1 }
            }
            return Int(next)
        }
        let keptNodes = renumber(&nodeMap), keptRecords = renumber(&recordMap)
        _ = renumber(&wordMap)
        @inline(__always) func mapped(_ id: Int32, _ map: [Int32]) -> Int32 { id < 0 ? -1 : map[Int(id)] }

        var w = 0
        for i in nodes.indices where nodeMap[i] >= 0 {
            var n = nodes[i]
            n.parent = mapped(n.parent, nodeMap)
            n.wordStart = mapped(n.wordStart, nodeMap)
            n.lastWord = mapped(n.lastWord, nodeMap)
            n.previousWord = mapped(n.previousWord, nodeMap)
            n.wordID = mapped(n.wordID, wordMap)
            nodes[w] = n
            w += 1
        }
        nodes.removeSubrange(keptNodes...)
        children.removeAll(keepingCapacity: true)
        for i in 1..<max(1, keptNodes) { children[childKey(nodes[i].parent, Int(nodes[i].token))] = Int32(i) }
        slotOf.removeSubrange(keptNodes...)

        w = 0
        for i in records.indices where recordMap[i] >= 0 {
            var r = records[i]
            r.parent = mapped(r.parent, recordMap)
            records[w] = r
            w += 1
        }
        records.removeSubrange(keptRecords...)

        w = 0
        for i in wordStrings.indices where wordMap[i] >= 0 {
            wordStrings[w] = wordStrings[i]
            lmIDs[w] = lmIDs[i]
            w += 1
        }
        wordStrings.removeSubrange(w...)
        lmIDs.removeSubrange(w...)
        wordIDs.removeAll(keepingCapacity: true)
        for (i, word) in wordStrings.enumerated() { wordIDs[word] = Int32(i) }

        for i in beam.indices {
            beam[i].node = nodeMap[Int(beam[i].node)]
            beam[i].record = mapped(beam[i].record, recordMap)
        }
    }

    // MARK: - Results

    private func tokens(of node: Int32) -> [Int] {
        var out: [Int] = []
        var i = node
        while i > 0 {
            out.append(Int(nodes[Int(i)].token))
            i = nodes[Int(i)].parent
        }
        return out.reversed()
    }

    private func transcript(record: Int32) -> Transcript {
        var emitted: [EmittedToken] = []
        var r = record
        while r >= 0 {
            let rec = records[Int(r)]
            emitted.append(EmittedToken(token: Int(rec.token), startFrame: Int(rec.start), endFrame: Int(rec.end), peakPosterior: rec.peak))
            r = rec.parent
        }
        return assembleTranscript(emitted.reversed(), vocabulary: vocabulary, frameDuration: frameDuration)
    }

    private func hypothesis(_ e: Entry, score: Double) -> BeamHypothesis {
        let t = tokens(of: e.node)
        return BeamHypothesis(tokens: t, text: t.map { vocabulary.tokens[$0] }.joined(),
                              acousticLogProbability: logAddExp(e.pb, e.pnb), score: score)
    }

    private func currentScore(_ e: Entry) -> Double {
        let n = nodes[Int(e.node)]
        return logAddExp(e.pb, e.pnb) + n.fixedScore + n.partialBonus
    }

    /// The beam now, best first, scored without end-of-utterance terms.
    public func hypotheses() -> [BeamHypothesis] {
        beam.map { hypothesis($0, score: currentScore($0)) }.sorted { $0.score > $1.score }
    }

    /// Whether a closed-vocabulary prefix stops inside a word (no transcript may end there).
    private func endsMidWord(_ node: Int32) -> Bool {
        guard let lexicon else { return false }
        let state = nodes[Int(node)].lexState
        return state > 0 && !lexicon.endsWord(state)
    }

    /// Score with the pending word completed and the end-of-sentence LM term; -infinity for a
    /// closed-vocabulary prefix that stops inside a word.
    private mutating func finalScore(_ e: Entry) -> Double {
        let n = nodes[Int(e.node)]
        if endsMidWord(e.node) { return -.infinity }
        var s = logAddExp(e.pb, e.pnb) + n.fixedScore
        let lastWord = n.lastWord
        var pending: Int32? = nil
        if n.wordStart >= 0 {
            let (id, delta) = completeWord(spelling(from: n.wordStart, to: e.node), lastWord: n.lastWord, listed: isListed(n.lexState),
                                           letters: Int(n.depth - nodes[Int(n.wordStart)].depth) + 1)
            s += delta
            pending = id
        }
        if let lm = languageModel, let eos = lm.sentenceEndID {
            let history = lmHistory(lastWord: lastWord, appending: pending, lm: lm)
            s += configuration.lmWeight * lm.logProbability(of: eos, history: history)
        }
        return s
    }

    /// The beam as it would be finalised now, best first (the n-best list).
    public mutating func finalHypotheses() -> [BeamHypothesis] {
        let entries = beam
        var scored: [(Entry, Double)] = []
        for e in entries { scored.append((e, finalScore(e))) }
        scored.sort { $0.1 > $1.1 || ($0.1 == $1.1 && precedes($0.0.node, $1.0.node)) }
        return scored.map { hypothesis($0.0, score: $0.1) }
    }

    public func partial() -> Transcript {
        var best: Entry? = nil
        var bestScore = -Double.infinity
        for e in beam {
            let s = currentScore(e)
            if best == nil || s > bestScore || (s == bestScore && precedes(e.node, best!.node)) { best = e; bestScore = s }
        }
        guard let best else { return .empty }
        return transcript(record: best.record)
    }

    public mutating func finalize() -> Transcript {
        var best: Entry? = nil
        var bestScore = -Double.infinity
        for e in beam {
            let s = finalScore(e)
            if best == nil || s > bestScore || (s == bestScore && precedes(e.node, best!.node)) { best = e; bestScore = s }
        }
        var result = best.map { transcript(record: $0.record) } ?? .empty
        if let b = best, bestScore == -.infinity, endsMidWord(b.node) {
            // Closed vocabulary, and every prefix left stops inside a word (the audio was cut mid-word):
            // the words before it are all the lexicon allows.
            var bestCurrent = -Double.infinity
            var fallback = b
            for e in beam where currentScore(e) > bestCurrent { bestCurrent = currentScore(e); fallback = e }
            result = transcript(record: fallback.record)
            if endsMidWord(fallback.node) { result = Transcript(words: Array(result.words.dropLast())) }
        }
        reset()
        return result
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
