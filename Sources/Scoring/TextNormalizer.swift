/// Puts references and hypotheses into the one form that is scored.
///
/// Owns the normalisation rules, applied in this order:
/// 1. lowercase (when `lowercase` is set);
/// 2. typographic apostrophes (U+2018, U+2019, U+02BC) become `'`;
/// 3. letters (any script), digits and `'` are kept; every other character (punctuation, symbols,
///    hyphens, tabs, newlines) becomes a space, so "state-of-the-art" scores as four words;
/// 4. runs of spaces collapse to one, and leading/trailing spaces are dropped.
/// Apostrophes are kept because they change words ("its" vs "it's"), matching Earshot's vocabulary.
public struct TextNormalizer: Sendable, Equatable {
    public var lowercase: Bool
    public var keepApostrophes: Bool

    public init(lowercase: Bool = true, keepApostrophes: Bool = true) {
        self.lowercase = lowercase
        self.keepApostrophes = keepApostrophes
    }

    public func normalize(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        var pendingSpace = false
        for ch in lowercase ? text.lowercased() : text {
            var c = ch
            if c == "\u{2018}" || c == "\u{2019}" || c == "\u{02BC}" { c = "'" }
            let keep = c.isLetter || c.isNumber || (keepApostrophes && c == "'")
            if keep {
                if pendingSpace && !out.isEmpty { out.append(" ") }
                pendingSpace = false
                out.append(c)
            } else {
                pendingSpace = true
            }
        }
        return out
    }

    /// The normalised words.
    public func words(_ text: String) -> [String] {
        normalize(text).split(separator: " ").map(String.init)
    }
}
