/// The output alphabet of a CTC model: what each posterior column means.
///
/// Owns the token strings (column `i` of the encoder output is `tokens[i]`), which column is the CTC
/// blank, and which token separates words. Decoders take it as data so a model with another alphabet
/// needs no code change.
public struct Vocabulary: Sendable, Equatable, Codable {
    /// Token strings, one per posterior column.
    public var tokens: [String]
    /// Column of the CTC blank.
    public var blank: Int
    /// Column of the word separator; `nil` when the model has none (then an utterance is one word).
    public var space: Int?

    public init(tokens: [String], blank: Int, space: Int?) {
        precondition(tokens.indices.contains(blank), "blank index \(blank) outside the \(tokens.count)-token vocabulary")
        if let space { precondition(tokens.indices.contains(space) && space != blank, "space index \(space) invalid") }
        self.tokens = tokens
        self.blank = blank
        self.space = space
    }

    /// The vocabulary of a CTC model's token list (as stored in a model file): the blank is token 0 and
    /// the word separator is the token " " if one other than the blank exists. Never traps on a token
    /// list that is merely odd (a space-named blank, duplicates); `Model` refuses such files with an
    /// error naming them. `tokens` must not be empty.
    public init(ctcTokens tokens: [String]) {
        self.init(tokens: tokens, blank: 0, space: tokens.indices.dropFirst().first { tokens[$0] == " " })
    }

    public var count: Int { tokens.count }

    /// Earshot's character vocabulary: blank, space, apostrophe, then `a` to `z`.
    public static let earshot: Vocabulary = {
        var tokens = ["<blank>", " ", "'"]
        for scalar in UnicodeScalar("a").value...UnicodeScalar("z").value {
            tokens.append(String(UnicodeScalar(scalar)!))
        }
        return Vocabulary(tokens: tokens, blank: 0, space: 1)
    }()

    /// The token sequence spelling `text` (one token per character), or `nil` when a character has no
    /// token. Used to build test inputs and hotword tries.
    public func tokenize(_ text: String) -> [Int]? {
        var index: [String: Int] = [:]
        for (i, t) in tokens.enumerated() where i != blank { index[t] = i }
        var out: [Int] = []
        for ch in text {
            guard let id = index[String(ch)] else { return nil }
            out.append(id)
        }
        return out
    }
}
