import Audio
import Foundation
import Model
import Recognizer
import Server
import Testing
import TestSupport
import Tensors

#if canImport(Glibc)
import Glibc
#endif

// The adaptation sidecar (docs/adaptation.md): spool ingest, the systemd units that chain ingest ->
// adapt -> reload, and the daemon taking a new model while a client streams.

/// A constant tone of `count` samples that no other file of these tests has byte for byte: ingest leaves
/// in the spool a recording the domain folder already holds.
private let tonesMade = Locked(0)
func tone(count: Int) -> [Float] {
    let k = tonesMade.withLock { $0 += 1; return $0 }
    return [Float](repeating: 0.01 + Float(k % 250) * 1e-4, count: count)
}

@Suite("adaptation workflow", .serialized)
struct AdaptationWorkflowTests {
    @Test("a model replaced atomically and `earshot reload` while a client streams: its next utterance uses the new model, nothing is dropped; the daemon started on its fallback")
    func reloadWhileStreamingSwitchesAtTheNextUtterance() throws {
        let scratch = try Scratch()
        let fx = try TinyFixture(scratch: scratch)
        let earshot = try builtExecutable("earshot")
        // The configured model is the adapted one, not written yet: the daemon serves the fallback.
        let adapted = scratch.path("adapted.safetensors")
        let daemon = try Daemon(scratch: scratch, model: adapted, arguments: ["--no-capture", "--fallback-model", fx.modelPath])
        #expect(try daemon.status().model.path == fx.modelPath)
        #expect(daemon.child.stderr.contains("serving the fallback model"), "\(daemon.child.stderr)")

        let first = scene([(nil, 0.3), ("yes", 0), (nil, 0.9)], model: fx.tiny)
        let second = scene([("right", 0), (nil, 0.9)], model: fx.tiny)
        let reference = referenceFinals(first + second, recognizer: fx.recognizer).map(\.text)
        try #require(reference.count == 2 && reference.allSatisfy { !$0.isEmpty }, "\(reference)")

        let (client, _) = try daemon.connect()
        defer { client.close() }
        try client.send(.start(AudioFormat(sampleRate: 16000), partials: false))
        var finals: [String] = []
        func send(_ samples: [Float]) throws {
            let bytes = s16Bytes(samples)
            for offset in stride(from: 0, to: bytes.count, by: 3200) {
                try client.send(.audio(Array(bytes[offset..<min(bytes.count, offset + 3200)])))
            }
        }
        try send(first)
        while finals.isEmpty, let reply = try client.receive(timeout: 30) {
            if case .final(_, _, let t, _, _) = reply.message { finals.append(t.text) }
            if case .error(_, let message) = reply.message { Issue.record("session error: \(message)") }
        }

        // The adaptation job's way of writing: a temporary file, then rename over the configured path.
        let other = rot13Model(fx.tiny.trained)
        try other.save(path: scratch.path(".adapted.tmp"))
        #expect(rename(scratch.path(".adapted.tmp"), adapted) == 0)
        let reload = try Child(earshot, ["reload", "--socket", daemon.socket], scratch: scratch, tag: "reload")
        #expect(reload.wait(timeout: 60) == 0, "\(reload.stderr)")
        #expect(reload.stdout.hasPrefix("reloaded adapted (\(adapted)"), "\(reload.stdout)")
        let status = try Child(earshot, ["status", "--socket", daemon.socket], scratch: scratch, tag: "status")
        #expect(status.wait(timeout: 30) == 0, "\(status.stderr)")
        #expect(status.stdout.contains("sessions      1 running"), "\(status.stdout)")
        #expect(status.stdout.contains("model         adapted (\(adapted)"), "\(status.stdout)")

        try send(second)
        try client.send(ClientRequest(.stop, id: .int(9)))
        var stopped = false
        while !stopped, let reply = try client.receive(timeout: 30) {
            switch reply.message {
            case .final(_, _, let t, _, _): finals.append(t.text)
            case .stopped: stopped = true
            case .error(_, let message): Issue.record("session error: \(message)")
            default: break
            }
        }
        #expect(stopped, "the session was dropped")
        #expect(finals == [reference[0], rot13(reference[1])])

        // A model that fails its checks: exit 1 with the daemon's reason, and the adapted one serves on.
        let corrupt = scratch.path("corrupt.safetensors")
        try Data(repeating: 0x41, count: 64).write(to: URL(fileURLWithPath: corrupt))
        let bad = try Child(earshot, ["reload", "--socket", daemon.socket, "--model", corrupt], scratch: scratch, tag: "bad")
        #expect(bad.wait(timeout: 60) == 1)
        #expect(bad.stderr.contains("reload failed") && bad.stderr.contains(corrupt), "\(bad.stderr)")
        #expect(try daemon.status().model.path == adapted)
        let json = try Child(earshot, ["status", "--socket", daemon.socket, "--json"], scratch: scratch, tag: "json")
        #expect(json.wait(timeout: 30) == 0)
        #expect(json.stdout.hasPrefix("{\"type\":\"status\""), "\(json.stdout)")
        #expect(daemon.terminate() == 0)

        let gone = try Child(earshot, ["reload", "--socket", daemon.socket], scratch: scratch, tag: "gone")
        #expect(gone.wait(timeout: 30) == 1)
        #expect(gone.stderr.contains(daemon.socket) && gone.stderr.contains("earshotd"), "\(gone.stderr)")
    }

