import Decoding
import Foundation
import Testing

/// A fresh folder under the system temporary directory, removed when `body` returns or throws, so a
/// test leaves nothing behind whatever its outcome.
func withTemporaryDirectory<T>(_ label: String = #function, _ body: (URL) throws -> T) throws -> T {
    let name = "earshot-e2e-" + label.prefix(while: { $0.isLetter || $0.isNumber }) + "-" + UUID().uuidString
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(name, isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try body(dir)
}

/// The package root, found from this file's path (Tests/EndToEndTests/Support.swift).
func packageRoot(filePath: String = #filePath) -> URL {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// What a finished subprocess left: exit status and both output streams.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var stderrLines: [Substring] { stderr.split(separator: "\n") }
}

/// Runs `executable` with `arguments` in `directory`. Output goes to files in `scratch` rather than
/// pipes, so a child that fills one stream while we wait on the other cannot deadlock.
func runProcess(_ executable: String, _ arguments: [String], scratch: URL,
                directory: URL? = nil, environment overrides: [String: String] = [:]) throws -> ProcessResult {
    let tag = UUID().uuidString
    let outURL = scratch.appendingPathComponent(".stdout-\(tag)"), errURL = scratch.appendingPathComponent(".stderr-\(tag)")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    var environment = ProcessInfo.processInfo.environment
    environment["EARSHOT_MODEL"] = nil  // every test names its model; a user's default must not leak in
    environment.merge(overrides) { $1 }
    process.environment = environment
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = out
    process.standardError = err
    try process.run()
    process.waitUntilExit()
    try out.close(); try err.close()
    return ProcessResult(status: process.terminationStatus,
                         stdout: try String(contentsOf: outURL, encoding: .utf8),
                         stderr: try String(contentsOf: errURL, encoding: .utf8))
}

/// The first executable called `name` on PATH or in `extra`.
func findExecutable(_ name: String, extra: [String] = []) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    let candidates = path.split(separator: ":").map { "\($0)/\(name)" } + extra
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// espeak-ng, or a test failure saying how to get it (never a silent skip).
func espeakPath() throws -> String {
    guard let path = findExecutable("espeak-ng") else {
        Issue.record("espeak-ng is not installed; run scripts/setup.sh (Debian package espeak-ng)")
        throw CancellationError()
    }
    return path
}

/// One spoken rendering of a text: which voice, speed (words per minute) and pitch (0-99) espeak-ng used.
struct Rendering: Sendable, Hashable {
    var text: String
    var voice: String
    var speed: Int
    var pitch: Int = 50

    /// What espeak-ng is asked to say: a comma between words, so phrases have audible pauses
    /// (where a CTC model learns to put the word separator).
    var spoken: String { text.replacingOccurrences(of: " ", with: ", ") }

    var fileName: String {
        "\(text.replacingOccurrences(of: " ", with: "_"))-\(voice)-s\(speed)-p\(pitch).wav"
    }
}

/// Synthesises each rendering into `directory` (22.05 kHz 16-bit WAV, espeak-ng's native output, so
/// the readers' resampling to 16 kHz is part of every test) and returns the file URLs in order.
@discardableResult
func synthesize(_ renderings: [Rendering], into directory: URL) throws -> [URL] {
    let espeak = try espeakPath()
    return try renderings.map { r in
        let url = directory.appendingPathComponent(r.fileName)
        let result = try runProcess(espeak, ["-v", r.voice, "-s", "\(r.speed)", "-p", "\(r.pitch)", "-w", url.path, r.spoken],
                                    scratch: directory)
        try #require(result.status == 0, "espeak-ng failed for \(r): \(result.stderr)")
        return url
    }
}

/// Writes an Earshot manifest (path relative to the manifest's folder, TAB, text).
func writeManifest(_ entries: [(file: URL, text: String)], to url: URL) throws {
    let base = url.deletingLastPathComponent().standardizedFileURL.path + "/"
    let lines = entries.map { e -> String in
        let path = e.file.standardizedFileURL.path
        return (path.hasPrefix(base) ? String(path.dropFirst(base.count)) : path) + "\t" + e.text + "\n"
    }
    try Data(lines.joined().utf8).write(to: url)
}

/// The built `earshot` executable: next to the test bundle (the products folder is the bundle's
/// parent), else in the package's .build/debug. A missing binary fails the test with what to run.
func earshotExecutable() throws -> String {
    var folders: [URL] = []
    for url in [Bundle.main.executableURL] + Bundle.allBundles.map(\.bundleURL) {
        guard let url else { continue }
        let parts = url.pathComponents
        if let i = parts.firstIndex(where: { $0.hasSuffix(".xctest") }) {
            folders.append(URL(fileURLWithPath: NSString.path(withComponents: Array(parts[..<i]))))
        } else {
            folders.append(url.deletingLastPathComponent())
        }
    }
    folders.append(packageRoot().appendingPathComponent(".build/debug"))
    let candidates = folders.map { $0.appendingPathComponent("earshot").path }
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        Issue.record("the earshot executable was not found (looked for \(candidates)); build it with `swift build --build-tests` (or `swift build --product earshot`) before running the tests")
        throw CancellationError()
    }
    return found
}

/// NIST sclite (Debian package sctk), or a test failure saying how to get it.
func sclitePath() throws -> String {
    guard let path = findExecutable("sclite", extra: ["/usr/lib/sctk/bin/sclite", "/usr/local/bin/sclite"]) else {
        Issue.record("sclite (Debian package sctk) not found: run scripts/setup.sh")
        throw CancellationError()
    }
    return path
}

/// splitmix64: a small seeded generator so random choices in tests are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Streaming and offline recognition (and the CLI, which runs OpenBLAS on one thread, and the library
/// in a test process, which may use more) compute the same float32 logits with differently blocked
/// matrix products, so they agree to rounding, not bit for bit: Model's streaming contract is 1e-4
/// per logit (measured here: at most 1e-5 on logits up to 22). A word's confidence is
/// exp(mean log peak posterior), and a log posterior moves by at most twice the largest logit change,
/// so confidences agree within 2e-4. Text and word times (whole frames) must be identical.
let confidenceTolerance = 2e-4

/// Whether two transcripts are the same up to `confidenceTolerance`, and if not, why.
func transcriptMismatch(_ a: Transcript, _ b: Transcript) -> String? {
    guard a.text == b.text else { return "text '\(a.text)' != '\(b.text)'" }
    guard a.words.count == b.words.count else { return "\(a.words.count) words != \(b.words.count)" }
    for (x, y) in zip(a.words, b.words) {
        if x.text != y.text || x.start != y.start || x.end != y.end { return "word \(x) != \(y)" }
        if abs(x.confidence - y.confidence) > confidenceTolerance { return "confidence of \(x) != \(y)" }
    }
    return nil
}

/// One lock for every in-process training of the test process. Training changes OpenBLAS's
/// process-wide thread count around each batch (Training's BatchGradients), and results depend on
/// that count in the last bits, so two overlapping trainings could perturb each other; the exact
/// resume check needs its runs undisturbed.
let trainingLock = NSLock()
