import Dispatch
import Foundation
import Scoring
import Tensors

/// Why domain text cannot become a `DomainDecoding`, or stored domain decoding cannot be read back.
/// Line numbers are 1-based lines of the domain text.
public enum DomainDecodingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The text has no line with a word in it.
    case emptyText
    /// A line has words, but none the model can spell (`letters` lists what it can).
    case noSpeakableWords(line: Int, text: String, letters: String)
    /// The JSON (language model included) would exceed `DomainDecoding.maximumJSONBytes`.
    case tooLarge(bytes: Int, limit: Int)
    case badOrder(Int)
    case badSetting(name: String, value: String)
    /// Stored JSON that does not decode (`reason` says where).
    case malformed(reason: String)
    /// The stored ARPA text does not parse.
    case languageModel(reason: String)
    /// Tuning inputs that cannot be scored.
    case tuning(reason: String)

    public var description: String {
        switch self {
        case .emptyText:
            return "the domain text has no words (one phrase or sentence per line is expected)"
        case let .noSpeakableWords(line, text, letters):
            return "domain text line \(line) ('\(text.prefix(80))') has no word the model can spell; its characters are \(letters): spell numbers and symbols out in words, or remove the line"
        case let .tooLarge(bytes, limit):
            return "domain decoding would take \(bytes) bytes, more than the \(limit)-byte limit of a model file's decoding entry; use less domain text"
        case .badOrder(let order):
            return "n-gram order \(order): must be 1 to \(DomainDecoding.maximumOrder)"
        case let .badSetting(name, value):
            return "domain decoding \(name) \(value) is not usable"
        case .malformed(let reason):
            return "stored domain decoding is malformed: \(reason)"
        case .languageModel(let reason):
            return "stored domain decoding's language model: \(reason)"
        case .tuning(let reason):
            return "cannot tune the domain decoding weights: \(reason)"
        }
    }
}

/// Decoding adapted to a domain, as stored with a model (the model file's "decoding" entry): a word
/// n-gram language model trained on the domain text (kept as ARPA text), the domain's word list, the
/// hotwords picked from it, the words the model cannot spell, and the beam-search weights to fuse
/// them with.
///
/// Built from text with `build(text:vocabulary:generalLM:order:)`, tuned on validation posteriors
/// with `tuned(posteriors:references:vocabulary:...)`, written with `json()` and read with
/// `init(json:)`. The search configuration it decodes with comes from
/// `BeamSearchConfiguration.recognition`, the same one `earshot` and `earshotd` use, so tuned weights
/// mean the same thing at recognition time.
public struct DomainDecoding: Sendable, Equatable, Codable {
    /// Value of the "format" key; lets a reader tell this JSON from other decoding defaults.
    public static let formatName = "earshot-domain-decoding"
    public static let formatVersion = 1
    /// The most bytes of JSON a domain decoding may take. A model file keeps it in its safetensors
    /// header, which every reader parses whole before any tensor; 8 MiB holds the trigram model of a
    /// few hundred thousand words of domain text and keeps loading fast. Bigger corpora are general
    /// language models: pass them with `--lm`.
    public static let maximumJSONBytes = 8 * 1024 * 1024
    public static let maximumOrder = 6
    public static let defaultOrder = 3
    public static let defaultLMWeight = 0.5
    public static let defaultWordBonus = 1.0
    public static let defaultBeam = 16
    public static let defaultUnknownWordPenalty = -10.0
    /// Bonus of an automatically picked hotword. Lower than a user hotword's (3): the domain LM already
    /// favours these words, the bonus only has to win acoustic near-misses.
    public static let defaultHotwordWeight = 2.0
    /// A domain word is a hotword when the general LM lacks it or gives it a unigram log10 probability
    /// below this (-6 is rarer than about 70% of the 72k words of the Pocketsphinx en-us model, i.e.
    /// outside its ~20k commonest words).
    public static let rareWordLog10Threshold = -6.0
    /// Single-word hotwords shorter than this are skipped: short words match inside many others.
    public static let minimumHotwordLength = 3
    /// At most this many hotwords are kept (each costs trie states in every beam step).
    public static let maximumHotwords = 100

