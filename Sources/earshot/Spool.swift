import Adaptation
import ArgumentParser
import Audio
import Decoding
import Features
import Foundation
import Model
import Tensors

#if canImport(Glibc)
import Glibc
#endif

// `earshot ingest`: the first step of the adaptation job (systemd/earshot-adapt.service). People drop
// recordings with their transcripts into a spool folder; this moves the complete ones into the domain
// data folder that `earshot adapt --data` reads, one item at a time and atomically, and leaves the rest.
// The rules are in docs/adaptation.md ("The spool").

struct Ingest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move complete recordings with transcripts from a spool folder into the adaptation data folder.",
        discussion: """
        An item is an audio file (\(SpoolIngest.audioExtensions.sorted().joined(separator: ", "))) with \
        its transcript beside it (talk.flac + talk.txt), or a .tsv manifest in the spool (audio path \
        relative to the spool, a tab, the transcript; one item per line) with every audio file it names. \
        An item is complete when all its files exist and either a marker NAME.ready exists (talk.ready, \
        or notes.ready for notes.tsv) or none of its files has changed for --settle seconds. Names \
        starting with a dot are ignored (rsync's and editors' temporary files), so `rsync` or \
        write-then-rename is always safe. Complete items are moved into --domain as audio + .txt pairs \
        (the transcript is written first, then the audio renamed in: `earshot adapt` never sees audio \
        without its text); a name already taken there gets a -2, -3... suffix. Incomplete items are \
        left and listed with the reason. If complete items are still settling, ingest waits for them \
        (at most --wait seconds).

        Whenever it moves something it creates DOMAIN/\(SpoolIngest.pendingMarker); the adaptation job \
        deletes that file once it has adapted, so a failed adaptation is retried on the next run.

        A complete item that cannot be moved (a folder the service may not write, a full disk) stays \
        in the spool with the reason and is tried again on the next run; the other items still move.

        With --min-items N, the domain folder must also hold at least N items with transcripts: \
        earshot adapt holds one out for validation, so it refuses a single recording, and the \
        adaptation job would fail on every retry until a second one arrived. Fewer exits \
        \(SpoolIngest.nothingNewStatus) (waiting), keeping DOMAIN/\(SpoolIngest.pendingMarker) for later.

        Exit status: 0 when something was moved or DOMAIN/\(SpoolIngest.pendingMarker) exists (adapt), \
        \(SpoolIngest.nothingNewStatus) when there is nothing new or too little data (skip adapting), 1 on \
        an error (also when complete items could not be moved and there is nothing else to adapt).

        Examples:
          earshot ingest --spool /var/lib/earshot/spool --domain /var/lib/earshot/domain
          earshot ingest --spool ~/dictations --domain ~/earshot-domain --settle 0
          earshot ingest --spool /var/lib/earshot/spool --domain /var/lib/earshot/domain --min-items 2
        """)

    @Option(help: ArgumentHelp("Folder where recordings and transcripts are dropped.", valueName: "dir"))
    var spool: String

    @Option(help: ArgumentHelp("Folder of adaptation data (earshot adapt --data); created if missing.", valueName: "dir"))
    var domain: String

    @Option(help: ArgumentHelp("Seconds a file must be unchanged to count as written, unless NAME.ready exists.", valueName: "s"))
    var settle: Double = 5

    @Option(help: ArgumentHelp("Longest wait for complete items that are still settling (s).", valueName: "s"))
    var wait: Double = 30

    @Option(help: ArgumentHelp("Fewest items (audio with a transcript) the domain folder must hold to adapt; fewer exits \(SpoolIngest.nothingNewStatus).", valueName: "n"))
    var minItems: Int = 1

    func validate() throws {
        guard minItems >= 1 else { throw ValidationError("--min-items must be at least 1") }
        guard settle >= 0 else { throw ValidationError("--settle must be 0 or more seconds") }
        guard wait >= 0 else { throw ValidationError("--wait must be 0 or more seconds") }
    }

    func run() throws {
        let ingest = SpoolIngest(spool: spool, domain: domain, settle: settle, wait: wait)
        let report: SpoolIngest.Report
        do { report = try ingest.run() } catch let error as SpoolError { throw CLIError(error.description) }
        for item in report.moved {
            writeOut("took  \(item.sources.joined(separator: " + ")) -> \(item.destination)\n")
        }
        for name in report.finished {
            writeOut("done  \(name): a run stopped partway had taken all its items; removed\n")
        }
        for left in report.left {
            writeOut("left  \(left.name): \(left.reason)\n")
        }
        if report.moved.isEmpty {
            if report.failed > 0 && !report.pending {
                // Nothing else to adapt, so the failure is the run's result (the unit shows it failed).
                throw CLIError("could not move \(counted(report.failed, "complete item")) from \(spool) (the reasons are above)")
            }
            if report.pending {
                writeOut("nothing new in \(spool), but \(ingest.pendingPath) says the domain data has not been adapted yet\n")
                try requireEnoughItems()
                return
            }
            writeOut("nothing new in \(spool)\(report.left.isEmpty ? "" : " (\(report.left.count) incomplete left)")\n")
            throw ExitCode(SpoolIngest.nothingNewStatus)
        }
        writeOut("ingested \(report.moved.count) item(s) into \(domain); \(report.left.count) left in \(spool)\n")
        try requireEnoughItems()
    }

    /// Exits "skip" while the domain holds fewer than --min-items items, counted as adapt finds them:
    /// audio with a transcript that the model's alphabet can spell (whether the audio decodes, and is
    /// long enough, is adapt's to report: that needs reading every file).
    private func requireEnoughItems() throws {
        guard minItems > 1 else { return }
        let items: [DataItem]
        do { items = try DataDiscovery.discover(domain).items } catch {
            // Nothing but hidden files (the pending mark, the lock): zero items. Anything else (a malformed
            // manifest.tsv, a folder that cannot be listed) is for the unit's journal, not a silent wait.
            let visible = ((try? FileManager.default.contentsOfDirectory(atPath: domain)) ?? []).filter { !$0.hasPrefix(".") }
            guard visible.isEmpty else { throw CLIError(error.description) }
            items = []
        }
        let validator = ItemValidator(vocabulary: .earshot, frontend: FrontendConfig(), subsampling: SpoolIngest.modelSubsampling)
        let count = items.filter { if case .success = validator.labels(for: $0.text) { return true } else { return false } }.count
        guard count < minItems else { return }
        let unspellable = items.count - count
        writeOut("waiting: \(domain) holds \(counted(count, "item")) with a transcript\(unspellable > 0 ? " adapt can use (\(unspellable) more with an empty or unspellable one)" : ""); adapting needs at least \(minItems)\n")
        throw ExitCode(SpoolIngest.nothingNewStatus)
    }
}