    @Test("ingest moves complete items (pairs, .ready markers, whole manifests) into the domain folder and leaves the rest; nothing new exits 3")
    func ingestMovesCompleteItemsOnly() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let spool = scratch.path("spool"), domain = scratch.path("domain")
        let fm = FileManager.default
        try fm.createDirectory(atPath: spool, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: domain, withIntermediateDirectories: true)
        func put(_ name: String, _ text: String, old: Bool = true) throws {
            let path = spool + "/" + name
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            if old { try fm.setAttributes([.modificationDate: Date().addingTimeInterval(-60)], ofItemAtPath: path) }
        }
        /// A real recording (ingest decodes what it takes), `n` x 100 ms long so each is told
        /// apart by its bytes; returns them.
        func audio(_ name: String, _ n: Int, old: Bool = true) throws -> Data {
            let path = spool + "/" + name
            try AudioWriter.write((0..<(1600 * n)).map { Float(sin(Double($0) * 0.1)) * 0.1 }, sampleRate: 16000, to: path)
            if old { try fm.setAttributes([.modificationDate: Date().addingTimeInterval(-60)], ofItemAtPath: path) }
            return try Data(contentsOf: URL(fileURLWithPath: path))
        }
        let aBytes = try audio("a.wav", 11); try put("a.txt", "Hello there\n")
        try put("b.flac", "fLaC-b")                                          // no transcript
        try put("c.wav", "RIFF-c", old: false); try put("c.txt", "c", old: false)   // still being written
        _ = try audio("d.wav", 12, old: false); try put("d.txt", "d\n", old: false); try put("d.ready", "")
        _ = try audio("e.wav", 13); _ = try audio("f.ogg", 14); try put("notes.tsv", "e.wav\tfirst one\nf.ogg\tsecond one\n")
        try put("g.wav", "RIFF-g"); try put("late.tsv", "g.wav\tgee\nmissing.wav\tnot here\n")
        try put("bad.wav", "RIFF-bad"); try put("bad.txt", "unreadable")     // complete, but not audio
        _ = try audio("m1.wav", 15); try put("m2.wav", "RIFF-m2"); try put("mixed.tsv", "m1.wav\tone\nm2.wav\ttwo\n")
        try put(".h.wav", "RIFF-h"); try put(".h.txt", "hidden")
        try Data("RIFF-old".utf8).write(to: URL(fileURLWithPath: domain + "/a.wav"))   // the name is taken