    public var format: String = Self.formatName
    public var formatVersion: Int = Self.formatVersion
    /// The domain language model as ARPA text (back-off form, log10 values).
    public var arpa: String
    public var order: Int
    /// Distinct domain words the model can spell, sorted.
    public var words: [String]
    /// Domain words with a character the model cannot spell; they are `<unk>` in the language model.
    public var skippedWords: [String]
    public var hotwords: [Hotword]
    /// alpha: weight of the LM's natural-log word probability.
    public var lmWeight: Double
    /// beta: score added per word.
    public var wordBonus: Double
    /// Beam width of the prefix search.
    public var beam: Int
    /// Added for a word the domain LM does not know (on top of its `<unk>` probability).
    public var unknownWordPenalty: Double
    /// Closed-vocabulary decoding: transcripts only contain `words` (and the hotwords' words), see
    /// `BeamSearchConfiguration.lexicon`. For a domain whose speech never leaves its word list (commands,
    /// digits, names from a fixed roster). Absent in JSON written before it existed: false.
    public var closedVocabulary: Bool
    /// WER (%) of the chosen weights on the validation set they were tuned on, and its size.
    public var tuning: Tuning?

    /// Where the weights came from: the validation WER of the chosen grid point.
    public struct Tuning: Sendable, Equatable, Codable {
        public var wordErrorRatePercent: Double
        public var utterances: Int
        public var words: Int
        public init(wordErrorRatePercent: Double, utterances: Int, words: Int) {
            self.wordErrorRatePercent = wordErrorRatePercent; self.utterances = utterances; self.words = words
        }
    }

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", arpa, order, words, skippedWords = "skipped_words", hotwords
        case lmWeight = "lm_weight", wordBonus = "word_bonus", beam, unknownWordPenalty = "unknown_word_penalty", tuning
        case closedVocabulary = "closed_vocabulary"
    }

    public init(arpa: String, order: Int, words: [String], skippedWords: [String] = [], hotwords: [Hotword] = [],
                lmWeight: Double = defaultLMWeight, wordBonus: Double = defaultWordBonus, beam: Int = defaultBeam,
                unknownWordPenalty: Double = defaultUnknownWordPenalty, closedVocabulary: Bool = false, tuning: Tuning? = nil) {
        self.arpa = arpa; self.order = order; self.words = words; self.skippedWords = skippedWords
        self.hotwords = hotwords; self.lmWeight = lmWeight; self.wordBonus = wordBonus; self.beam = beam
        self.unknownWordPenalty = unknownWordPenalty; self.closedVocabulary = closedVocabulary; self.tuning = tuning
    }

    /// Written out so that keys added after format version 1 (`closed_vocabulary`) may be absent: a model
    /// adapted before they existed keeps loading, with their defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(String.self, forKey: .format)
        formatVersion = try c.decode(Int.self, forKey: .formatVersion)
        arpa = try c.decode(String.self, forKey: .arpa)
        order = try c.decode(Int.self, forKey: .order)
        words = try c.decode([String].self, forKey: .words)
        skippedWords = try c.decode([String].self, forKey: .skippedWords)
        hotwords = try c.decode([Hotword].self, forKey: .hotwords)
        lmWeight = try c.decode(Double.self, forKey: .lmWeight)
        wordBonus = try c.decode(Double.self, forKey: .wordBonus)
        beam = try c.decode(Int.self, forKey: .beam)
        unknownWordPenalty = try c.decode(Double.self, forKey: .unknownWordPenalty)
        closedVocabulary = try c.decodeIfPresent(Bool.self, forKey: .closedVocabulary) ?? false
        tuning = try c.decodeIfPresent(Tuning.self, forKey: .tuning)
    }

    // MARK: building from text

    /// Builds the domain decoding of `text`: one sentence or phrase per line.
    ///
    /// Each line is normalised by the rules of Scoring's `TextNormalizer` (lowercase; typographic
    /// apostrophes become `'`; letters, digits and `'` are kept and everything else separates words;
    /// apostrophes at a word's edges are dropped),
    /// so the LM sees words exactly as references are scored. A word with a character `vocabulary`
    /// cannot spell (a digit, an accented letter) becomes `<unk>` and is listed in `skippedWords`;
    /// blank and punctuation-only lines are ignored; a line whose words are all unspeakable is an
    /// error naming it. The LM is `NGramLanguageModel.train` (interpolated Witten-Bell) of order
    /// `order` on the lines.
    ///
    /// Hotwords (weight `defaultHotwordWeight`, at most `maximumHotwords`):
    /// - every run of two or more consecutive capitalised words in a line ("Ada Lovelace"), as a phrase
    ///   (a name the LM alone might split or misspell), in order of first appearance. A run of three or
    ///   more that starts the line loses its first word, the sentence's capital ("Call Ada Lovelace" gives
    ///   "ada lovelace"), unless that word is capitalised inside a line somewhere in the text. A run with
    ///   a capitalised function word inside it or leading it ("Turn On The Kitchen Lights", "Set A
    ///   Timer" gives "a timer") is a line in title case, not a name, and gives none (`titleCaseWords`);
    /// - with `generalLM`: every domain word of at least `minimumHotwordLength` characters that the
    ///   general LM lacks or gives a unigram log10 probability below `rareWordLog10Threshold`, rarest
    ///   first. Without a general LM no single word is picked (rare and common cannot be told apart).
    ///
    /// `closedVocabulary` makes recognition with it produce only the domain's words (see the property).
    public static func build(text: String, vocabulary: Vocabulary, generalLM: NGramLanguageModel? = nil,
                             order: Int = defaultOrder, closedVocabulary: Bool = false) throws(DomainDecodingError) -> DomainDecoding {
        guard (1...maximumOrder).contains(order) else { throw .badOrder(order) }
        let speakable = SpeakableCharacters(vocabulary)
        var sentences: [String] = []
        var words = Set<String>()
        var skipped = Set<String>()
        // Runs of capitalised words, and whether each starts its line; words capitalised inside a line.
        var runs: [(words: [String], startsLine: Bool)] = []
        var capitalisedInside = Set<String>()
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let cased = domainWords(rawLine)
            if cased.isEmpty { continue }
            var sentence: [String] = []
            var run: [String] = []
            var runStart = 0
            func endRun() {
                if run.count >= 2 { runs.append((run, runStart == 0)) }
                run.removeAll()
            }
            for (position, word) in cased.enumerated() {
                let lower = word.lowercased()
                if speakable.canSpell(lower) {
                    sentence.append(lower)
                    words.insert(lower)
                    if word.first?.isUppercase == true {
                        if run.isEmpty { runStart = position }
                        run.append(lower)
                        if position > 0 { capitalisedInside.insert(lower) }
                    } else { endRun() }
                } else {
                    sentence.append(NGramLanguageModel.unknown)
                    skipped.insert(lower)
                    endRun()
                }
            }
            endRun()
            guard sentence.contains(where: { $0 != NGramLanguageModel.unknown }) else {
                throw .noSpeakableWords(line: lineNumber, text: String(rawLine), letters: speakable.letters)
            }
            sentences.append(sentence.joined(separator: " "))
        }
        guard !sentences.isEmpty else { throw .emptyText }

        let lm = NGramLanguageModel.train(sentences: sentences, order: order)
        var hotwords: [Hotword] = []
        var seen = Set<String>()
        let names: [String] = runs.compactMap { run in
            let name: ArraySlice<String> = run.startsLine && run.words.count >= 3 && !capitalisedInside.contains(run.words[0])
                ? run.words.dropFirst() : run.words[...]
            return Self.isTitleCase(name) ? nil : name.joined(separator: " ")
        }
        for name in names where seen.insert(name).inserted {
            hotwords.append(Hotword(name, weight: defaultHotwordWeight))
        }
        if let generalLM {
            var rare: [(word: String, log10: Double)] = []
            for word in words where word.count >= minimumHotwordLength && !seen.contains(word) {
                let p = generalLM.wordID(word).map { generalLM.logProbability(of: $0, history: []) / ln10 } ?? -.infinity
                if p < rareWordLog10Threshold { rare.append((word, p)) }
            }
            rare.sort { $0.log10 < $1.log10 || ($0.log10 == $1.log10 && $0.word < $1.word) }
            hotwords += rare.map { Hotword($0.word, weight: defaultHotwordWeight) }
        }
        if hotwords.count > maximumHotwords { hotwords.removeSubrange(maximumHotwords...) }

        let decoding = DomainDecoding(arpa: lm.arpaText(), order: order, words: words.sorted(),
                                      skippedWords: skipped.sorted(), hotwords: hotwords, closedVocabulary: closedVocabulary)
        let bytes = decoding.json().utf8.count
        guard bytes <= maximumJSONBytes else { throw .tooLarge(bytes: bytes, limit: maximumJSONBytes) }
        return decoding
    }

    /// Short function words that names write in lowercase ("Bank of America", "Isle of Man") and title
    /// case capitalises: one capitalised inside a name, or leading it (but "The"), marks title case.
    /// "A" only leads: inside a name it is an initial ("Chester A Arthur").
    static let titleCaseWords: Set<String> = ["an", "the", "of", "on", "in", "to", "for", "and", "or", "at", "by",
                                              "with", "from", "is", "are", "up", "off", "my", "your"]

    /// Whether a run of capitalised words is title case rather than a name: a function word inside it,
    /// or leading it ("The" may lead a name).
    static func isTitleCase(_ name: ArraySlice<String>) -> Bool {
        guard let first = name.first else { return false }
        if name.dropFirst().contains(where: { titleCaseWords.contains($0) }) { return true }
        return first != "the" && (first == "a" || titleCaseWords.contains(first))
    }

    /// Words of a line in their original case, split by `TextNormalizer`'s rules (see `build`).
    static func domainWords(_ line: Substring) -> [String] {
        TextNormalizer(lowercase: false).words(String(line))
    }

    // MARK: storing

    /// The JSON stored in a model file (keys sorted, so equal decodings give equal bytes).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Plain strings, numbers and arrays: encoding cannot fail.
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// Reads and checks stored JSON: the format, the size limit, every setting usable, and the ARPA text
    /// parses (so a model whose decoding entry is damaged is refused when loaded, not mid-recognition).
    public init(json: String) throws(DomainDecodingError) {
        let bytes = json.utf8.count
        guard bytes <= Self.maximumJSONBytes else { throw .tooLarge(bytes: bytes, limit: Self.maximumJSONBytes) }
        do {
            self = try JSONDecoder().decode(DomainDecoding.self, from: Data(json.utf8))
        } catch {
            throw .malformed(reason: "\(error)")
        }
        guard format == Self.formatName else { throw .malformed(reason: "format is '\(format)', expected '\(Self.formatName)'") }
        guard (1...Self.formatVersion).contains(formatVersion) else {
            throw .malformed(reason: "format_version \(formatVersion) is not supported (this build reads up to \(Self.formatVersion))")
        }
        try validate()
        let lm = try languageModel()
        guard lm.order == order else { throw .malformed(reason: "order is \(order) but the ARPA text has order \(lm.order)") }
    }

    /// Refuses settings no decoder can use.
    public func validate() throws(DomainDecodingError) {
        guard (1...Self.maximumOrder).contains(order) else { throw .badOrder(order) }
        for (name, value) in [("lm_weight", lmWeight), ("word_bonus", wordBonus), ("unknown_word_penalty", unknownWordPenalty)]
        where !value.isFinite {
            throw .badSetting(name: name, value: "\(value)")
        }
        guard beam >= 1 else { throw .badSetting(name: "beam", value: "\(beam)") }
        for h in hotwords where !h.weight.isFinite || h.phrase.split(separator: " ").isEmpty {
            throw .badSetting(name: "hotword", value: "'\(h.phrase)':\(h.weight)")
        }
    }

    /// Parses the stored ARPA text.
    public func languageModel() throws(DomainDecodingError) -> NGramLanguageModel {
        do { return try NGramLanguageModel(arpaText: arpa, name: "domain LM") } catch {
            throw .languageModel(reason: "\(error)")
        }
    }

    /// The beam search this decoding runs, with `extraHotwords` (a user's) merged into the stored
    /// ones; a phrase in both gets the extra one's weight. `closedVocabulary` overrides the stored
    /// choice; a closed search gets `lexicon(vocabulary:extraHotwords:)` (so a user's hotword stays
    /// reachable).
    public func searchConfiguration(lmWeight: Double? = nil, wordBonus: Double? = nil, beam: Int? = nil,
                                    unknownWordPenalty: Double? = nil, extraHotwords: [Hotword] = [],
                                    closedVocabulary: Bool? = nil, vocabulary: Vocabulary = .earshot) -> BeamSearchConfiguration {
        let lexicon = (closedVocabulary ?? self.closedVocabulary) ? self.lexicon(vocabulary: vocabulary, extraHotwords: extraHotwords) : nil
        return searchConfiguration(lmWeight: lmWeight, wordBonus: wordBonus, beam: beam, unknownWordPenalty: unknownWordPenalty,
                                   extraHotwords: extraHotwords, lexicon: lexicon)
    }

    /// `searchConfiguration` with a lexicon built once by the caller (tuning decodes many grid points).
    func searchConfiguration(lmWeight: Double?, wordBonus: Double?, beam: Int?, unknownWordPenalty: Double?,
                             extraHotwords: [Hotword], lexicon: Lexicon?) -> BeamSearchConfiguration {
        let merged = hotwords.merging(extraHotwords)
        // No per-letter spelling cost: a domain LM knows a few words, most of what its user says is
        // unknown to it, and the flat unknown-word penalty is tuned on the user's own validation speech
        // (`tuned`, down to 0 when the domain's speech leaves the list).
        return .recognition(beamWidth: beam ?? self.beam, lmWeight: lmWeight ?? self.lmWeight,
                            wordBonus: wordBonus ?? self.wordBonus, unknownWordPenalty: unknownWordPenalty ?? self.unknownWordPenalty,
                            unknownLetterLogProbability: 0, hotwords: merged, withLanguageModel: true, lexicon: lexicon)
    }

    /// The closed vocabulary of this decoding: its words and the words of its and `extraHotwords`'
    /// phrases with a positive weight (a negative one asks for a phrase less often, not for its words to
    /// become spellable), spelled in `vocabulary`.
    public func lexicon(vocabulary: Vocabulary, extraHotwords: [Hotword] = []) -> Lexicon {
        Lexicon(words: words + hotwords.merging(extraHotwords).favouredWords, vocabulary: vocabulary)
    }

    /// Lines for `earshot model info`.
    public func summary() -> [String] {
        var lines: [String] = []
        let lm = try? languageModel()
        let counts = lm.map { lm in (1...lm.order).map { "\(lm.count(order: $0))" }.joined(separator: "/") } ?? "?"
        lines.append("domain LM:     order \(order), n-grams \(counts) (ARPA, \(arpa.utf8.count) bytes)")
        let shown = words.prefix(20).joined(separator: " ")
        lines.append("domain words:  \(words.count): \(shown)\(words.count > 20 ? " ..." : "")")
        if !skippedWords.isEmpty {
            lines.append("not spellable: \(skippedWords.count) (scored as <unk>): \(skippedWords.prefix(10).joined(separator: " "))\(skippedWords.count > 10 ? " ..." : "")")
        }
        let hw = hotwords.prefix(20).map { "'\($0.phrase)':\(format($0.weight))" }.joined(separator: " ")
        lines.append("hotwords:      \(hotwords.count)\(hotwords.isEmpty ? "" : ": " + hw)\(hotwords.count > 20 ? " ..." : "")")
        lines.append("weights:       lm weight \(format(lmWeight)), word bonus \(format(wordBonus)), beam \(beam), unknown-word penalty \(format(unknownWordPenalty))")
        lines.append(closedVocabulary
            ? "vocabulary:    closed: transcripts use only the \(words.count) domain words and the hotwords' (--open-vocabulary lifts it)"
            : "vocabulary:    open: any spelling may be recognised (--closed-vocabulary keeps to the domain words)")
        if let tuning {
            lines.append("tuned on:      \(counted(tuning.utterances, "utterance")), \(counted(tuning.words, "word")): WER \(String(format: "%.2f", tuning.wordErrorRatePercent))%")
        }
        return lines
    }

    private func format(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e9 ? String(Int(x)) : String(x) }

    // MARK: tuning

    /// LM weights (alpha) `tuned` tries by default: from nearly acoustic-only to LM-dominated.
    public static let tuningLMWeights: [Double] = [0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    /// Word bonuses (beta) `tuned` tries by default.
    public static let tuningWordBonuses: [Double] = [-1, 0, 0.5, 1, 2, 3]
    /// Word bonuses tried for a closed vocabulary: larger ones too. Out-of-list speech and weak
    /// acoustics then cost a word forced letter by letter, which a bonus must outweigh for the word not
    /// to be deleted, and a closed list cannot turn the extra bonus into spurious new words as easily
    /// (FSDD digits with the base model: WER lowest at a bonus of 10 to 15).
    public static let tuningClosedWordBonuses: [Double] = tuningWordBonuses + [5, 10, 15]
    /// Unknown-word penalties `tuned` tries by default: from the default (an unknown word almost never
    /// wins) to none (only the LM's `<unk>` probability, scaled by alpha, holds it back).
    public static let tuningUnknownWordPenalties: [Double] = [-10, -5, -2, 0]

    /// This decoding with the weights that give the lowest WER on a validation set, and that WER (%).
    ///
    /// A coordinate search, each stage keeping the previous stages' choices, every utterance decoded at
    /// every point and points spread over the machine's cores (each decode is independent):
    /// 1. the grid `lmWeights` x `wordBonuses` (at the stored penalty and beam; nil bonuses:
    ///    `tuningWordBonuses`, or `tuningClosedWordBonuses` for a closed vocabulary); ties go to the
    ///    point first in grid order (`lmWeights` outer), except that in a closed vocabulary they go to
    ///    the largest bonus (then the first weight), which drops fewer poorly spelled words;
    /// 2. the unknown-word penalties `unknownWordPenalties` (skipped when the search cannot meet an
    ///    unknown word: closed vocabulary with every lexicon word in the LM);
    /// 3. the beam widths `beams` (nil: the stored width and twice it), a wider beam costing recognition
    ///    time at every utterance;
    /// and the whole search once per mode in `closedVocabulary` (nil: the stored mode only). Stages 2
    /// and 3, and the modes, change the stored value only for a strictly lower WER (the first listed
    /// wins a tie), so a search that finds nothing better leaves the decoding as it was; except that a
    /// closed vocabulary wins a tie between modes when every reference word is in the word list. A
    /// validation set of the speakers adapted on is often decoded perfectly both ways, and a tie then says
    /// nothing; the data never leaving the list does (FSDD, an unseen speaker: 26.0 % WER open, 21.2 %
    /// closed, the words forced into digits instead of spelled as heard).
    ///
    /// `posteriors[i]` is the encoder output (frames x `vocabulary.count`, logits or log posteriors:
    /// the decoder log-softmaxes each frame) of the utterance whose reference text is `references[i]`.
    /// WER is word edits over reference words of the whole set, on words normalised as `build`
    /// normalises them.
    public func tuned(posteriors: [Matrix], references: [String], vocabulary: Vocabulary, frameDuration: Double = 0.04,
                      lmWeights: [Double] = tuningLMWeights, wordBonuses: [Double]? = nil,
                      unknownWordPenalties: [Double] = tuningUnknownWordPenalties, beams: [Int]? = nil,
                      closedVocabulary: [Bool]? = nil)
        throws(DomainDecodingError) -> (decoding: DomainDecoding, wer: Double) {
        guard posteriors.count == references.count else {
            throw .tuning(reason: "\(posteriors.count) posterior matrices but \(references.count) reference texts")
        }
        guard !lmWeights.isEmpty, wordBonuses?.isEmpty != true else { throw .tuning(reason: "the weight grid is empty") }
        for x in lmWeights + (wordBonuses ?? []) + unknownWordPenalties where !x.isFinite { throw .tuning(reason: "grid value \(x) is not finite") }
        let beams = beams ?? [beam, 2 * beam]
        for b in beams where b < 1 { throw .tuning(reason: "beam width \(b): must be at least 1") }
        let modes = closedVocabulary ?? [self.closedVocabulary]
        guard !modes.isEmpty else { throw .tuning(reason: "no vocabulary mode to try") }
        for (i, m) in posteriors.enumerated() where m.cols != vocabulary.count {
            throw .tuning(reason: "posteriors \(i) have \(m.cols) columns, the vocabulary has \(vocabulary.count) tokens")
        }
        let refs = references.map { Self.domainWords(Substring($0)).map { $0.lowercased() } }
        let referenceWords = refs.reduce(0) { $0 + $1.count }
        guard referenceWords > 0 else { throw .tuning(reason: "the references have no words") }
        let lm = try languageModel()

        /// Word errors over the whole set for each configuration.
        func errors(_ configs: [BeamSearchConfiguration]) -> [Int] {
            let slots = ResultSlots(count: configs.count)
            DispatchQueue.concurrentPerform(iterations: configs.count) { g in
                var decoder = BeamSearchDecoder(vocabulary: vocabulary, frameDuration: frameDuration,
                                                configuration: configs[g], languageModel: lm)
                var total = 0
                for (m, ref) in zip(posteriors, refs) {
                    // Normalised as the references are (and as `earshot eval` scores): 'em is em.
                    let hyp = Self.domainWords(Substring(decoder.decode(m).text)).map { $0.lowercased() }
                    total += wordEditDistance(ref, hyp)
                }
                slots.set(g, total)
            }
            return slots.values
        }

        let listed = Set(words.map { $0.lowercased() })
        let referencesListed = refs.allSatisfy { $0.allSatisfy(listed.contains) }
        var best: (decoding: DomainDecoding, errors: Int)? = nil
        for closed in modes {
            var out = self
            out.closedVocabulary = closed
            let lexicon = closed ? lexicon(vocabulary: vocabulary).scored(by: lm) : nil
            func config(_ d: DomainDecoding) -> BeamSearchConfiguration {
                d.searchConfiguration(lmWeight: nil, wordBonus: nil, beam: nil, unknownWordPenalty: nil, extraHotwords: [], lexicon: lexicon)
            }
            // 1: alpha x beta.
            let bonuses = wordBonuses ?? (closed ? Self.tuningClosedWordBonuses : Self.tuningWordBonuses)
            let grid = lmWeights.flatMap { a in bonuses.map { b in (a, b) } }
            let gridErrors = errors(grid.map { point in
                var d = out; d.lmWeight = point.0; d.wordBonus = point.1; return config(d)
            })
            var pick = 0
            for g in grid.indices where gridErrors[g] < gridErrors[pick] { pick = g }
            if closed {
                // A tie in a closed vocabulary goes to the largest bonus: there a bonus cannot make up
                // words, only keep a word the acoustics spell poorly from being dropped, and a validation
                // set of the speakers adapted on rarely drops one. An unseen speaker does: FSDD nicolas,
                // 52 of 500 digits decoded to nothing at the first tied point (bonus -1), 9 at bonus 10.
                for g in grid.indices where gridErrors[g] == gridErrors[pick] && grid[g].1 > grid[pick].1 { pick = g }
            }
            out.lmWeight = grid[pick].0
            out.wordBonus = grid[pick].1
            var current = gridErrors[pick]
            // 2 and 3: one value at a time, the stored one kept unless another is strictly better.
            func stage<T>(_ values: [T], _ set: (inout DomainDecoding, T) -> Void) {
                let tried = values.map { v -> DomainDecoding in var d = out; set(&d, v); return d }
                let e = errors(tried.map(config))
                for i in tried.indices where e[i] < current { current = e[i]; out = tried[i] }
            }
            let canMeetUnknown = lexicon.map { lex in lex.words.contains { lm.wordID($0) == nil } } ?? true
            if canMeetUnknown {
                stage(unknownWordPenalties.filter { $0 != out.unknownWordPenalty }) { $0.unknownWordPenalty = $1 }
            }
            stage(beams.filter { $0 != out.beam }) { $0.beam = $1 }
            if best == nil || current < best!.errors || (current == best!.errors && closed && referencesListed) { best = (out, current) }
        }
        var out = best!.decoding
        let wer = 100 * Double(best!.errors) / Double(referenceWords)
        out.tuning = Tuning(wordErrorRatePercent: wer, utterances: references.count, words: referenceWords)
        return (out, wer)
    }
}

