import Foundation
import Model
import Tensors

#if canImport(Glibc)
import Glibc
#endif

/// Frozen-encoder activations of one utterance as stored on disk, with the audio's content hash.
public struct CachedActivations: Sendable, Equatable {
    /// Frames x channels, row-major: the output of the layers below the cut.
    public var activations: Matrix
    /// SHA-256 of the audio file's bytes when the entry was made (for the data hash in provenance).
    public var audioSHA256: String
}

/// The on-disk store of frozen-encoder activations, one small file per utterance, so adaptation streams
/// over them (memory bounded by a batch, whatever the data size) and reuses them across epochs and runs.
///
/// Owns one folder per (base model file hash, cut layer): `<root>/<sha256 of both>/`. A changed model or
/// cut therefore reads another folder. Inside, an utterance's file is named by a hash of its audio path,
/// size and modification time, so an edited or replaced audio file misses and is recomputed.
///
/// Entry format (little-endian): magic `EARSHACT`, UInt32 version (2), UInt32 rows, UInt32 cols,
/// 32 bytes of the audio's SHA-256, then rows x cols Float32. Entries are written to a temporary file
/// and renamed, so a crash or two concurrent runs never leave a torn entry.
public struct ActivationCache: Sendable {
    public let directory: URL
    static let magic = Array("EARSHACT".utf8)
    /// 2: quiet recordings are levelled before the frontend (`Adapter.levelled`); version 1 entries
    /// hold unlevelled activations and are recomputed.
    static let version: UInt32 = 2
    static let headerBytes = 8 + 4 + 4 + 4 + 32

    let modelSHA256: String
    let cut: Int

    /// The cache folder for `modelSHA256` cut below top-level layer `cut`, under `root`; `create()` makes it.
    public init(root: URL, modelSHA256: String, cut: Int) {
        let key = SHA256.hex(Array("earshot-adapt-cache v\(Self.version)\nmodel \(modelSHA256)\ncut \(cut)\n".utf8))
        directory = root.appendingPathComponent(String(key.prefix(32)), isDirectory: true)
        self.modelSHA256 = modelSHA256
        self.cut = cut
    }

