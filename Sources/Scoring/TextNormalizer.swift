/// Puts references and hypotheses into the one form that is scored.
///
/// Owns the normalisation rules, applied in this order:
/// 1. lowercase (when `lowercase` is set);
/// 2. typographic and stand-in apostrophes (U+2018, U+2019, U+02BC, the acute accent U+00B4 and the
///    backtick) become `'`;
/// 3. letters (any script), digits and `'` are kept; every other character (punctuation, symbols,
///    hyphens, tabs, newlines) becomes a space, so "state-of-the-art" scores as four words;
/// 4. apostrophes at a word's start or end are dropped ('quoted' words, 'em, the students'): there they
///    are quotation marks, or elisions the audio cannot show;
/// 5. runs of spaces collapse to one, and leading/trailing spaces are dropped.
/// Apostrophes inside words are kept because they change words ("its" vs "it's"), matching Earshot's
/// vocabulary.
public struct TextNormalizer: Sendable, Equatable {
    public var lowercase: Bool
    public var keepApostrophes: Bool

    public init(lowercase: Bool = true, keepApostrophes: Bool = true) {
        self.lowercase = lowercase
        self.keepApostrophes = keepApostrophes
    }

    public func normalize(_ text: String) -> String {
        words(text).joined(separator: " ")
    }

    /// The normalised words.
    public func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        func endWord() {
            var word = Substring(current)
            while word.first == "'" { word = word.dropFirst() }
            while word.last == "'" { word = word.dropLast() }
            if !word.isEmpty { words.append(String(word)) }
            current = ""
        }
        for ch in lowercase ? text.lowercased() : text {
            var c = ch
            if c == "\u{2018}" || c == "\u{2019}" || c == "\u{02BC}" || c == "\u{00B4}" || c == "`" { c = "'" }
            if c.isLetter || c.isNumber || (keepApostrophes && c == "'") {
                current.append(c)
            } else {
                endWord()
            }
        }
        endWord()
        return words
    }
}
