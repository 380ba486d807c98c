import Audio
import Decoding
import Features
import Foundation
import Scoring
import Tensors
import Training

#if canImport(Glibc)
import Glibc
#endif

/// One recording and its transcript as found in DATA, before any check.
public struct DataItem: Sendable, Equatable {
    /// Absolute path of the audio file.
    public var audio: String
    /// The transcript as written.
    public var text: String

    public init(audio: String, text: String) { self.audio = audio; self.text = text }
}

/// Why an item of DATA is left out; the run goes on without it.
public enum SkipReason: Error, Sendable, Equatable, CustomStringConvertible {
    /// An audio file in a folder with no `NAME.txt` beside it (and no manifest.tsv in the folder).
    case missingTranscript(expected: String)
    /// The manifest names a file that does not exist.
    case missingAudio
    /// The audio could not be decoded (the Audio module's reason).
    case unreadableAudio(String)
    /// Nothing left of the transcript after normalisation.
    case emptyTranscript
    /// Characters the model cannot emit (after lowercasing and punctuation removal), e.g. digits.
    case unspeakable(characters: String)
    /// Fewer encoder frames than CTC needs for the transcript (a label per frame, a blank between repeats).
    case tooShort(seconds: Double, frames: Int, neededFrames: Int)
    /// Longer than one utterance may be (`ItemValidator.maximumSeconds`): the CTC tables of a long
    /// recording grow with its length times its text's, to gigabytes for a ten-minute memo.
    case tooLong(seconds: Double, limit: Double)
    /// The manifest names this file again (any spelling of its path): its `entry`-th item; the first is used.
    case listedAgain(entry: Int)
    /// A folder inside DATA that cannot be listed (the system's reason): its recordings are left out.
    case unlistableFolder(String)
    /// The transcript file exists but cannot be read as text: `reason` says why (not UTF-8, or the
    /// system's reason).
    case unreadableTranscript(file: String, reason: String)

    public var description: String {
        switch self {
        case .missingTranscript(let expected): return "no transcript (expected \(expected) beside it, or a manifest.tsv in the folder)"
        case .missingAudio: return "audio file not found"
        case .unreadableAudio(let reason): return "unreadable audio: \(reason)"
        case .emptyTranscript: return "empty transcript"
        case .unspeakable(let chars):
            return "transcript has characters the model cannot emit: \(chars.map { "'\($0)'" }.joined(separator: " ")) (spell numbers and symbols out as words)"
        case let .tooShort(seconds, frames, needed):
            return String(format: "audio too short for its text: %.2f s gives %d encoder frames, the transcript needs at least %d", seconds, frames, needed)
        case let .tooLong(seconds, limit):
            return String(format: "audio too long for one utterance: %.0f s, at most %.0f s; cut it at its pauses (with its transcript) into shorter recordings", seconds, limit)
        case .listedAgain(let entry): return "listed again (the manifest's item \(entry)); the first item naming it is used"
        case .unlistableFolder(let reason): return "folder cannot be listed (\(reason)); its recordings are left out"
        case let .unreadableTranscript(file, reason): return "transcript \(file) cannot be read: \(reason)"
        }
    }
}

/// An item left out of adaptation, with the reason.
public struct SkippedItem: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: SkipReason

    public init(path: String, reason: SkipReason) { self.path = path; self.reason = reason }

    public var description: String { "\(path): \(reason)" }
}

/// An item that passed every check: normalised text, its label ids, and the audio's identity.
public struct ValidItem: Sendable, Equatable {
    public var audio: String
    /// The transcript as scored (normalised: lowercase, letters, digits, apostrophes, single spaces).
    public var text: String
    public var labels: [Int]
    public var seconds: Double
}

/// Finds DATA's items: a manifest file (`path<TAB>text`), a folder with a `manifest.tsv`, or a folder
/// of audio files each with a `.txt` transcript of the same name beside it (searched recursively).
public enum DataDiscovery {
    /// File name extensions taken as audio when a folder is scanned (what libsndfile decodes).
    public static let audioExtensions: Set<String> = ["wav", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc",
                                                      "au", "snd", "caf", "w64", "rf64", "voc", "sph"]

