import Foundation

/// Why a manifest or hypotheses file could not be read or written; each case names the file.
public enum ManifestError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case malformedLine(file: String, line: Int, reason: String)
    case unwritable(file: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "cannot read \(file): \(reason)"
        case let .malformedLine(file, line, reason): return "\(file):\(line): \(reason)"
        case let .unwritable(file, reason): return "cannot write \(file): \(reason)"
        }
    }
}

/// A two-column TSV list of utterances: `audio_path<TAB>text` per line.
///
/// Owns the entries in file order and the folder the file lives in. Used both for test-set manifests
/// (text = reference) and hypotheses files (text = recognised text). Format: UTF-8; lines starting
/// with `#` (after optional spaces) and blank lines are ignored; every other line is a path, one tab,
/// and the text (which may be empty but may not contain another tab). Relative paths are relative to
/// the manifest's folder.
public struct Manifest: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// The path as written in the file.
        public var path: String
        public var text: String
        public init(path: String, text: String) {
            self.path = path
            self.text = text
        }
    }

    public var entries: [Entry]
    /// Folder that relative paths are resolved against.
    public var baseDirectory: URL

    public init(entries: [Entry], baseDirectory: URL) {
        self.entries = entries
        self.baseDirectory = baseDirectory
    }

    /// The audio file of `entry`, resolved against the manifest's folder.
    public func url(of entry: Entry) -> URL {
        entry.path.hasPrefix("/") ? URL(fileURLWithPath: entry.path)
            : baseDirectory.appendingPathComponent(entry.path)
    }

    /// Reads a manifest file.
    public static func read(from url: URL) throws -> Manifest {
        let text: String
        // Foundation's messages for these say only "The operation could not be completed".
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else {
            throw ManifestError.unreadable(file: url.path, reason: "no such file")
        }
        if isFolder.boolValue {
            throw ManifestError.unreadable(file: url.path, reason: "it is a folder; give the manifest file (a .tsv of audio path, TAB, text)")
        }
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            let reason = FileManager.default.isReadableFile(atPath: url.path) ? "it is not UTF-8 text" : "permission denied"
            throw ManifestError.unreadable(file: url.path, reason: reason)
        }
        return try parse(text, name: url.path, baseDirectory: url.deletingLastPathComponent())
    }

    /// Parses manifest text; `name` is used in errors.
    public static func parse(_ text: String, name: String, baseDirectory: URL) throws -> Manifest {
        var entries: [Entry] = []
        var lineNumber = 0
        // "\r\n" is one Character in Swift, so both line ends are separators.
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = Substring(raw)
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw ManifestError.malformedLine(file: name, line: lineNumber, reason: parts.count < 2
                    ? "expected 'audio_path<TAB>text', found no tab"
                    : "expected 'audio_path<TAB>text', found \(parts.count - 1) tabs")
            }
            let path = parts[0].trimmingCharacters(in: .whitespaces)
            guard !path.isEmpty else {
                throw ManifestError.malformedLine(file: name, line: lineNumber, reason: "empty audio path")
            }
            entries.append(Entry(path: path, text: String(parts[1]).trimmingCharacters(in: .whitespaces)))
        }
        return Manifest(entries: entries, baseDirectory: baseDirectory)
    }

    /// The file text; tabs and newlines inside texts become spaces so every entry stays one line.
    public func serialized() -> String {
        var out = ""
        for e in entries {
            let clean = e.text.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : String($0) }.joined()
            out += "\(e.path)\t\(clean)\n"
        }
        return out
    }

    public func write(to url: URL) throws {
        do {
            try Data(serialized().utf8).write(to: url, options: .atomic)
        } catch {
            throw ManifestError.unwritable(file: url.path, reason: error.localizedDescription)
        }
    }
}

/// NIST sclite's `trn` transcript format: one `text (utterance-id)` line per utterance.
///
/// Ids follow sclite's `spu_id` convention, `speaker-utterance`, so score with
/// `sclite -r ref.trn trn -h hyp.trn trn -i spu_id`.
public enum SCLiteExport {
    /// `earshot-000001`-style id for the `index`-th utterance (speaker "earshot").
    public static func utteranceID(_ index: Int) -> String {
        let digits = String(index)
        return "earshot-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// The trn text for (id, text) pairs; texts are normalised with `normalizer`.
    public static func trn(_ utterances: [(id: String, text: String)], normalizer: TextNormalizer = TextNormalizer()) -> String {
        utterances.map { "\(normalizer.normalize($0.text)) (\($0.id))\n" }.joined()
    }

    /// Writes `ref.trn`-style and `hyp.trn`-style files for a reference manifest and hypotheses,
    /// matched by line order; ids are `utteranceID(i)`.
    public static func write(references: [String], hypotheses: [String], referenceURL: URL, hypothesisURL: URL,
                             normalizer: TextNormalizer = TextNormalizer()) throws {
        precondition(references.count == hypotheses.count, "\(references.count) references but \(hypotheses.count) hypotheses")
        let ids = references.indices.map(utteranceID)
        for (url, texts) in [(referenceURL, references), (hypothesisURL, hypotheses)] {
            do {
                try Data(trn(Array(zip(ids, texts)).map { (id: $0.0, text: $0.1) }, normalizer: normalizer).utf8).write(to: url, options: .atomic)
            } catch {
                throw ManifestError.unwritable(file: url.path, reason: error.localizedDescription)
            }
        }
    }
}
