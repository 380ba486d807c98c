import Dispatch
import Foundation
import Model
import Tensors

/// General speech to rehearse while adapting, for users without the base model's corpus: the shipped
/// sentence list (`models/rehearsal-en.tsv`: espeak-ng voice, words per minute, text) synthesised once with
/// espeak-ng into a folder of WAV files and a manifest, which `Adapter` then mixes in as its general data.
///
/// Owns one folder per list and espeak-ng version, `<root>/rehearsal-<hash>/`, reused by later runs; files
/// are written under temporary names and renamed, and the manifest last, so an interrupted synthesis is
/// finished, not trusted, by the next run.
public struct RehearsalSet: Sendable {
    public let list: String
    public let espeak: String

    /// `espeak`: the espeak-ng program (a path, or a name looked up in PATH).
    public init(list: String, espeak: String = "espeak-ng") {
        self.list = list
        self.espeak = espeak
    }

    /// One sentence of the list.
    struct Line: Sendable {
        var number: Int
        var voice: String
        var wordsPerMinute: Int
        var text: String
    }

    func lines() throws(AdaptError) -> [Line] {
        let content: String
        do { content = try String(contentsOfFile: list, encoding: .utf8) } catch {
            throw .data(path: list, reason: "cannot read the rehearsal sentence list: \(error.localizedDescription)")
        }
        var out: [Line] = []
        // Any line end ("\r\n" is one Character, so splitting on "\n" alone would keep a CRLF file whole).
        for (n, raw) in content.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: "\t", maxSplits: 2).map(String.init)
            guard parts.count == 3, let wpm = Int(parts[1]), (80...450).contains(wpm), !parts[2].isEmpty, !parts[2].contains("\t"),
                  parts[0].allSatisfy({ $0.isLetter || $0.isNumber || "-+_".contains($0) }) else {
                throw .data(path: list, reason: "line \(n + 1) is not 'voice<TAB>words-per-minute<TAB>text'")
            }
            out.append(Line(number: n + 1, voice: parts[0], wordsPerMinute: wpm, text: parts[2]))
        }
        guard !out.isEmpty else { throw .data(path: list, reason: "the rehearsal sentence list is empty") }
        return out
    }

    /// The manifest of the synthesised set under `root`, synthesising what is missing (`threads` espeak-ng
    /// processes at a time; `progress(done, total)` after each sentence).
    public func manifest(root: URL, threads: Int = 2, progress: @Sendable (Int, Int) -> Void = { _, _ in }) throws(AdaptError) -> String {
        let lines = try lines()
        let version = try run(["--version"], what: "\(espeak) --version").trimmingCharacters(in: .whitespacesAndNewlines)
        try checkVoices(lines)
        let key = SHA256.hex(Array((version + "\n" + lines.map { "\($0.voice)\t\($0.wordsPerMinute)\t\($0.text)" }.joined(separator: "\n")).utf8))
        let folder = root.appendingPathComponent("rehearsal-" + key.prefix(24), isDirectory: true)
        let manifest = folder.appendingPathComponent("manifest.tsv")
        if FileManager.default.fileExists(atPath: manifest.path) {
            // In use: `ActivationCache.prune` keeps folders whose newest file is recent.
            ActivationCache.touch(manifest)
            return manifest.path
        }
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw .cache(path: folder.path, reason: error.localizedDescription)
        }
        let failure = Locked<AdaptError?>(nil)
        let done = Locked(0)
        let workers = max(1, min(threads, lines.count))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for k in stride(from: w, to: lines.count, by: workers) {
                if failure.withLock({ $0 != nil }) { return }
                let wav = folder.appendingPathComponent(String(format: "%04d.wav", k))
                if !FileManager.default.fileExists(atPath: wav.path) {
                    // The process id keeps two runs synthesising at once off each other's files.
                    let tmp = folder.appendingPathComponent(String(format: ".%04d.wav.%d.tmp", k, getpid()))
                    do {
                        _ = try run(["-v", lines[k].voice, "-s", String(lines[k].wordsPerMinute), "-w", tmp.path, "--", lines[k].text],
                                    what: "\(list) line \(lines[k].number)")
                        guard rename(tmp.path, wav.path) == 0 else {
                            throw AdaptError.cache(path: wav.path, reason: String(cString: strerror(errno)))
                        }
                    } catch let error as AdaptError {
                        failure.withLock { $0 = $0 ?? error }
                        return
                    } catch {
                        failure.withLock { $0 = $0 ?? .cache(path: wav.path, reason: "\(error)") }
                        return
                    }
                }
                let d = done.withLock { $0 += 1; return $0 }
                progress(d, lines.count)
            }
        }
        if let error = failure.current { throw error }
        let text = lines.indices.map { String(format: "%04d.wav", $0) + "\t" + lines[$0].text + "\n" }.joined()
        do { try Data(text.utf8).write(to: manifest, options: .atomic) } catch {
            throw .cache(path: manifest.path, reason: error.localizedDescription)
        }
        return manifest.path
    }

    /// Refuses a voice espeak-ng does not have: given an unknown one it would speak in its default voice
    /// and exit 0, and the rehearsal would quietly be one voice.
    func checkVoices(_ lines: [Line]) throws(AdaptError) {
        // `--voices` lists each voice's language (column 2) and file (column 5, e.g. "gmw/en", which `-v en`
        // names); `--voices=variant` lists the variants' files ("!v/NAME").
        func column(_ listing: String, _ index: Int) -> [String] {
            listing.split(separator: "\n").dropFirst().compactMap { row in
                let fields = row.split(separator: " ", omittingEmptySubsequences: true)
                return fields.count > index ? String(fields[index]) : nil
            }
        }
        func basename(_ path: String) -> String { path.split(separator: "/").last.map(String.init) ?? path }
        let voices = try run(["--voices"], what: "\(espeak) --voices")
        let languages = Set((column(voices, 1) + column(voices, 4).map(basename)).map { $0.lowercased() })
        let variants = Set(column(try run(["--voices=variant"], what: "\(espeak) --voices=variant"), 4).map(basename))
        for line in lines {
            let parts = line.voice.split(separator: "+", maxSplits: 1).map(String.init)
            guard languages.contains(parts[0].lowercased()) else {
                throw .data(path: list, reason: "line \(line.number): espeak-ng has no language '\(parts[0])' (espeak-ng --voices lists them)")
            }
            if parts.count == 2 && !variants.contains(parts[1]) {
                throw .data(path: list, reason: "line \(line.number): espeak-ng has no voice variant '\(parts[1])' (espeak-ng --voices=variant lists them)")
            }
        }
    }

    /// Whether `name` is a folder `manifest` makes: "rehearsal-" and 24 hex digits.
    static func isFolderName(_ name: String) -> Bool {
        name.hasPrefix("rehearsal-") && name.count == 34 && name.dropFirst(10).allSatisfy(\.isHexDigit)
    }

    /// Deletes a rehearsal folder whose files are all older than `cutoff` (a run renews its manifest),
    /// holding only what `manifest` writes (NNNN.wav, manifest.tsv, .NNNN.wav.PID.tmp); anything else
    /// there, or anything recent, keeps it. Adds the deleted files to `report`; true when it is gone.
    static func removeIfUnused(_ folder: URL, cutoff: Date, report: inout ActivationCache.PruneReport) -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return false }
        func ours(_ name: String) -> Bool {
            let digits = { (s: Substring) in s.count == 4 && s.allSatisfy(\.isNumber) }
            if name == "manifest.tsv" { return true }
            if name.hasSuffix(".wav") && !name.hasPrefix(".") { return digits(name.dropLast(4)) }
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            return name.hasPrefix(".") && parts.count == 5 && digits(parts[1]) && parts[2] == "wav" && parts[4] == "tmp"
                && parts[3].allSatisfy(\.isNumber)
        }
        var sizes: [(String, Int64)] = []
        for name in names {
            var st = stat()
            let path = folder.appendingPathComponent(name).path
            guard ours(name), lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG,
                  Double(st.st_mtim.tv_sec) < cutoff.timeIntervalSince1970 else { return false }
            sizes.append((path, Int64(st.st_size)))
        }
        for (path, size) in sizes where unlink(path) == 0 {
            report.entries += 1
            report.bytes += size
        }
        return rmdir(folder.path) == 0
    }

    /// Runs espeak-ng with `arguments`; its standard output, or an error naming `what` and what espeak-ng said.
    func run(_ arguments: [String], what: String) throws(AdaptError) -> String {
        let process = Process()
        if espeak.contains("/") {
            process.executableURL = URL(fileURLWithPath: espeak)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [espeak] + arguments
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw .option(name: "--rehearse", reason: "cannot run \(espeak) (\(error.localizedDescription)); install espeak-ng (Debian package espeak-ng)")
        }
        // Both pipes drained at once: a full stderr pipe must not block the process while stdout is read.
        let stderrData = Locked(Data())
        let drained = DispatchGroup()
        DispatchQueue.global().async(group: drained) {
            let data = err.fileHandleForReading.readDataToEndOfFile()
            stderrData.withLock { $0 = data }
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        let stderr = stderrData.current
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let said = String(decoding: stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if process.terminationStatus == 127 {
                throw .option(name: "--rehearse", reason: "\(espeak) is not installed; install espeak-ng (Debian package espeak-ng)")
            }
            throw .option(name: "--rehearse", reason: "\(what): espeak-ng failed (exit \(process.terminationStatus)): \(said)")
        }
        return String(decoding: stdout, as: UTF8.self)
    }
}