    /// The items of `path` in a stable order, and the audio files that have no transcript.
    public static func discover(_ path: String) throws(AdaptError) -> (items: [DataItem], skipped: [SkippedItem]) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .data(path: path, reason: "no such file or folder")
        }
        if !isDirectory.boolValue { return try uniqueManifestItems(path) }
        let manifest = URL(fileURLWithPath: path).appendingPathComponent("manifest.tsv").path
        if FileManager.default.fileExists(atPath: manifest) { return try uniqueManifestItems(manifest) }

        // The walk does not follow links, not even the folder itself: start from where a linked folder
        // points (~/rec -> /mnt/disk/recordings), or it finds nothing.
        let root = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var (audio, skipped) = try audioFiles(under: root, named: path)
        audio.sort { $0.path < $1.path }
        var items: [DataItem] = []
        for url in audio {
            // NAME.txt, or NAME.TXT as some recorders and Windows tools write it.
            let stem = url.deletingPathExtension()
            let txt = [stem.appendingPathExtension("txt"), stem.appendingPathExtension("TXT")]
                .first { FileManager.default.fileExists(atPath: $0.path) } ?? stem.appendingPathExtension("txt")
            guard FileManager.default.fileExists(atPath: txt.path) else {
                skipped.append(SkippedItem(path: url.path, reason: .missingTranscript(expected: txt.lastPathComponent)))
                continue
            }
            guard let bytes = FileManager.default.contents(atPath: txt.path) else {
                let why = access(txt.path, R_OK) == 0 ? "it cannot be read" : String(cString: strerror(errno))
                skipped.append(SkippedItem(path: url.path, reason: .unreadableTranscript(file: txt.lastPathComponent, reason: why)))
                continue
            }
            guard let text = String(bytes: bytes, encoding: .utf8) else {
                let utf16 = bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF])
                skipped.append(SkippedItem(path: url.path, reason: .unreadableTranscript(
                    file: txt.lastPathComponent,
                    reason: utf16 ? "it is UTF-16 text (Notepad's \"Unicode\"); save it as UTF-8" : "it is not UTF-8 text (Latin-1?); save it as UTF-8")))
                continue
            }
            items.append(DataItem(audio: url.path, text: text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        if items.isEmpty && skipped.isEmpty {
            throw .data(path: path, reason: "no manifest.tsv and no audio files (\(audioExtensions.sorted().joined(separator: ", "))) in the folder")
        }
        return (items, skipped)
    }

    /// The audio files under folder `root` (named `name` in errors), and the folders inside it that could
    /// not be listed. Folders on other file systems are walked too: FileManager's walk stops at a mount
    /// point, which silently left out a card or disk mounted inside the data folder. Links to folders are
    /// not followed; a folder met twice (a bind mount of a folder above it) is walked once. A link to an
    /// audio file counts, as the file it points to. Hidden names (a copy's temporary files, a desktop's
    /// .Trash-1000 of deleted recordings, btrfs .snapshots of the same files) and lost+found are skipped.
    static func audioFiles(under root: String, named name: String) throws(AdaptError) -> (audio: [URL], unlisted: [SkippedItem]) {
        var audio: [URL] = [], unlisted: [SkippedItem] = []
        var walked = Set<[UInt64]>()
        var folders = [root]
        while let folder = folders.popLast() {
            var info = stat()
            guard lstat(folder, &info) == 0, info.st_mode & S_IFMT == S_IFDIR,
                  walked.insert([UInt64(info.st_dev), UInt64(info.st_ino)]).inserted else { continue }
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
                let reason = (error as NSError).localizedDescription
                if folder == root { throw .data(path: name, reason: "cannot list the folder: \(reason)") }
                unlisted.append(SkippedItem(path: folder, reason: .unlistableFolder(reason)))
                continue
            }
            for entry in names where !entry.hasPrefix(".") && entry != "lost+found" {
                let path = (folder == "/" ? "" : folder) + "/" + entry
                var entryInfo = stat()
                guard lstat(path, &entryInfo) == 0 else { continue }  // gone meanwhile
                switch entryInfo.st_mode & S_IFMT {
                case S_IFDIR: folders.append(path)
                case S_IFREG, S_IFLNK:
                    guard audioExtensions.contains((entry as NSString).pathExtension.lowercased()) else { continue }
                    // A link counts only if it leads to a regular file: a FIFO named .wav would block the reader.
                    var target = entryInfo
                    if entryInfo.st_mode & S_IFMT == S_IFLNK && stat(path, &target) != 0 { continue }
                    if target.st_mode & S_IFMT == S_IFREG { audio.append(URL(fileURLWithPath: path).standardizedFileURL) }
                default: continue
                }
            }
        }
        return (audio, unlisted)
    }

    /// The manifest's items, each file once: a later item naming a file again (however its path is
    /// spelled) is skipped, as two transcripts for one recording cannot both be right.
    static func uniqueManifestItems(_ path: String) throws(AdaptError) -> (items: [DataItem], skipped: [SkippedItem]) {
        var seen = Set<String>(), items: [DataItem] = [], skipped: [SkippedItem] = []
        for (k, item) in try manifestItems(path).enumerated() {
            // Through links too: `link/a.wav` and `./a.wav` are one recording.
            let key = realpath(item.audio, nil).map { p in defer { free(p) }; return String(cString: p) } ?? item.audio
            if seen.insert(key).inserted { items.append(item) } else {
                skipped.append(SkippedItem(path: item.audio, reason: .listedAgain(entry: k + 1)))
            }
        }
        return (items, skipped)
    }

    static func manifestItems(_ path: String) throws(AdaptError) -> [DataItem] {
        let manifest: Manifest
        do { manifest = try Manifest.read(from: URL(fileURLWithPath: path)) } catch {
            throw .data(path: path, reason: "not a manifest (audio-path<TAB>text per line): \(error)")
        }
        return manifest.entries.map { DataItem(audio: manifest.url(of: $0).standardizedFileURL.path, text: $0.text) }
    }
}