/// Which characters a vocabulary can spell (every token but the blank and the word separator).
struct SpeakableCharacters {
    var characters: Set<Character>
    var letters: String

    init(_ vocabulary: Vocabulary) {
        var set = Set<Character>()
        var letters = ""
        for (i, t) in vocabulary.tokens.enumerated() where i != vocabulary.blank && i != vocabulary.space && t.count == 1 {
            set.insert(t.first!)
            letters.append(t)
        }
        characters = set
        self.letters = letters
    }

    func canSpell(_ word: String) -> Bool { !word.isEmpty && word.allSatisfy { characters.contains($0) } }
}

/// Levenshtein distance between word sequences (substitutions, deletions, insertions all cost 1).
func wordEditDistance(_ a: [String], _ b: [String]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// One integer per grid point, written from `concurrentPerform`'s threads; the lock makes the writes
/// safe (each index is written once, so there is no contention worth avoiding).
private final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Int]
    init(count: Int) { slots = [Int](repeating: 0, count: count) }
    func set(_ i: Int, _ v: Int) { lock.lock(); slots[i] = v; lock.unlock() }
    var values: [Int] { lock.lock(); defer { lock.unlock() }; return slots }
}

extension BeamSearchConfiguration {
    /// The search `earshot` and `earshotd` recognise with (and `DomainDecoding.tuned` tunes with):
    /// top-8 tokens per frame, near-certain blank frames skipped, a hotword-prefix bonus of 0.5 when
    /// there are hotwords, and the word bonus only with a language model (without one nothing offsets
    /// it, and it would just insert words).
    public static func recognition(beamWidth: Int, lmWeight: Double, wordBonus: Double,
                                   unknownWordPenalty: Double = DomainDecoding.defaultUnknownWordPenalty,
                                   unknownLetterLogProbability: Double = BeamSearchConfiguration.defaultUnknownLetterLogProbability,
                                   hotwords: [Hotword], withLanguageModel: Bool, lexicon: Lexicon? = nil) -> BeamSearchConfiguration {
        BeamSearchConfiguration(beamWidth: beamWidth, tokenTopK: 8, blankSkipThreshold: 0.999, lmWeight: lmWeight,
                                wordInsertionBonus: withLanguageModel ? wordBonus : 0,
                                unknownWordPenalty: unknownWordPenalty, hotwords: hotwords,
                                hotwordPrefixBonus: hotwords.isEmpty ? 0 : 0.5, lexicon: lexicon,
                                unknownLetterLogProbability: unknownLetterLogProbability)
    }
}