        let run1 = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "30", "--wait", "0"],
                             scratch: scratch, tag: "i1")
        #expect(run1.wait(timeout: 30) == 0, "\(run1.stderr)")
        let inDomain = Set(try fm.contentsOfDirectory(atPath: domain))
        #expect(inDomain == ["a.wav", "a-2.wav", "a-2.txt", "d.wav", "d.txt", "e.wav", "e.txt", "f.ogg", "f.txt",
                             ".adapt-pending", ".ingest.lock"], "\(inDomain.sorted())")
        #expect(Set(try fm.contentsOfDirectory(atPath: spool)) == ["b.flac", "c.wav", "c.txt", "g.wav", "late.tsv", ".h.wav", ".h.txt",
                                                                  "bad.wav", "bad.txt", "m1.wav", "m2.wav", "mixed.tsv"])
        #expect(try String(contentsOfFile: domain + "/a-2.txt", encoding: .utf8) == "Hello there\n")
        #expect(try Data(contentsOf: URL(fileURLWithPath: domain + "/a-2.wav")) == aBytes)
        #expect(try String(contentsOfFile: domain + "/f.txt", encoding: .utf8) == "second one\n")
        for line in ["left  b.flac: no transcript (b.txt) yet", "left  c.wav: still being written",
                     "left  late.tsv: waiting for 1 audio file(s) it names: missing.wav", "left  bad.wav: unreadable audio",
                     "left  mixed.tsv: manifest: m2.wav: unreadable audio", "ingested 4 item(s)"] {
            #expect(run1.stdout.contains(line), "missing \(line) in \(run1.stdout)")
        }

        // Nothing new, but the moved data is not adapted yet: still 0, so a failed adaptation is retried.
        let run2 = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "30", "--wait", "0"],
                             scratch: scratch, tag: "i2")
        #expect(run2.wait(timeout: 30) == 0)
        #expect(run2.stdout.contains("has not been adapted yet"), "\(run2.stdout)")
        try fm.removeItem(atPath: domain + "/.adapt-pending")
        let run3 = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "30", "--wait", "0"],
                             scratch: scratch, tag: "i3")
        #expect(run3.wait(timeout: 30) == 3, "\(run3.stdout)\(run3.stderr)")
        #expect(run3.stdout.contains("nothing new"))

        // A complete item still settling is waited for (here 1 s), not left behind.
        _ = try audio("h.wav", 16, old: false); try put("h.txt", "aitch", old: false)
        let run4 = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "1", "--wait", "20"],
                             scratch: scratch, tag: "i4")
        #expect(run4.wait(timeout: 30) == 0, "\(run4.stderr)")
        #expect(fm.fileExists(atPath: domain + "/h.wav") && fm.fileExists(atPath: domain + "/h.txt"), "\(run4.stdout)")

        // --min-items counts what adapt would find: a-2, d, e, f and h (a.wav has no transcript, z's
        // transcript has nothing adapt can spell).
        _ = try audio("z.wav", 17); try fm.moveItem(atPath: spool + "/z.wav", toPath: domain + "/z.wav")
        try Data("###\n".utf8).write(to: URL(fileURLWithPath: domain + "/z.txt"))
        for (least, status) in [(6, Int32(3)), (5, Int32(0))] {
            let run = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "30", "--wait", "0",
                                          "--min-items", "\(least)"], scratch: scratch, tag: "min\(least)")
            #expect(run.wait(timeout: 30) == status, "\(run.stdout)\(run.stderr)")
            #expect(run.stdout.contains("waiting: \(domain) holds 5 items with a transcript adapt can use (1 more with an empty or unspellable one); adapting needs at least 6") == (status == 3),
                    "\(run.stdout)")
        }
        // A domain folder it cannot read is an error for the journal, not a wait.
        try Data("no tab on this line\n".utf8).write(to: URL(fileURLWithPath: domain + "/manifest.tsv"))
        let unreadable = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "30", "--wait", "0",
                                             "--min-items", "2"], scratch: scratch, tag: "minbad")
        #expect(unreadable.wait(timeout: 30) == 1, "\(unreadable.stdout)\(unreadable.stderr)")
        #expect(unreadable.stderr.contains("manifest.tsv"), "\(unreadable.stderr)")
        try fm.removeItem(atPath: domain + "/manifest.tsv")

        let missing = try Child(earshot, ["ingest", "--spool", scratch.path("nope"), "--domain", domain], scratch: scratch, tag: "i5")
        #expect(missing.wait(timeout: 30) == 1)
        #expect(missing.stderr.contains(scratch.path("nope")), "\(missing.stderr)")
    }

    @Test("ingest leaves an item it cannot move with the reason and moves the rest; a second ZOOM0001.WAV gets -2; failures alone exit 1")
    func ingestKeepsGoingPastAnItemItCannotMove() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let spool = scratch.path("spool"), domain = scratch.path("domain")
        let fm = FileManager.default
        // Folders where two transcripts must go: writing them fails, even as root, as a folder the
        // service may not write or a full disk would.
        for folder in [spool, domain + "/bad.txt", domain + "/bad2.txt"] {
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        func audio(_ name: String, _ n: Int) throws -> Data {
            try AudioWriter.write(tone(count: 1600 * n), sampleRate: 16000, to: spool + "/" + name)
            return try Data(contentsOf: URL(fileURLWithPath: spool + "/" + name))
        }
        func put(_ name: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: spool + "/" + name)) }
        func ingest(_ tag: String) throws -> Child {
            try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "0", "--wait", "0"], scratch: scratch, tag: tag)
        }
        _ = try audio("bad.wav", 10); try put("bad.txt", "bad")
        _ = try audio("good.wav", 11); try put("good.txt", "good")
        _ = try audio("m1.wav", 12); _ = try audio("bad2.wav", 13); try put("notes.tsv", "m1.wav\tone\nbad2.wav\ttwo\n")
        let firstTake = try audio("ZOOM0001.WAV", 14); try put("ZOOM0001.TXT", "first take")

        let run1 = try ingest("f1")
        #expect(run1.wait(timeout: 30) == 0, "\(run1.stdout)\(run1.stderr)")
        #expect(Set(try fm.contentsOfDirectory(atPath: domain)) == ["bad.txt", "bad2.txt", "good.wav", "good.txt", "m1.wav", "m1.txt",
                                                                   "ZOOM0001.WAV", "ZOOM0001.txt", ".adapt-pending", ".ingest.lock"])
        #expect(Set(try fm.contentsOfDirectory(atPath: spool)) == ["bad.wav", "bad.txt", "bad2.wav", "notes.tsv"])
        for line in ["left  bad.wav: cannot write", "left  notes.tsv: cannot write", "rename failed: Is a directory", "tried again on the next run", "ingested 3 item(s)"] {
            #expect(run1.stdout.contains(line), "missing \(line) in \(run1.stdout)")
        }
        // The manifest now names only what is still in the spool.
        #expect(try String(contentsOfFile: spool + "/notes.tsv", encoding: .utf8) == "bad2.wav\ttwo\n")

        // The recorder numbers from 1 again: the second take must not replace the first.
        let secondTake = try audio("ZOOM0001.WAV", 15); try put("ZOOM0001.TXT", "second take")
        try fm.removeItem(atPath: domain + "/.adapt-pending")
        let run2 = try ingest("f2")
        #expect(run2.wait(timeout: 30) == 0, "\(run2.stdout)\(run2.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: domain + "/ZOOM0001.WAV")) == firstTake)
        #expect(try Data(contentsOf: URL(fileURLWithPath: domain + "/ZOOM0001-2.WAV")) == secondTake)
        #expect(try String(contentsOfFile: domain + "/ZOOM0001-2.txt", encoding: .utf8) == "second take\n")
        #expect(try String(contentsOfFile: domain + "/ZOOM0001.txt", encoding: .utf8) == "first take\n")

        // Only the failing items, and nothing waiting to be adapted: the failure is the run's result, and
        // no marker is left to start an adaptation with nothing new.
        try fm.removeItem(atPath: domain + "/.adapt-pending")
        let run3 = try ingest("f3")
        #expect(run3.wait(timeout: 30) == 1, "\(run3.stdout)\(run3.stderr)")
        #expect(run3.stderr.contains("could not move 2 complete items"), "\(run3.stderr)")
        #expect(!fm.fileExists(atPath: domain + "/.adapt-pending"))
    }

    /// A pair's transcript is claimed (renamed to .NAME.txt.ingesting) before its audio moves; a run
    /// killed with a claim outstanding must neither leave a transcript to label the next recording of
    /// that name, nor lose the item, nor take it twice.
    @Test("ingest finishes or undoes the claims a killed run left, and leaves what adapt could not use in the spool with the reason")
    func ingestRecoversClaimsAndLeavesUnusableItems() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let spool = scratch.path("spool"), domain = scratch.path("domain")
        let fm = FileManager.default
        try fm.createDirectory(atPath: spool, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: domain, withIntermediateDirectories: true)
        func put(_ path: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
        func wav(_ path: String, _ seconds: Double, value: Float = 0.01) throws {
            try AudioWriter.write([Float](repeating: value, count: Int(16000 * seconds)), sampleRate: 16000, to: path)
        }
        // moved: its audio went into the domain folder before the kill; only the claim is left.
        try wav(domain + "/moved.wav", 1); try put(domain + "/moved.txt", "moved\n")
        try put(spool + "/.moved.txt.ingesting", "moved\n")
        // claimed: killed before its audio moved: both come back and it is taken now.
        try wav(spool + "/claimed.wav", 1, value: 0.03)
        usleep(20_000)
        try put(spool + "/.claimed.txt.ingesting", "claimed\n")
        // copied: across file systems the copy was made, the spool's original not yet removed.
        try wav(spool + "/copied.wav", 1, value: 0.02); try fm.copyItem(atPath: spool + "/copied.wav", toPath: domain + "/copied.wav")
        try put(domain + "/copied.txt", "copied\n")
        usleep(20_000)
        try put(spool + "/.copied.txt.ingesting", "copied\n")
        // again: moved before the kill, and a new take of the same name arrived since: it waits for its
        // own transcript instead of getting the old one.
        try wav(domain + "/again.wav", 1); try put(domain + "/again.txt", "old words\n")
        try put(spool + "/.again.txt.ingesting", "old words\n")
        usleep(20_000)
        try wav(spool + "/again.wav", 1.2)
        // What adapt could not use stays, with the reason: digits, a recording far too short for its
        // text, one over adapt's minute; and a name that is not UTF-8 is reported.
        try wav(spool + "/digits.wav", 1); try put(spool + "/digits.txt", "call 911\n")
        try wav(spool + "/short.wav", 0.05); try put(spool + "/short.txt", "a much longer sentence than this audio\n")
        try wav(spool + "/long.wav", 61); try put(spool + "/long.txt", "long\n")
        // A recording the domain folder holds already (moved.wav, byte for byte) stays.
        try fm.copyItem(atPath: domain + "/moved.wav", toPath: spool + "/dup.wav"); try put(spool + "/dup.txt", "dup\n")
        // Two copies of one new recording dropped together: the first is taken, the second stays.
        try wav(spool + "/twin1.wav", 1.1, value: 0.05); try put(spool + "/twin1.txt", "twin\n")
        try fm.copyItem(atPath: spool + "/twin1.wav", toPath: spool + "/twin2.wav"); try put(spool + "/twin2.txt", "twin\n")
        // Two manifests naming one file: the second waits, unrewritten, instead of losing its line.
        try wav(spool + "/shared.wav", 1, value: 0.04)
        try put(spool + "/one.tsv", "shared.wav\tfour\n"); try put(spool + "/two.tsv", "shared.wav\tfive\n")
        let badName = [UInt8]("nam".utf8) + [0xE9] + [UInt8](".wav".utf8) + [0]   // Latin-1 é
        let created = badName.withUnsafeBufferPointer { name -> Int32 in
            let folder = open(spool, O_RDONLY | O_DIRECTORY)
            defer { close(folder) }
            return name.withMemoryRebound(to: CChar.self) { openat(folder, $0.baseAddress!, O_WRONLY | O_CREAT, 0o644) }
        }
        try #require(created >= 0)
        close(created)

        let run = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "0", "--wait", "0"], scratch: scratch, tag: "r")
        #expect(run.wait(timeout: 60) == 0, "\(run.stdout)\(run.stderr)")
        let left = Set(try fm.contentsOfDirectory(atPath: spool))
        #expect(left.isSuperset(of: ["again.wav", "digits.wav", "digits.txt", "short.wav", "short.txt", "long.wav", "long.txt"]), "\(left.sorted())")
        #expect(!left.contains { $0.hasSuffix(".ingesting") } && !left.contains("moved.txt") && !left.contains("again.txt")
                && !left.contains("copied.wav") && !left.contains("claimed.wav"), "\(left.sorted())")
        #expect(try String(contentsOfFile: domain + "/claimed.txt", encoding: .utf8) == "claimed\n")
        let audio = try fm.contentsOfDirectory(atPath: domain).filter { $0.hasSuffix(".wav") }.sorted()
        #expect(audio == ["again.wav", "claimed.wav", "copied.wav", "moved.wav", "shared.wav", "twin1.wav"], "\(audio)")
        #expect(try String(contentsOfFile: domain + "/shared.txt", encoding: .utf8) == "four\n")
        #expect(try String(contentsOfFile: spool + "/two.tsv", encoding: .utf8) == "shared.wav\tfive\n")
        #expect(left.isSuperset(of: ["dup.wav", "dup.txt", "two.tsv"]) && !left.contains("one.tsv"), "\(left.sorted())")
        for line in ["left  again.wav: no transcript (again.txt) yet", "left  digits.wav: transcript has characters the model cannot emit",
                     "left  short.wav: ", "left  long.wav: ", "is not valid UTF-8", "left  dup.wav: the same recording as \(domain)/",
                     "left  two.tsv: manifest line 1: \"shared.wav\" is also named by one.tsv", "left  twin2.wav: the same recording as twin1.wav, taken now",
                     "ingested 3 item(s)"] {
            #expect(run.stdout.contains(line), "missing \(line) in \(run.stdout)")
        }
    }

    @Test("ingest killed partway through a manifest: the next run takes the rest, every item once, and leaves nothing waiting")
    func ingestFinishesAManifestAfterAKill() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let spool = scratch.path("spool"), domain = scratch.path("domain")
        let fm = FileManager.default
        try fm.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let count = 300
        // Spelled out: ingest leaves what adapt could not use (digits included) in the spool.
        let digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        func text(_ i: Int) -> String { "item " + String(i).map { digits[Int(String($0))!] }.joined(separator: " ") }
        var manifest = ""
        for i in 0..<count {
            try AudioWriter.write(tone(count: 1600 * (10 + i % 7)), sampleRate: 16000, to: spool + "/m\(i).wav")
            manifest += "m\(i).wav\t\(text(i))\n"
        }
        try Data(manifest.utf8).write(to: URL(fileURLWithPath: spool + "/batch.tsv"))
        func ingest(_ tag: String) throws -> Child {
            try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "0", "--wait", "0"], scratch: scratch, tag: tag)
        }
        // Killed the moment its first item lands, with most of the manifest still to move.
        let first = try ingest("k1")
        let deadline = Date().addingTimeInterval(30)
        while !fm.fileExists(atPath: domain + "/m0.wav") && Date() < deadline { usleep(100) }
        first.signal(SIGKILL)
        _ = first.wait(timeout: 30)
        let takenBefore = try fm.contentsOfDirectory(atPath: domain).filter { $0.hasSuffix(".wav") }.count
        try #require(takenBefore > 0 && takenBefore < count, "the kill landed outside the moves (\(takenBefore) taken), so this run cannot test a resume")

        let second = try ingest("k2")
        #expect(second.wait(timeout: 60) == 0, "\(second.stdout)\(second.stderr)")
        #expect(!second.stdout.contains("waiting"), "\(second.stdout)")
        #expect(second.stdout.contains("ingested \(count - takenBefore) item(s)"), "\(second.stdout)")
        // The manifest, its journal and every audio file are gone from the spool; each item is in the
        // domain folder once, under its own name, with its own transcript.
        #expect(try fm.contentsOfDirectory(atPath: spool) == [])
        let expected = Set((0..<count).flatMap { ["m\($0).wav", "m\($0).txt"] } + [".adapt-pending", ".ingest.lock"])
        #expect(Set(try fm.contentsOfDirectory(atPath: domain)) == expected)
        for i in 0..<count {
            #expect(try String(contentsOfFile: domain + "/m\(i).txt", encoding: .utf8) == text(i) + "\n")
        }
    }

    @Test("ingest counts a manifest's file as taken only when its journal and the domain folder agree; it removes finished manifests, orphan journals and stale temporary files")
    func ingestReadsWhatAKilledRunLeft() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let spool = scratch.path("spool"), domain = scratch.path("domain")
        let fm = FileManager.default
        try fm.createDirectory(atPath: spool + "/sub", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: domain, withIntermediateDirectories: true)
        func put(_ path: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
        func taken(_ name: String, _ text: String) throws {
            try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: domain + "/" + name + ".wav")
            try put(domain + "/" + name + ".txt", text + "\n")
        }
        func ingest(_ tag: String) throws -> Child {
            try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "0", "--wait", "0"], scratch: scratch, tag: tag)
        }
        // A run killed after moving both items of done.tsv, before removing it.
        try put(spool + "/done.tsv", "a.wav\tfirst\nsub/b.wav\tsecond\n")
        try put(spool + "/done.ready", "")
        try put(spool + "/.done.tsv.taken", "a.wav\ta.wav\nsub/b.wav\tb.wav\n")
        try taken("a", "first"); try taken("b", "second")
        // A journal naming a file the domain folder holds with another transcript: an earlier manifest of
        // the same name took it, so this manifest's c.wav is still to come.
        try put(spool + "/again.tsv", "c.wav\tnew words\n")
        try put(spool + "/.again.tsv.taken", "c.wav\tc.wav\n")
        try taken("c", "old words")
        // A journal whose last line a kill cut inside a character: the whole lines before it still count.
        try put(spool + "/later.tsv", "d.wav\tfourth\ne.wav\tfifth\n")
        var cut = Array("d.wav\td.wav\ne.wav\te-caf".utf8) + [0xC3]
        try Data(cut).write(to: URL(fileURLWithPath: spool + "/.later.tsv.taken"))
        try taken("d", "fourth")
        // A journal without its manifest, and a killed write's temporary file in the domain folder.
        try put(spool + "/.gone.tsv.taken", "f.wav\tf.wav\n")
        try taken("f", "sixth")
        try put(domain + "/.g.txt.tmp-123-456", "half")
        try put(domain + "/.adapt-pending", "")

        let first = try ingest("j1")
        #expect(first.wait(timeout: 30) == 0, "\(first.stdout)\(first.stderr)")
        #expect(first.stdout.contains("done  done.tsv:"), "\(first.stdout)")
        #expect(first.stdout.contains("left  again.tsv: waiting for 1 audio file(s) it names: c.wav"), "\(first.stdout)")
        #expect(first.stdout.contains("left  later.tsv: waiting for 1 audio file(s) it names: e.wav"), "\(first.stdout)")
        #expect(Set(try fm.contentsOfDirectory(atPath: spool)) == ["sub", "again.tsv", ".again.tsv.taken", "later.tsv", ".later.tsv.taken"])
        #expect(!fm.fileExists(atPath: domain + "/.g.txt.tmp-123-456"))

        // The orphan journal is gone, so a new gone.tsv waits for its f.wav instead of counting it taken.
        try put(spool + "/gone.tsv", "f.wav\tsixth\n")
        // e.wav arrives, but its transcript cannot be written (a folder in the way, as a full disk would
        // fail it): its journal line, recorded before the move, starts on a line of its own after the cut.
        try fm.createDirectory(atPath: domain + "/e.txt", withIntermediateDirectories: true)
        try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: spool + "/e.wav")
        let second = try ingest("j2")
        #expect(second.wait(timeout: 30) == 0, "\(second.stdout)\(second.stderr)")
        #expect(second.stdout.contains("left  gone.tsv: waiting for 1 audio file(s) it names: f.wav"), "\(second.stdout)")
        #expect(second.stdout.contains("left  later.tsv: cannot write"), "\(second.stdout)")
        cut += Array("\ne.wav\te.wav\n".utf8)
        #expect(try Data(contentsOf: URL(fileURLWithPath: spool + "/.later.tsv.taken")) == Data(cut))
        // The failed move's line does not make e.wav count as taken: once the way is clear, it moves.
        try fm.removeItem(atPath: domain + "/e.txt")
        let third = try ingest("j3")
        #expect(third.wait(timeout: 30) == 0, "\(third.stdout)\(third.stderr)")
        #expect(try String(contentsOfFile: domain + "/e.txt", encoding: .utf8) == "fifth\n")
        #expect(!fm.fileExists(atPath: spool + "/later.tsv") && !fm.fileExists(atPath: spool + "/.later.tsv.taken"))
    }

    @Test("a hidden file a manifest names lands in the domain folder without its dot, where adapt sees it")
    func ingestUnhidesManifestItems() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let spool = scratch.path("spool"), domain = scratch.path("domain")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: spool + "/.take.wav")
        try Data(".take.wav\thidden take\n".utf8).write(to: URL(fileURLWithPath: spool + "/takes.tsv"))
        let run = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "0", "--wait", "0"], scratch: scratch, tag: "dot")
        #expect(run.wait(timeout: 30) == 0, "\(run.stdout)\(run.stderr)")
        #expect(try String(contentsOfFile: domain + "/take.txt", encoding: .utf8) == "hidden take\n")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: domain)) == ["take.wav", "take.txt", ".adapt-pending", ".ingest.lock"])
    }

    @Test("ingest copies across file systems (spool on disk, domain on tmpfs) and removes the spool's copy")
    func ingestAcrossFileSystems() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let fm = FileManager.default
        let spool = scratch.path("spool")
        let shm = "/dev/shm/earshot-ingest-\(UUID().uuidString)"
        defer { try? fm.removeItem(atPath: shm) }
        let domain = shm + "/domain"
        try fm.createDirectory(atPath: spool, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: shm, withIntermediateDirectories: true)
        var a = stat(), b = stat()
        try #require(stat(spool, &a) == 0 && stat(shm, &b) == 0 && a.st_dev != b.st_dev,
                     "/dev/shm is not a file system of its own here, so this test cannot cross one")
        try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: spool + "/far.wav")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: spool + "/far.wav"))
        try Data("far away".utf8).write(to: URL(fileURLWithPath: spool + "/far.txt"))
        let run = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "0", "--wait", "0"], scratch: scratch, tag: "xdev")
        #expect(run.wait(timeout: 30) == 0, "\(run.stdout)\(run.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: domain + "/far.wav")) == bytes)
        #expect(try String(contentsOfFile: domain + "/far.txt", encoding: .utf8) == "far away\n")
        #expect(try fm.contentsOfDirectory(atPath: spool).isEmpty)
        // No temporary file of the crash-safe writes (".NAME.tmp-...") is left behind.
        #expect(!(try fm.contentsOfDirectory(atPath: domain)).contains { $0.hasPrefix(".") && $0.contains(".tmp") })
    }

    @Test("ingest never follows a linked folder out of the spool, reports folders and stray files, and refuses a domain folder that is the spool or inside it")
    func ingestRefusesLinksFoldersAndOverlaps() throws {
        let scratch = try Scratch()
        let earshot = try builtExecutable("earshot")
        let spool = scratch.path("spool"), domain = scratch.path("domain"), outside = scratch.path("outside")
        let fm = FileManager.default
        for folder in [spool, outside, spool + "/batch", spool + "/real", spool + "/empty"] {
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        func put(_ path: String, _ text: String) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            try fm.setAttributes([.modificationDate: Date().addingTimeInterval(-60)], ofItemAtPath: path)
        }
        try put(outside + "/victim.wav", "RIFF-victim")
        try fm.createSymbolicLink(atPath: spool + "/link", withDestinationPath: outside)
        try put(spool + "/escape.tsv", "link/victim.wav\tsix\n")
        try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: spool + "/real/r.wav")
        try put(spool + "/inside.tsv", "real/r.wav\tare\n")
        try put(spool + "/batch/b.wav", "RIFF-b"); try put(spool + "/batch/b.txt", "bee")
        try put(spool + "/notes.pdf", "%PDF")
        // "./" spellings are one file: listed twice is refused, and its own pair does not move it again.
        try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: spool + "/x.wav")
        try put(spool + "/x.txt", "ex")
        try put(spool + "/twice.tsv", "x.wav\tex\n./x.wav\tex again\n")
        // An audio file that is itself a link, named by a manifest.
        try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: outside + "/far.wav")
        try fm.createSymbolicLink(atPath: spool + "/near.wav", withDestinationPath: outside + "/far.wav")
        try put(spool + "/linked.tsv", "near.wav\tnear\n")
        // NAME.TXT pairs as NAME.txt does.
        try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: spool + "/upper.wav")
        try put(spool + "/upper.TXT", "upper case")

        let run = try Child(earshot, ["ingest", "--spool", spool, "--domain", domain, "--settle", "0", "--wait", "0"], scratch: scratch, tag: "links")
        #expect(run.wait(timeout: 30) == 0, "\(run.stderr)")
        #expect(fm.fileExists(atPath: outside + "/victim.wav"), "a file outside the spool was moved: \(run.stdout)")
        #expect(fm.fileExists(atPath: domain + "/r.wav"), "a manifest naming a real subfolder's file: \(run.stdout)")
        // The refused manifest claims nothing: x.wav moves with its own transcript, once.
        #expect(fm.fileExists(atPath: outside + "/far.wav") && fm.fileExists(atPath: domain + "/x.wav"), "\(run.stdout)")
        #expect(try String(contentsOfFile: domain + "/upper.txt", encoding: .utf8) == "upper case\n", "\(run.stdout)")
        for line in ["left  escape.tsv: manifest \"link/victim.wav\" passes through link, a link or not a folder",
                     "left  batch: a folder", "left  notes.pdf: not audio", "left  twice.tsv: manifest line 2: \"./x.wav\" is listed twice",
                     "left  linked.tsv: manifest \"near.wav\" is a link or not a regular file"] {
            #expect(run.stdout.contains(line), "missing \(line) in \(run.stdout)")
        }
        // The emptied folder a manifest named, and an empty one, are not worth a line.
        #expect(!run.stdout.contains("left  real") && !run.stdout.contains("left  empty"), "\(run.stdout)")

        try fm.createSymbolicLink(atPath: scratch.path("alias"), withDestinationPath: spool)
        for (tag, target) in [("same", spool), ("nested", spool + "/real/domain"), ("through a link", scratch.path("alias"))] {
            let overlap = try Child(earshot, ["ingest", "--spool", spool, "--domain", target, "--settle", "0"], scratch: scratch, tag: tag)
            #expect(overlap.wait(timeout: 30) == 1, "\(tag): \(overlap.stdout)")
            #expect(overlap.stderr.contains("must be separate folders"), "\(tag): \(overlap.stderr)")
        }
        #expect(!fm.fileExists(atPath: spool + "/real/domain"), "a refused run created the domain folder")
    }

    @Test("the adaptation units pass systemd-analyze verify; the service runs at idle priority with bounded memory and its condition skips when nothing is new")
    func adaptationUnitsVerifyAndTheirConditionWorks() throws {
        let scratch = try Scratch()
        let analyze = try #require(findExecutable("systemd-analyze") ?? ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
            .first { FileManager.default.isExecutableFile(atPath: $0) },
            "systemd-analyze is missing: run scripts/setup.sh (Debian package systemd)")
        let earshot = try builtExecutable("earshot")
        let units = packageRoot().appendingPathComponent("systemd")
        let service = try String(contentsOf: units.appendingPathComponent("earshot-adapt.service"), encoding: .utf8)
        // verify checks that the binaries exist: point them at the one just built.
        try service.replacingOccurrences(of: "/usr/local/bin/earshot ", with: "\(earshot) ")
            .write(toFile: scratch.path("earshot-adapt.service"), atomically: true, encoding: .utf8)
        for name in ["earshot-adapt.path", "earshot-adapt.timer"] {
            try FileManager.default.copyItem(atPath: units.appendingPathComponent(name).path, toPath: scratch.path(name))
        }
        let verify = try Child(analyze, ["verify", scratch.path("earshot-adapt.service"), scratch.path("earshot-adapt.path"),
                                         scratch.path("earshot-adapt.timer")],
                               scratch: scratch, environment: ["SYSTEMD_LOG_LEVEL": "warning"])
        #expect(verify.wait(timeout: 60) == 0, "\(verify.stderr)")
        #expect(verify.stderr.isEmpty && verify.stdout.isEmpty, "\(verify.stdout)\(verify.stderr)")
        for directive in ["Type=oneshot", "Nice=19", "CPUSchedulingPolicy=idle", "IOSchedulingClass=idle", "CPUWeight=1\n",
                          "MemoryMax=", "MemoryHigh=", "OOMScoreAdjust=", "User=earshot",
                          "ExecStart=/usr/local/bin/earshot adapt --base /usr/share/earshot/models/earshot-base-en.safetensors --data /var/lib/earshot/domain --out /var/lib/earshot/models/adapted.safetensors",
                          "ExecStart=/usr/local/bin/earshot reload --socket /run/earshot/earshotd.sock"] {
            #expect(service.contains(directive), "earshot-adapt.service lacks \(directive)")
        }
        let path = try String(contentsOf: units.appendingPathComponent("earshot-adapt.path"), encoding: .utf8)
        #expect(path.contains("PathChanged=/var/lib/earshot/spool\n"))

        // The condition line as systemd runs it ($$ is a literal $), on folders of the test's own.
        let line = try #require(service.split(separator: "\n").first { $0.hasPrefix("ExecCondition=") })
        let spool = scratch.path("spool"), domain = scratch.path("domain")
        func condition(spool: String) throws -> Int32? {
            let command = String(line.dropFirst("ExecCondition=".count))
                .replacingOccurrences(of: "$$", with: "$")
                .replacingOccurrences(of: "/usr/local/bin/earshot ", with: "\(earshot) ")
                .replacingOccurrences(of: "/var/lib/earshot/spool", with: spool)
                .replacingOccurrences(of: "/var/lib/earshot/domain", with: domain)
            let child = try Child("/bin/sh", ["-c", command], scratch: scratch)
            return child.wait(timeout: 60)
        }
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        func drop(_ name: String) throws {
            try AudioWriter.write(tone(count: 16000), sampleRate: 16000, to: spool + "/\(name).wav")
            try Data("ex".utf8).write(to: URL(fileURLWithPath: spool + "/\(name).txt"))
            try Data().write(to: URL(fileURLWithPath: spool + "/\(name).ready"))
        }
        // One recording cannot spare one for validation, so adapt would refuse it on every retry: the
        // condition waits (skip, not failed), and the pending mark stays for the next arrival.
        try drop("x")
        #expect(try condition(spool: spool) == 1)
        #expect(FileManager.default.fileExists(atPath: domain + "/x.wav"))
        #expect(FileManager.default.fileExists(atPath: domain + "/.adapt-pending"))
        #expect(try condition(spool: spool) == 1)                       // the hourly retry: still waiting
        try drop("y")
        #expect(try condition(spool: spool) == 0)                       // two: adapt
        #expect(FileManager.default.fileExists(atPath: domain + "/y.wav"))
        try FileManager.default.removeItem(atPath: domain + "/.adapt-pending")   // what the unit does after adapting
        #expect(try condition(spool: spool) == 1)                       // nothing new: skip, not failed
        #expect(try condition(spool: scratch.path("absent")) == 255)    // an error: the unit fails
    }
}