/// Checks items against a model: transcript speakable by its vocabulary, audio readable and long enough
/// for the transcript under CTC. Owns the model's vocabulary and timing; reads only audio headers.
public struct ItemValidator: Sendable {
    public let vocabulary: Vocabulary
    public let frontend: FrontendConfig
    public let subsampling: Int
    let normalizer = TextNormalizer()

    public init(vocabulary: Vocabulary, frontend: FrontendConfig, subsampling: Int) {
        self.vocabulary = vocabulary; self.frontend = frontend; self.subsampling = subsampling
    }

    /// Text checks only (no file access): the normalised text and labels, or why not.
    public func labels(for text: String) -> Result<(text: String, labels: [Int]), SkipReason> {
        let normalized = normalizer.normalize(text)
        guard !normalized.isEmpty else { return .failure(.emptyTranscript) }
        guard let labels = vocabulary.tokenize(normalized) else {
            var bad: [Character] = []
            for ch in normalized where vocabulary.tokenize(String(ch)) == nil && !bad.contains(ch) { bad.append(ch) }
            return .failure(.unspeakable(characters: String(bad)))
        }
        return .success((normalized, labels))
    }

    /// Encoder output frames for `samples` samples at the frontend's rate.
    public func encoderFrames(samples: Int) -> Int {
        (frontend.frameCount(samples: samples) + subsampling - 1) / subsampling
    }

    /// The longest recording adapted on. Training utterances are at most 16 s; a minute keeps a long
    /// dictated sentence while bounding the CTC tables (frames x transcript) to tens of MB per utterance.
    public static let maximumSeconds = 60.0

    /// Every check; the audio file's header is read, not its samples.
    public func validate(_ item: DataItem) -> Result<ValidItem, SkipReason> {
        let text: String, labels: [Int]
        switch self.labels(for: item.text) {
        case .failure(let r): return .failure(r)
        case .success(let v): (text, labels) = v
        }
        guard FileManager.default.fileExists(atPath: item.audio) else { return .failure(.missingAudio) }
        let info: AudioFileInfo
        do { info = try AudioFile.info(path: item.audio) } catch { return .failure(.unreadableAudio(error.description)) }
        guard info.frames > 0, info.sampleRate > 0 else { return .failure(.unreadableAudio("no samples")) }
        let samples = Int((Double(info.frames) * Double(frontend.sampleRate) / Double(info.sampleRate)).rounded(.down))
        let frames = encoderFrames(samples: samples), needed = ctcMinimumFrames(labels: labels)
        guard frames >= needed else { return .failure(.tooShort(seconds: info.duration, frames: frames, neededFrames: needed)) }
        guard info.duration <= Self.maximumSeconds else { return .failure(.tooLong(seconds: info.duration, limit: Self.maximumSeconds)) }
        return .success(ValidItem(audio: item.audio, text: text, labels: labels, seconds: info.duration))
    }