    /// Makes the folder (and its README) if missing, or marks it in use. Called once the data proved usable,
    /// so a refused run leaves nothing behind.
    public func create() throws(AdaptError) {
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw .cache(path: directory.path, reason: error.localizedDescription)
        }
        // A note for whoever finds the folder: what it holds and that it may be deleted.
        let readme = directory.appendingPathComponent("README")
        if !FileManager.default.fileExists(atPath: readme.path) {
            let text = "\(Self.readmeHeading) (safe to delete)\nbase model sha256: \(modelSHA256)\ncut below top-level layer \(cut)\n"
            try? Data(text.utf8).write(to: readme, options: .atomic)
        } else {
            // The folder is in use: `prune` never removes it under a run that has not stored anything yet.
            Self.touch(readme)
        }
    }

    /// The entry file for `audioPath` as it is now (path, size, modification time), played `speed` times
    /// faster (1: as recorded; other factors are the speed-perturbed copies adaptation trains on).
    public func entryURL(for audioPath: String, speed: Double = 1) -> URL? {
        var st = stat()
        guard stat(audioPath, &st) == 0 else { return nil }
        var identity = "\(audioPath)\n\(st.st_size)\n\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)\n"
        // Unperturbed entries keep the key they always had, so existing caches stay valid.
        if speed != 1 { identity += "speed \(speed)\n" }
        let name = String(SHA256.hex(Array(identity.utf8)).prefix(40)) + Self.entrySuffix
        return directory.appendingPathComponent(name)
    }

    private static let entrySuffix = ".act"

    /// An entry's file name: 40 hex digits and the suffix, as `entryURL` makes them.
    static func isEntryName(_ name: String) -> Bool {
        name.hasSuffix(entrySuffix) && name.dropLast(entrySuffix.count).count == 40
            && name.dropLast(entrySuffix.count).allSatisfy(\.isHexDigit)
    }

    /// Deletes every entry in the folder (not its README); returns how many went.
    @discardableResult
    public func removeAllEntries() -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { Self.isEntryName($0) && unlink(directory.appendingPathComponent($0).path) == 0 }.count
    }

    /// The entry at `url`, or nil when it is missing or not a complete entry (then it is recomputed).
    public static func load(_ url: URL) -> CachedActivations? {
        guard let data = try? Data(contentsOf: url), data.count >= headerBytes else { return nil }
        return data.withUnsafeBytes { raw -> CachedActivations? in
            guard Array(raw[0..<8]) == magic else { return nil }
            let version = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            let rows = Int(raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian)
            let cols = Int(raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian)
            // Sizes from a damaged header are checked against the file before they are multiplied.
            guard version == Self.version, cols > 0, rows <= (data.count - headerBytes) / 4 / cols,
                  data.count == headerBytes + rows * cols * 4 else { return nil }
            let hash = raw[20..<52].map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
            var values = [Float](repeating: 0, count: rows * cols)
            values.withUnsafeMutableBytes { out in
                out.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[headerBytes...]))
            }
            #if _endian(big)
            for i in values.indices { values[i] = Float(bitPattern: values[i].bitPattern.byteSwapped) }
            #endif
            return CachedActivations(activations: Matrix(rows: rows, cols: cols, data: values), audioSHA256: hash)
        }
    }

    /// Marks an entry as used now (its modification time), so `prune` keeps what runs still read.
    public static func touch(_ url: URL) {
        _ = utimes(url.path, nil)
    }

    /// What `prune` removed.
    public struct PruneReport: Sendable, Equatable {
        public var entries = 0
        public var bytes: Int64 = 0
        public var folders = 0
        /// Temporary files of interrupted writes (removed whatever their age).
        public var temporaries = 0
        /// Another run held the cache, so nothing was looked at.
        public var busy = false
    }

    static let readmeHeading = "earshot adapt activation cache"

    /// Deletes the entries under `root` (every model's and cut's folder) unused for `maxAge` seconds (by
    /// modification time, which every run that reads an entry renews), and folders left with no entries:
    /// those of replaced base models or deleted recordings, which no run would ever read again; and
    /// `RehearsalSet` folders no run has used for as long (those of an older sentence list or espeak-ng).
    ///
    /// Touches only folders this cache made (a 32-hex-digit name holding its README) and only the plain
    /// files in them, so a mistyped --cache cannot cost a stranger's files. Runs only while no adaptation
    /// holds the cache (`Lock`), so no run loses an entry between finding it and reading it.
    public static func prune(root: URL, olderThan maxAge: TimeInterval, now: Date = Date()) -> PruneReport {
        var report = PruneReport()
        guard let lock = Lock(root: root, exclusive: true) else { report.busy = true; return report }
        defer { withExtendedLifetime(lock) {} }
        let fm = FileManager.default
        guard let folders = try? fm.contentsOfDirectory(atPath: root.path) else { return report }
        let cutoff = now.addingTimeInterval(-maxAge)
        for name in folders where RehearsalSet.isFolderName(name) {
            if RehearsalSet.removeIfUnused(root.appendingPathComponent(name), cutoff: cutoff, report: &report) { report.folders += 1 }
        }
        for name in folders where name.count == 32 && name.allSatisfy(\.isHexDigit) {
            let folder = root.appendingPathComponent(name)
            let readme = folder.appendingPathComponent("README")
            guard let heading = try? String(contentsOf: readme, encoding: .utf8), heading.hasPrefix(readmeHeading),
                  let names = try? fm.contentsOfDirectory(atPath: folder.path) else { continue }
            var left = 0
            for file in names where file != "README" {
                var st = stat()
                let path = folder.appendingPathComponent(file).path
                guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { left += 1; continue }
                // Anything but an entry is the temporary file of a write that a kill or crash interrupted:
                // no run writes while prune holds the lock, so it can go whatever its age.
                let temporary = !isEntryName(file)
                let modified = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
                if temporary || modified < cutoff, unlink(path) == 0 {
                    if temporary { report.temporaries += 1 } else { report.entries += 1 }
                    report.bytes += Int64(st.st_size)
                } else {
                    left += 1
                }
            }
            var st = stat()
            guard left == 0, stat(readme.path, &st) == 0, Double(st.st_mtim.tv_sec) < cutoff.timeIntervalSince1970 else { continue }
            // rmdir, not a recursive delete: a folder that gained anything meanwhile stays.
            if unlink(readme.path) == 0 && rmdir(folder.path) == 0 { report.folders += 1 }
        }
        return report
    }

    /// An advisory lock (flock) on `<root>/.lock`: shared while an adaptation uses the cache, exclusive
    /// while `prune` deletes. Released when the value is dropped (or the process dies).
    public final class Lock: Sendable {
        let fd: Int32

        /// Shared: waits for a prune to finish. Exclusive: nil at once when any run holds the cache.
        public init?(root: URL, exclusive: Bool) {
            try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            let fd = open(root.appendingPathComponent(".lock").path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return nil }
            guard flock(fd, exclusive ? LOCK_EX | LOCK_NB : LOCK_SH) == 0 else { close(fd); return nil }
            self.fd = fd
        }

        deinit { close(fd) }
    }

    /// Writes an entry atomically.
    public static func store(_ entry: CachedActivations, to url: URL) throws(AdaptError) {
        var bytes = magic
        func put(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        put(version); put(UInt32(entry.activations.rows)); put(UInt32(entry.activations.cols))
        var hash = [UInt8](repeating: 0, count: 32)
        var i = entry.audioSHA256.startIndex
        for k in 0..<32 {
            guard let j = entry.audioSHA256.index(i, offsetBy: 2, limitedBy: entry.audioSHA256.endIndex),
                  let b = UInt8(entry.audioSHA256[i..<j], radix: 16) else { break }
            hash[k] = b; i = j
        }
        bytes += hash
        entry.activations.data.withUnsafeBytes { raw in
            #if _endian(big)
            for v in entry.activations.data { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
            #else
            bytes.append(contentsOf: raw)
            #endif
        }
        do { try Data(bytes).write(to: url, options: .atomic) } catch {
            throw .cache(path: url.path, reason: error.localizedDescription)
        }
    }
}