/// The domain folder's audio by size and, for the sizes asked about, by content hash: read once per
/// run, so that checking each new item for a copy already taken costs one read of it (recorders that
/// cut fixed-length clips make every file one size).
final class DomainAudioIndex {
    private let folder: URL
    private var bySize: [Int: [String]]?
    private var hashes: [Int: [String: String]] = [:]   // size -> sha256 -> path

    init(folder: URL) { self.folder = folder }

    /// A file in the domain folder of `size` bytes whose SHA-256 is `hash`, if any.
    func copy(size: Int, hash: String) -> String? {
        if bySize == nil {
            var index: [Int: [String]] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            where SpoolIngest.audioExtensions.contains((name as NSString).pathExtension.lowercased()) {
                var info = stat()
                let file = folder.appendingPathComponent(name).path
                if lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG { index[Int(info.st_size), default: []].append(file) }
            }
            bySize = index
        }
        guard let sameSize = bySize?[size], !sameSize.isEmpty else { return nil }
        if hashes[size] == nil {
            var table: [String: String] = [:]
            for file in sameSize { if let b = try? readRegularFile(file) { table[SHA256.hex(b)] = file } }
            hashes[size] = table
        }
        return hashes[size]?[hash]
    }
}

/// Why ingesting stopped: names the folder or file and the reason.
struct SpoolError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The spool-to-domain move: owns the scanning rules (what is an item, when is it complete) and the
/// atomic move. One run at a time per domain folder (an exclusive lock on DOMAIN/.ingest.lock).
struct SpoolIngest {
    static let audioExtensions: Set<String> = ["wav", "flac", "ogg", "oga", "opus", "mp3", "aif", "aiff", "au", "w64", "caf"]
    static let pendingMarker = ".adapt-pending"
    /// The exit status for "nothing new": distinct from errors (1) and usage mistakes (64).
    static let nothingNewStatus: Int32 = 3

    let spool: URL
    let domain: URL
    let settle: Double
    let wait: Double

    init(spool: String, domain: String, settle: Double, wait: Double) {
        self.spool = URL(fileURLWithPath: spool).standardizedFileURL
        self.domain = URL(fileURLWithPath: domain).standardizedFileURL
        self.settle = settle
        self.wait = wait
    }

    var pendingPath: String { domain.appendingPathComponent(Self.pendingMarker).path }

    struct Moved { var sources: [String]; var destination: String }
    struct Left { var name: String; var reason: String }
    struct Report {
        var moved: [Moved] = []
        var left: [Left] = []
        var pending = false
        /// How many items (a manifest counts once) could not be moved; they are in `left` with the reason.
        var failed = 0
        /// Manifests whose items an interrupted run had all taken; removed now.
        var finished: [String] = []
    }

    /// One recording with its transcript; `sources` are every spool file the item consumes.
    struct Item {
        var name: String
        var audio: URL
        var text: String
        var sources: [URL]
        var ready: URL?
        /// Newest modification time among its files.
        var modified: Date
        /// The manifest it came with (its items move, or stay, together).
        var manifest: String? = nil
        /// The manifest's record of what ingest took from it (`journalName`), for a manifest's items.
        var journal: URL? = nil
        /// The audio file scanned (device, inode), for an audio + transcript pair: a file put in its
        /// place since is a new recording, not this one.
        var identity: FileIdentity? = nil
    }

    struct FileIdentity: Equatable {
        var device: UInt64
        var inode: UInt64
        init(_ info: stat) { device = UInt64(info.st_dev); inode = UInt64(info.st_ino) }
    }

    /// The suffix of a pair's transcript while ingest takes it: `a.txt` becomes `.a.txt.ingesting`
    /// before the audio moves, so that a run killed partway never leaves `a.txt` behind to label the
    /// next `a.wav` (see `recoverClaims`).
    static let claimSuffix = ".ingesting"

    /// The encoder's frame subsampling assumed when judging whether a recording is long enough for its
    /// text (ingest loads no model): the shipped models' 2 (20 ms frames).
    static let modelSubsampling = 2

    /// A manifest whose every item an interrupted run took: its files, to remove.
    struct Finished { var manifest: URL; var ready: URL?; var journal: URL }

    /// The hidden file beside manifest `name` that records each item ingest is taking from it (its spool
    /// path, a tab, its audio's name in the domain folder), written and synced before the item moves. A
    /// run killed partway through a manifest leaves the manifest naming files that are gone; the next
    /// run counts such a file as taken when the journal names it and the domain folder holds it under
    /// that name with this manifest's transcript, and moves the rest. (The name starts with a dot, so
    /// scanning skips it.)
    static func journalName(_ manifest: String) -> String { "." + manifest + ".taken" }