    /// Splits `items` into the usable ones (in order) and the skipped ones with their reasons.
    public func validateAll(_ items: [DataItem]) -> (valid: [ValidItem], skipped: [SkippedItem]) {
        var valid: [ValidItem] = [], skipped: [SkippedItem] = []
        for item in items {
            switch validate(item) {
            case .success(let v): valid.append(v)
            case .failure(let r): skipped.append(SkippedItem(path: item.audio, reason: r))
            }
        }
        return (valid, skipped)
    }
}

/// The deterministic validation split: items are grouped (repeated takes of one prompt by one speaker
/// land on the same side) and whole groups, in an order fixed by the seed, go to validation until the
/// fraction is reached.
public enum ValidationSplit {
    /// The group of an audio file: its name without the trailing take number, e.g. `3_lucas_17.wav` ->
    /// `3_lucas`, `alice/utt-0042.flac` -> `alice/utt`. Items whose names carry no number form singletons.
    public static func groupKey(_ path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let stem = url.deletingPathExtension().lastPathComponent
        var trimmed = Substring(stem)
        while let last = trimmed.last, last.isNumber { trimmed = trimmed.dropLast() }
        while let last = trimmed.last, last == "_" || last == "-" || last == "." || last == " " { trimmed = trimmed.dropLast() }
        let parent = url.deletingLastPathComponent().lastPathComponent
        return trimmed.isEmpty || trimmed.count == stem.count ? "\(parent)/\(stem)" : "\(parent)/\(trimmed)"
    }

    /// Indices of `paths` for validation and for training. `byPrefix` keeps each `groupKey` group on one
    /// side; with fewer than 10 groups (too coarse to take a fraction of), or without `byPrefix`, files are
    /// split one by one. At least one item always stays for training.
    public static func split(_ paths: [String], fraction: Double, seed: UInt64, byPrefix: Bool = true) -> (train: [Int], validation: [Int]) {
        guard fraction > 0, paths.count >= 2 else { return (Array(paths.indices), []) }
        var groups: [String: [Int]] = [:]
        if groupsByPrefix(paths, byPrefix: byPrefix) {
            for (i, p) in paths.enumerated() { groups[groupKey(p), default: []].append(i) }
        } else {
            groups = Dictionary(uniqueKeysWithValues: paths.indices.map { (paths[$0], [$0]) })
        }
        let order = groups.keys.sorted { (hash($0, seed), $0) < (hash($1, seed), $1) }
        let want = max(1, Int((fraction * Double(paths.count)).rounded()))
        var validation: [Int] = []
        for key in order where validation.count < want {
            let members = groups[key]!
            if paths.count - validation.count - members.count < 1 { continue }
            // A group that would take validation past twice the fraction is passed over (900 takes of one
            // memo series among ten singletons must not all go to validation).
            if validation.count + members.count > 2 * want { continue }
            validation += members
        }
        // Every group may be over that cap (ten speakers of 100 takes at a fraction of 0.04): the smallest
        // group that leaves training something is then better than no validation at all.
        if validation.isEmpty, let smallest = order.map({ groups[$0]! }).filter({ $0.count < paths.count })
            .min(by: { $0.count < $1.count }) {
            validation = smallest
        }
        let held = Set(validation)
        return (paths.indices.filter { !held.contains($0) }, validation.sorted())
    }

    /// Whether `split` keeps name groups together: asked to, and with at least 10 groups to take a
    /// fraction of.
    public static func groupsByPrefix(_ paths: [String], byPrefix: Bool) -> Bool {
        byPrefix && Set(paths.map(groupKey)).count >= 10
    }

    /// FNV-1a of the key mixed with the seed: stable across runs and platforms (Swift's `hashValue` is not).
    static func hash(_ key: String, _ seed: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var rng = SplitMix64(seed: h)
        return rng.next()
    }
}