    func run() throws -> Report {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: spool.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SpoolError("spool folder \(spool.path) does not exist or is not a folder")
        }
        // Taking items from a folder into itself (or into one inside it) would find them again on every run.
        let realSpool = Self.resolved(spool), realDomain = Self.resolved(domain)
        if realSpool == realDomain || realDomain.hasPrefix(realSpool + "/") || realSpool.hasPrefix(realDomain + "/") {
            throw SpoolError("the spool \(spool.path) and the domain folder \(domain.path) must be separate folders, neither inside the other")
        }
        do {
            try FileManager.default.createDirectory(at: domain, withIntermediateDirectories: true)
        } catch {
            throw SpoolError("cannot create the domain folder \(domain.path): \(reason(of: error))")
        }
        let lock = try lockDomain()
        defer { close(lock) }

        var report = Report()
        // Items (or manifests) whose move failed: left in the spool with the reason and retried on the
        // next run, while the others still move and are adapted.
        var failed: [String: String] = [:]
        var moved = Set<URL>()
        var names = try domainNames()
        let markerExisted = FileManager.default.fileExists(atPath: pendingPath)
        removeOrphanJournals()
        recoverClaims()
        removeStaleTemporaries()
        let deadline = Date().addingTimeInterval(wait)
        let domainIndex = DomainAudioIndex(folder: domain)
        while true {
            let (complete, young, left, finished) = try scan(domainIndex)
            // The run that took their last items was killed before it removed them (it had already
            // created the marker, so what it moved is adapted).
            for done in finished {
                unlink(done.manifest.path)
                if let ready = done.ready { unlink(ready.path) }
                unlink(done.journal.path)
                report.finished.append(done.manifest.lastPathComponent)
            }
            for item in complete where failed[item.manifest ?? item.name] == nil {
                // The marker comes first, so that a run killed while it waits for settling items (or
                // partway through) still has the next run adapt what it moved.
                if report.moved.isEmpty && !FileManager.default.createFile(atPath: pendingPath, contents: Data()) {
                    throw SpoolError("cannot create \(pendingPath), which tells the adaptation job there is new data; nothing was moved")
                }
                do {
                    report.moved.append(try move(item, names: &names))
                    moved.insert(item.audio)
                } catch {
                    let key = item.manifest ?? item.name
                    failed[key] = (error as? SpoolError)?.description ?? "\(error)"
                    if let manifest = item.manifest {
                        do { try keepUnmoved(of: manifest, items: complete.filter { $0.manifest == manifest }, moved: moved) } catch {
                            failed[key]! += "; the manifest could not be rewritten to the items still here (\(error)), but the next run skips the files already taken"
                        }
                    }
                }
            }
            let settling = young.filter { failed[$0.manifest ?? $0.name] == nil }
            if settling.isEmpty || Date() >= deadline {
                report.left = left + settling.map {
                    Left(name: $0.name, reason: String(format: "still being written (changed %.1f s ago; complete after %g s unchanged, or with %@.ready)",
                                                       -$0.modified.timeIntervalSinceNow, settle, ($0.name as NSString).deletingPathExtension))
                } + failed.keys.sorted().map {
                    Left(name: $0, reason: "\(failed[$0]!); it stays in the spool and is tried again on the next run")
                }
                break
            }
            // Complete but still settling: wait until the first of them is old enough (or the deadline).
            let next = settling.map { $0.modified.addingTimeInterval(settle) }.min()!
            let pause = max(0.05, min(next.timeIntervalSinceNow, deadline.timeIntervalSinceNow))
            Thread.sleep(forTimeInterval: pause)
        }
        report.failed = failed.count
        if report.moved.isEmpty && !markerExisted { unlink(pendingPath) }
        report.pending = FileManager.default.fileExists(atPath: pendingPath)
        return report
    }

    /// `url` with links resolved as far as it exists (the domain folder may not exist yet).
    static func resolved(_ url: URL) -> String {
        var existing = url.standardizedFileURL, rest: [String] = []
        while !FileManager.default.fileExists(atPath: existing.path), existing.path != "/" {
            rest.insert(existing.lastPathComponent, at: 0)
            existing.deleteLastPathComponent()
        }
        let base = URL(fileURLWithPath: existing.path).resolvingSymlinksInPath().path
        return rest.reduce(base) { ($0 == "/" ? "" : $0) + "/" + $1 }
    }

    private func lockDomain() throws -> Int32 {
        let path = domain.appendingPathComponent(".ingest.lock").path
        // Read-write where possible (NFS emulates flock with a write lock, which needs it), else
        // read-only: a lock file left by a run as another user (root, by hand) must not stop the
        // service's runs, and on a local file system flock needs no more.
        var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 && errno == EACCES { fd = open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw SpoolError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX) == 0 else {
            close(fd)
            throw SpoolError("cannot lock \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    // MARK: scanning

    private struct Entry { var url: URL; var modified: Date; var regular: Bool; var size: Int; var identity: FileIdentity }

    /// Complete items ready to move, complete items still settling, and what is left with its reason.
    private func scan(_ domainIndex: DomainAudioIndex) throws -> (complete: [Item], young: [Item], left: [Left], finished: [Finished]) {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: spool.path) } catch {
            throw SpoolError("cannot list the spool folder \(spool.path): \(reason(of: error))")
        }
        var entries: [String: Entry] = [:]
        var items: [Item] = []
        var left: [Left] = []
        for name in names where !name.hasPrefix(".") {
            let url = spool.appendingPathComponent(name)
            var info = stat()
            guard lstat(url.path, &info) == 0 else {
                // A name that is not UTF-8 reaches us with U+FFFD for its bad bytes and names no file:
                // said, not silently left in the spool for ever.
                if name.contains("\u{FFFD}") {
                    left.append(Left(name: name, reason: "its name is not valid UTF-8, which ingest cannot take: rename it (e.g. convmv -f latin1 -t utf8 --notest FILE)"))
                }
                continue  // else gone meanwhile
            }
            let modified = Self.changed(info)
            entries[name] = Entry(url: url, modified: modified, regular: info.st_mode & S_IFMT == S_IFREG, size: Int(info.st_size),
                                  identity: FileIdentity(info))
        }

        var finished: [Finished] = []
        var claimed = Set<String>()
        /// Audio paths a manifest already names, and which: a second manifest naming one is left whole
        /// (taking it would give the file one manifest's transcript and drop the other's line).
        var namedBy: [String: String] = [:]
        func readyMarker(_ stem: String) -> URL? { entries[stem + ".ready"].map(\.url) }

        // Manifests first: the audio they name is theirs.
        for name in entries.keys.sorted() where ext(name) == "tsv" {
            let entry = entries[name]!
            let stem = (name as NSString).deletingPathExtension
            claimed.insert(name)
            if entries[stem + ".ready"] != nil { claimed.insert(stem + ".ready") }
            guard entry.regular else { left.append(Left(name: name, reason: "not a regular file")); continue }
            let text: String
            switch Self.readText(entry.url) {
            case .success(let contents): text = contents
            case .failure(let why): left.append(Left(name: name, reason: "manifest \(why.description)")); continue
            }
            var lines: [(audio: String, text: String)] = []
            var problem: String?
            for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
                if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("#") { continue }
                let fields = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
                guard fields.count == 2 else { problem = "line \(number + 1): no tab between the audio path and the text"; break }
                // "./a.wav" and "a//b.wav" name what "a.wav" and "a/b.wav" name: one spelling, so a file
                // is claimed once and a manifest cannot list it twice.
                let written = String(fields[0]), transcript = normalised(String(fields[1]))
                let path = written.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
                if path.contains("/"), let folder = path.split(separator: "/").first { claimed.insert(String(folder)) }
                guard !path.isEmpty, !written.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
                    problem = "line \(number + 1): \"\(written)\" is not a relative path inside the spool"; break
                }
                guard Self.audioExtensions.contains(ext(path)) else {
                    problem = "line \(number + 1): \"\(path)\" does not end in an audio extension (\(Self.audioExtensions.sorted().joined(separator: ", ")))"; break
                }
                guard !transcript.isEmpty else { problem = "line \(number + 1): empty transcript"; break }
                guard !lines.contains(where: { $0.audio == path }) else { problem = "line \(number + 1): \"\(written)\" is listed twice"; break }
                if let other = namedBy[path] {
                    problem = "line \(number + 1): \"\(written)\" is also named by \(other), with its own transcript; remove one of the two lines"; break
                }
                lines.append((path, transcript))
            }
            if problem == nil && lines.isEmpty { problem = "no items" }
            if let problem { left.append(Left(name: name, reason: "manifest \(problem); fix it and touch it")); continue }
            var missing: [String] = []
            var group: [Item] = []
            var newest = entry.modified
            var linked: String?
            let journal = spool.appendingPathComponent(Self.journalName(name))
            let journaled = Self.journalEntries(journal)
            for line in lines {
                claimed.insert(line.audio)
                namedBy[line.audio] = name
                let url = spool.appendingPathComponent(line.audio)
                // Gone, and in the domain folder as the journal says: an interrupted run moved it.
                let absent = { if !self.wasTaken(line.audio, text: line.text, journaled: journaled) { missing.append(line.audio) } }
                switch openFolder(of: line.audio) {
                case .opened(let fd, _): close(fd)
                case .missing: absent(); continue
                case .refused(let part): linked = "\"\(line.audio)\" passes through \(part), a link or not a folder (links are not followed)"
                }
                if linked != nil { break }
                var info = stat()
                guard lstat(url.path, &info) == 0 else { absent(); continue }
                guard info.st_mode & S_IFMT == S_IFREG else { linked = "\"\(line.audio)\" is a link or not a regular file (links are not followed)"; break }
                // Copied across file systems by a killed run, its original not yet removed: taken (the
                // journal names it, and the domain folder holds it byte for byte, with this transcript).
                if let takenAs = journaled[line.audio], wasTaken(line.audio, text: line.text, journaled: journaled),
                   let bytes = FileManager.default.contents(atPath: url.path),
                   bytes == FileManager.default.contents(atPath: domain.appendingPathComponent(takenAs).path) {
                    unlink(url.path)
                    continue
                }
                let modified = Self.changed(info)
                newest = max(newest, modified)
                let itemName = (line.audio as NSString).lastPathComponent
                group.append(Item(name: itemName, audio: url, text: line.text, sources: [url], ready: nil, modified: modified,
                                  manifest: name, journal: journal))
            }
            if let linked { left.append(Left(name: name, reason: "manifest \(linked); fix it and touch it")); continue }
            if !missing.isEmpty {
                left.append(Left(name: name, reason: "waiting for \(missing.count) audio file(s) it names: \(missing.prefix(3).joined(separator: ", "))\(missing.count > 3 ? "..." : "")"))
                continue
            }
            // The manifest moves as one item: its audio files, then the manifest itself is removed.
            if var last = group.popLast() {
                last.sources.append(entry.url)
                last.ready = readyMarker(stem)
                last.modified = newest
                for i in group.indices { group[i].modified = newest; group[i].ready = readyMarker(stem) }
                items += group + [last]
            } else {
                finished.append(Finished(manifest: entry.url, ready: readyMarker(stem), journal: journal))
            }
        }

        // Audio + .txt pairs.
        for name in entries.keys.sorted() where !claimed.contains(name) && Self.audioExtensions.contains(ext(name)) {
            let entry = entries[name]!
            let stem = (name as NSString).deletingPathExtension
            claimed.insert(name)
            guard entry.regular else { left.append(Left(name: name, reason: "not a regular file (links are not followed)")); continue }
            let txtName = entries[stem + ".txt"] != nil || entries[stem + ".TXT"] == nil ? stem + ".txt" : stem + ".TXT"
            guard let txt = entries[txtName] else {
                left.append(Left(name: name, reason: "no transcript (\(stem).txt) yet")); continue
            }
            claimed.insert(txtName)
            if entries[stem + ".ready"] != nil { claimed.insert(stem + ".ready") }
            guard txt.regular else { left.append(Left(name: name, reason: "\(stem).txt is not a regular file")); continue }
            guard entry.size > 0 else { left.append(Left(name: name, reason: "empty audio file")); continue }
            let raw: String
            switch Self.readText(txt.url) {
            case .success(let text): raw = text
            case .failure(let why): left.append(Left(name: name, reason: "\(txtName) \(why.description)")); continue
            }
            let text = normalised(raw)
            guard !text.isEmpty else { left.append(Left(name: name, reason: "\(stem).txt is empty")); continue }
            items.append(Item(name: name, audio: entry.url, text: text, sources: [entry.url, txt.url],
                              ready: readyMarker(stem), modified: max(entry.modified, txt.modified), identity: entry.identity))
        }
        for name in entries.keys.sorted() where !claimed.contains(name) && ext(name) == "txt" {
            // (ext is lowercased: NAME.TXT beside no audio lands here too.)
            left.append(Left(name: name, reason: "a transcript without audio beside it"))
        }
        // Anything else is reported too, so that nothing dropped in the spool is silently ignored.
        for name in entries.keys.sorted() where !claimed.contains(name) && !["txt", "ready"].contains(ext(name)) {
            let entry = entries[name]!
            var info = stat()
            if lstat(entry.url.path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
                let inside = (try? FileManager.default.contentsOfDirectory(atPath: entry.url.path))?.filter { !$0.hasPrefix(".") } ?? []
                if !inside.isEmpty {
                    left.append(Left(name: name, reason: "a folder: ingest takes items at the spool's top level; move them up, or name them in a manifest NAME.tsv (\(name)/FILE<TAB>transcript)"))
                }
            } else if entry.regular {
                left.append(Left(name: name, reason: "not audio (\(Self.audioExtensions.sorted().joined(separator: ", "))), a transcript, a manifest or a .ready marker"))
            } else {
                left.append(Left(name: name, reason: "not a regular file (links are not followed)"))
            }
        }

        var complete: [Item] = []
        var young: [Item] = []
        let now = Date()
        for item in items {
            if item.ready != nil || now.timeIntervalSince(item.modified) >= settle { complete.append(item) } else { young.append(item) }
        }
        // What adapt could never use stays here with the reason: audio libsndfile cannot decode to its
        // end (a truncated FLAC passes a header check), a recording too long or too short for its text,
        // a transcript it cannot spell. In the domain folder (which the user may not be able to change)
        // adapt would skip it on every run, and it would count towards --min-items. Only complete items
        // are read: one still being written may not parse yet.
        var unreadable: [String: String] = [:]   // manifest or item name -> reason
        let validator = ItemValidator(vocabulary: .earshot, frontend: FrontendConfig(), subsampling: Self.modelSubsampling)
        var batch: [String: String] = [:]   // this scan's complete items: sha256 -> name
        for item in complete where unreadable[item.manifest ?? item.name] == nil {
            var problem: String?
            switch validator.validate(DataItem(audio: item.audio.path, text: item.text)) {
            case .failure(let reason): problem = "\(reason.description); adapt could not use it"
            case .success:
                do { _ = try AudioFile.read(path: item.audio.path) } catch { problem = "unreadable audio: \(error); adapt could not use it" }
            }
            // A recording the domain folder already holds, byte for byte (a folder copied twice), would be
            // trained on twice, and two copies of one take are all adapt sees of it (it refuses to
            // validate on what it trains on): it stays here instead.
            if problem == nil, let bytes = try? readRegularFile(item.audio.path) {
                let hash = SHA256.hex(bytes)
                if let copy = domainIndex.copy(size: bytes.count, hash: hash) {
                    problem = "the same recording as \(copy), already taken (remove it; a new take of the same words is welcome)"
                } else if let first = batch[hash] {
                    problem = "the same recording as \(first), taken now (remove it; a new take of the same words is welcome)"
                } else {
                    batch[hash] = item.audio.lastPathComponent
                }
            }
            if let problem {
                unreadable[item.manifest ?? item.name] = item.manifest == nil ? problem
                    : "manifest: \(item.audio.lastPathComponent): \(problem); fix it and touch the manifest"
            }
        }
        complete.removeAll { unreadable[$0.manifest ?? $0.name] != nil }
        left += unreadable.keys.sorted().map { Left(name: $0, reason: unreadable[$0]!) }
        // A manifest's items settle together (they share `modified`), so a manifest moves whole or not at all.
        return (complete, young, left, finished)
    }

    private func ext(_ name: String) -> String { (name as NSString).pathExtension.lowercased() }

    /// An item's path as a manifest names it: relative to the spool, which scanning puts every item in.
    private func relativePath(_ url: URL) -> String { String(url.path.dropFirst(spool.path.count + 1)) }

    /// When a file last changed, for settling: its modification time, unless that is later than its
    /// status-change time. `cp -p` and `rsync -a` keep the source's modification time, which on a card
    /// written in local time can be hours ahead of the clock; the kernel sets the status-change time
    /// itself at every write, so such a file still settles `settle` seconds after its last write.
    static func changed(_ info: stat) -> Date {
        let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        let status = Double(info.st_ctim.tv_sec) + Double(info.st_ctim.tv_nsec) / 1e9
        return Date(timeIntervalSince1970: min(modified, status))
    }

    /// A transcript or manifest's text; the failure says why (it cannot be read, for the permissions or
    /// an I/O error, or it is not UTF-8), so that the fix it asks for is the right one.
    static func readText(_ url: URL) -> Result<String, SpoolError> {
        let bytes: [UInt8]
        do { bytes = try readRegularFile(url.path) } catch { return .failure(SpoolError("cannot be read: \(error)")) }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(SpoolError("is not UTF-8 text")) }
        return .success(text)
    }

    /// One line of text: lines joined by spaces, surrounding whitespace removed.
    private func normalised(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
    }

    // MARK: moving

    /// After a manifest's item failed to move, rewrites the manifest (atomically, in the spool) to list
    /// only its items still in the spool, if any of its items did move: it then names no file already
    /// taken, and the next run moves the rest.
    private func keepUnmoved(of manifest: String, items: [Item], moved: Set<URL>) throws {
        guard items.contains(where: { moved.contains($0.audio) }) else { return }
        let lines = items.filter { !moved.contains($0.audio) }.map {
            relativePath($0.audio) + "\t" + $0.text + "\n"
        }
        try writeAtomically(Data(lines.joined().utf8), to: spool.appendingPathComponent(manifest))
        // The manifest now names only files still here, so its record of what was taken is done with.
        unlink(spool.appendingPathComponent(Self.journalName(manifest)).path)
    }

    /// A manifest journal's entries, spool path -> name in the domain folder (the last entry for a path
    /// wins: a retried move may choose another name). Only whole lines count, each decoded alone: a run
    /// killed while it wrote one leaves a part that must match nothing and spoil nothing else.
    static func journalEntries(_ journal: URL) -> [String: String] {
        guard let bytes = try? readRegularFile(journal.path) else { return [:] }
        var entries: [String: String] = [:]
        for raw in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            guard let line = String(validating: raw, as: UTF8.self) else { continue }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            if fields.count == 2 { entries[String(fields[0])] = String(fields[1]) }
        }
        return entries
    }

    /// Whether manifest item `path` (absent from the spool) was taken: the journal names it, and the
    /// domain folder holds audio under the name it gives, with the transcript written for this text. A
    /// journal line written just before a move that then failed, or left by an earlier manifest of the
    /// same name, does not pass.
    private func wasTaken(_ path: String, text: String, journaled: [String: String]) -> Bool {
        guard let name = journaled[path], !name.contains("/") else { return false }
        var info = stat()
        let audio = domain.appendingPathComponent(name)
        guard lstat(audio.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
        let transcript = audio.deletingPathExtension().appendingPathExtension("txt")
        guard let bytes = try? readRegularFile(transcript.path) else { return false }
        return bytes.elementsEqual((text + "\n").utf8)
    }

    /// Records in the manifest's journal that `item` is being taken as `name`, durably, before it moves:
    /// killed after the move, the next run then finds it in the domain folder.
    private func record(_ item: Item, as name: String, in journal: URL) throws {
        let fd = open(journal.path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        var failure: String? = fd < 0 ? String(cString: strerror(errno)) : nil
        var created = false
        if fd >= 0 {
            var info = stat(), last: UInt8 = 0
            let known = fstat(fd, &info) == 0
            created = !known || info.st_size == 0
            // After a line cut short by a kill, start a new one: appended to the part, this one would be lost.
            let cut = known && info.st_size > 0 && pread(fd, &last, 1, info.st_size - 1) == 1 && last != UInt8(ascii: "\n")
            let line = Array(((cut ? "\n" : "") + relativePath(item.audio) + "\t" + name + "\n").utf8)
            if line.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress!, $0.count) }) != line.count || fsync(fd) != 0 {
                failure = String(cString: strerror(errno))
            }
            close(fd)
        }
        // A new (empty) journal's name must be on disk before the first move is.
        if failure == nil && created {
            let folder = open(spool.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if folder < 0 || fsync(folder) != 0 { failure = String(cString: strerror(errno)) }
            if folder >= 0 { close(folder) }
        }
        if let failure {
            throw SpoolError("cannot record in \(journal.path) that \(item.name) is being taken from \(item.manifest ?? "") (\(failure)); nothing of it was moved")
        }
    }

    /// Removes the temporary files of crash-safe writes (".NAME.tmp-PID-N") that a killed run left in the
    /// domain folder; the lock keeps any other ingest, the only writer there, out.
    private func removeStaleTemporaries() {
        for temporary in atomicWriteTemporaries(in: domain.path) { unlink(temporary.path) }
    }

    /// Removes journals whose manifest is gone: left by a run killed between removing a finished
    /// manifest and its journal, they must not mark a later manifest's files of the same names as taken.
    /// Finishes or undoes the takes of pairs that a killed run left claimed (`claimSuffix`). A claim is
    /// removed only when the domain folder holds its transcript (under the item's name, `stem` or
    /// `stem-N`, as `move` writes it): then the item was taken, and the spool's audio, if any, is either
    /// the copy across file systems not yet removed (the domain folder holds it byte for byte: removed
    /// now, so it is not taken twice) or a later take (it waits for its own transcript). Otherwise the
    /// transcript is the only copy of its text and goes back under its name (or, if a new transcript
    /// took that name, under NAME.txt.previous, reported by the scan), and the item is taken again.
    private func recoverClaims() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: spool.path) else { return }
        for name in names where name.hasPrefix(".") && name.hasSuffix(Self.claimSuffix) {
            let claim = spool.appendingPathComponent(name).path
            let original = String(name.dropFirst().dropLast(Self.claimSuffix.count))
            let stem = (original as NSString).deletingPathExtension
            guard case .success(let raw) = Self.readText(URL(fileURLWithPath: claim)) else { continue }
            let taken = domainHolds(transcript: normalised(raw) + "\n", stem: stem)
            if let audio = names.first(where: { !$0.hasPrefix(".") && ($0 as NSString).deletingPathExtension == stem
                && Self.audioExtensions.contains(ext($0)) }) {
                let audioPath = spool.appendingPathComponent(audio).path
                var info = stat()
                if taken, lstat(audioPath, &info) == 0, domainHoldsCopy(of: audioPath, stem: stem, size: Int(info.st_size)) {
                    unlink(audioPath)
                }
            }
            if taken {
                unlink(claim)
            } else if !FileManager.default.fileExists(atPath: spool.appendingPathComponent(original).path) {
                rename(claim, spool.appendingPathComponent(original).path)
            } else {
                rename(claim, spool.appendingPathComponent(original + ".previous").path)
            }
        }
    }

    /// Whether the domain folder holds `text` as the transcript of an item named `stem` or `stem-N`.
    private func domainHolds(transcript text: String, stem: String) -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: domain.path) else { return false }
        for name in names where ext(name) == "txt" && Self.isNamed(name, stem: stem) {
            if let bytes = try? readRegularFile(domain.appendingPathComponent(name).path), bytes.elementsEqual(text.utf8) { return true }
        }
        return false
    }

    /// Whether `name` is `stem` or `stem-N` (any extension): the names `move` gives an item.
    private static func isNamed(_ name: String, stem: String) -> Bool {
        let base = (name as NSString).deletingPathExtension
        if base == stem { return true }
        guard base.hasPrefix(stem + "-") else { return false }
        let n = base.dropFirst(stem.count + 1)
        return !n.isEmpty && n.allSatisfy(\.isNumber)
    }

    /// Whether the domain folder holds a copy of `path` (`size` bytes) under a name `move` would have
    /// given it (`stem` or `stem-N`, its extension) with exactly its bytes.
    private func domainHoldsCopy(of path: String, stem: String, size: Int) -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: domain.path),
              let original = FileManager.default.contents(atPath: path) else { return false }
        let wantedExt = (path as NSString).pathExtension
        func named(_ name: String) -> Bool { (name as NSString).pathExtension == wantedExt && Self.isNamed(name, stem: stem) }
        for name in names where named(name) {
            let candidate = domain.appendingPathComponent(name).path
            var info = stat()
            guard lstat(candidate, &info) == 0, Int(info.st_size) == size else { continue }
            if FileManager.default.contents(atPath: candidate) == original { return true }
        }
        return false
    }

    private func removeOrphanJournals() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: spool.path) else { return }
        for name in names where name.hasPrefix(".") && name.lowercased().hasSuffix(".tsv.taken") {
            let manifest = String(name.dropFirst().dropLast(".taken".count))
            if !names.contains(manifest) { unlink(spool.appendingPathComponent(name).path) }
        }
    }

    /// Writes the transcript into the domain folder (temporary name, fsync, rename), then renames the
    /// audio in (copy + fsync + rename across file systems), then removes the item's other spool files.
    /// The order means `earshot adapt` never finds audio without its transcript; a crash in between
    /// leaves a transcript without audio in the domain folder, which adapt ignores and the retry
    /// overwrites.
    private func move(_ item: Item, names: inout Set<String>) throws -> Moved {
        // The file is reached through folders opened one by one without following links, and renamed or
        // read through the last of them: a folder on the path swapped for a link since the scan cannot
        // make the move take a file from outside the spool.
        precondition(item.audio.path.hasPrefix(spool.path + "/"), "scan makes every item's path inside the spool")
        guard case .opened(let folder, let file) = openFolder(of: relativePath(item.audio)) else {
            throw SpoolError("\(item.audio.path): a folder on its path changed into a link or vanished while ingest ran; nothing of it was moved")
        }
        defer { close(folder) }
        var info = stat()
        guard fstatat(folder, file, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw SpoolError("\(item.audio.path) changed into a link or a non-regular file while ingest ran; nothing of it was moved")
        }
        // Replaced since the scan (a new take saved over it): that one is another recording, whose
        // transcript may not be the one read; it is taken on a later run, once settled.
        if let scanned = item.identity, FileIdentity(info) != scanned {
            throw SpoolError("\(item.audio.path) was replaced while ingest ran; the new file is taken on a later run")
        }
        // A pair's transcript is claimed before anything moves (renamed to a hidden name, then read
        // again): the text taken is exactly the file claimed, and a run killed from here on leaves no
        // `a.txt` to label the next `a.wav` (the next run finishes or undoes the claim).
        var claim: (path: String, original: String)?
        if item.manifest == nil, let transcript = item.sources.first(where: { $0 != item.audio }) {
            let claimed = spool.appendingPathComponent("." + transcript.lastPathComponent + Self.claimSuffix).path
            guard rename(transcript.path, claimed) == 0 else {
                throw SpoolError("cannot take \(transcript.path): \(String(cString: strerror(errno))); nothing of the item was moved")
            }
            claim = (claimed, transcript.path)
            guard case .success(let text) = Self.readText(URL(fileURLWithPath: claimed)), normalised(text) == item.text else {
                undoClaim(claim)
                throw SpoolError("\(transcript.path) changed while ingest ran; the item is taken on a later run")
            }
        }
        do {
            return try moveClaimed(item, folder: folder, file: file, info: info, claim: claim, names: &names)
        } catch {
            undoClaim(claim)
            throw error
        }
    }

    /// Puts a claimed transcript back under its name (unless a new one came meanwhile: then the claim,
    /// older, goes).
    private func undoClaim(_ claim: (path: String, original: String)?) {
        guard let claim else { return }
        if FileManager.default.fileExists(atPath: claim.original) { unlink(claim.path) } else { rename(claim.path, claim.original) }
    }

    /// `move` once the item is claimed: the audio and its transcript into the domain folder.
    private func moveClaimed(_ item: Item, folder: Int32, file: String, info: stat, claim: (path: String, original: String)?,
                             names: inout Set<String>) throws -> Moved {
        // The marker is consumed before the audio moves: left behind, it would declare the next file of
        // that name complete while it is still being copied.
        if let ready = item.ready { unlink(ready.path) }
        let audioExt = (item.audio.lastPathComponent as NSString).pathExtension
        // A manifest may name a hidden file (".take.wav"); adapt skips hidden names, so it lands without the dot.
        var stem = ((item.audio.lastPathComponent as NSString).deletingPathExtension as NSString).lastPathComponent
        while stem.hasPrefix(".") { stem.removeFirst() }
        if stem.isEmpty { stem = "item" }
        var name = stem
        var n = 1
        while Self.taken(name, among: names) { n += 1; name = "\(stem)-\(n)" }
        let audioDestination = domain.appendingPathComponent(name + "." + audioExt)
        let textDestination = domain.appendingPathComponent(name + ".txt")
        if let journal = item.journal { try record(item, as: audioDestination.lastPathComponent, in: journal) }
        try writeAtomically(Data((item.text + "\n").utf8), to: textDestination)
        if renameat(folder, file, AT_FDCWD, audioDestination.path) != 0 {
            let code = errno
            guard code == EXDEV else {
                throw SpoolError("cannot move \(item.audio.path) to \(audioDestination.path): \(String(cString: strerror(code)))")
            }
            let fd = openat(folder, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw SpoolError("cannot read \(item.audio.path): \(String(cString: strerror(errno)))") }
            let data: Data
            do { data = try FileHandle(fileDescriptor: fd, closeOnDealloc: true).readToEnd() ?? Data() } catch {
                throw SpoolError("cannot read \(item.audio.path): \(reason(of: error))")
            }
            // The write syncs the domain folder, so the spool copy goes only once the new name is on disk
            // (across file systems nothing else orders the rename in one before the unlink in the other).
            try writeAtomically(data, to: audioDestination)
            // Replaced while it was copied (a new take saved over it): the new file is not what was
            // copied, and stays in the spool (without this item's transcript, which the old take took
            // along) for a later run; the copy of the old take is kept.
            var now = stat()
            let replaced = fstatat(folder, file, &now, AT_SYMLINK_NOFOLLOW) == 0 && FileIdentity(now) != FileIdentity(info)
            // If it cannot go (a spool the service may read but not change), the copy is withdrawn:
            // kept, it would be taken again on every run.
            guard replaced || unlinkat(folder, file, 0) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(audioDestination.path)
                unlink(textDestination.path)
                throw SpoolError("cannot remove \(item.audio.path) from the spool after copying it (\(reason)); the copy was withdrawn: the earshot user must be able to delete what it takes")
            }
        }
        // Swapped for a link between the check and the rename, the link itself moved: take it back out.
        var moved = stat()
        if lstat(audioDestination.path, &moved) != 0 || moved.st_mode & S_IFMT != S_IFREG {
            unlink(audioDestination.path)
            throw SpoolError("\(item.audio.path) changed into a link while ingest moved it; it was not taken")
        }
        // Replaced in the instant between the check and the rename: the file moved is a new take, which
        // this transcript does not describe. It goes back to the spool for a later run.
        if moved.st_dev == info.st_dev, FileIdentity(moved) != FileIdentity(info) {
            if renameat(AT_FDCWD, audioDestination.path, folder, file) == 0 { unlink(textDestination.path) }
            throw SpoolError("\(item.audio.path) was replaced while ingest moved it; the new file is taken on a later run")
        }
        names.insert(Self.nameKey(audioDestination.lastPathComponent))
        // A pair's transcript is the claimed file (a new `a.txt` written meanwhile belongs to a later
        // recording and stays); a manifest's other sources are the manifest itself.
        if let claim { unlink(claim.path) }
        for source in item.sources where source != item.audio && item.manifest != nil { unlink(source.path) }
        // The manifest's last item took the manifest with it; its journal goes after it, never before
        // (a manifest without its journal would wait forever for the files already taken).
        if let journal = item.journal, item.sources.contains(where: { $0.lastPathComponent == item.manifest }) {
            unlink(journal.path)
        }
        return Moved(sources: item.sources.map(\.lastPathComponent), destination: audioDestination.path)
    }

    enum OpenedFolder {
        /// The folder holding the file (the caller closes it) and the file's name in it.
        case opened(fd: Int32, name: String)
        /// A folder on the path is not there (yet).
        case missing
        /// This folder on the path is a link or not a folder.
        case refused(String)
    }

    /// Opens the folders on spool path `relative` one at a time with O_NOFOLLOW: a link on the path would
    /// let it leave the spool (and bring files from elsewhere into the domain folder). What is then read
    /// or renamed through the returned descriptor stays inside, whatever changes on the path meanwhile.
    private func openFolder(of relative: String) -> OpenedFolder {
        var fd = open(spool.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return .missing }
        let parts = relative.split(separator: "/").map(String.init)
        for part in parts.dropLast() {
            let next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let code = errno
            close(fd)
            guard next >= 0 else { return code == ENOENT ? .missing : .refused(part) }
            fd = next
        }
        return .opened(fd: fd, name: parts.last ?? relative)
    }

    /// Whether `name` is in use in the domain folder (audio of any extension, or its transcript).
    /// A transcript alone is the leftover of an interrupted move, so its name is free again.
    /// Extensions match whatever their case: audio keeps the case it came with (ZOOM0001.WAV), and a
    /// second ZOOM0001.WAV must not replace the first.
    private static func taken(_ name: String, among entries: Set<String>) -> Bool {
        Self.audioExtensions.contains { entries.contains(name + "." + $0) }
    }

    /// The domain folder's names as `taken` compares them, listed once per run: the lock keeps other
    /// ingests out, and each move adds its own.
    private func domainNames() throws -> Set<String> {
        do { return Set(try FileManager.default.contentsOfDirectory(atPath: domain.path).map(Self.nameKey)) } catch {
            throw SpoolError("cannot list the domain folder \(domain.path): \(reason(of: error))")
        }
    }

    /// A file name with an audio extension lower-cased (ZOOM0001.WAV -> ZOOM0001.wav).
    private static func nameKey(_ name: String) -> String {
        let e = (name as NSString).pathExtension
        return audioExtensions.contains(e.lowercased()) ? (name as NSString).deletingPathExtension + "." + e.lowercased() : name
    }

    /// Crash-safe (temporary file, fsync, rename, fsync of the folder): Tensors' write, named for ingest.
    private func writeAtomically(_ data: Data, to url: URL) throws {
        do { try writeFileAtomically([UInt8](data), to: url.path) } catch {
            throw SpoolError("cannot write \(url.path): \(error)")
        }
    }
}
