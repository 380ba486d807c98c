import Foundation
import Testing

/// A failure a test helper throws, with what went wrong in words.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The first executable called `name` on PATH or in `extra`.
public func findExecutable(_ name: String, extra: [String] = []) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    let candidates = path.split(separator: ":").map { "\($0)/\(name)" } + extra
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// espeak-ng, or a test failure saying how to get it (never a silent skip).
public func espeakPath() throws -> String {
    guard let path = findExecutable("espeak-ng") else {
        Issue.record("espeak-ng is not installed; run scripts/setup.sh (Debian package espeak-ng)")
        throw CancellationError()
    }
    return path
}

/// NIST sclite (Debian package sctk), or a test failure saying how to get it.
public func sclitePath() throws -> String {
    guard let path = findExecutable("sclite", extra: ["/usr/lib/sctk/bin/sclite", "/usr/local/bin/sclite"]) else {
        Issue.record("sclite (Debian package sctk) not found: run scripts/setup.sh")
        throw CancellationError()
    }
    return path
}

/// A built executable of this package (`earshot`, `earshotd`): next to the test bundle (the products
/// folder is the bundle's parent), else in the package's .build/debug. A missing binary fails the test
/// with what to run.
public func builtExecutable(_ name: String) throws -> String {
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
    let candidates = folders.map { $0.appendingPathComponent(name).path }
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        Issue.record("the \(name) executable was not found (looked for \(candidates)); build it with `swift build --build-tests` (or `swift build --product \(name)`) before running the tests")
        throw CancellationError()
    }
    return found
}

/// The built `earshot` CLI (see `builtExecutable`).
public func earshotExecutable() throws -> String { try builtExecutable("earshot") }

/// What a finished subprocess left: exit status and both output streams.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var stderrLines: [Substring] { stderr.split(separator: "\n") }
}

/// Runs `executable` with `arguments` in `directory`, stdin from /dev/null and EARSHOT_MODEL unset (every
/// test names its model; a user's default must not leak in). Output goes to files in `scratch` rather
/// than pipes, so a child that fills one stream while we wait on the other cannot deadlock.
public func runProcess(_ executable: String, _ arguments: [String], scratch: URL,
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
    environment["EARSHOT_MODEL"] = nil
    // No general LM unless a test gives one: transcribe would otherwise pick up the machine's
    // (scripts/setup.sh compiles it into ~/.cache/earshot/lm).
    environment["EARSHOT_LM"] = ""
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

/// Runs `body` on another thread and returns its result; if it has not returned within 5 s (an open
/// of the FIFO at `path` waiting for a writer) records an issue, then opens the FIFO for writing to
/// release it, so a regression fails the test instead of hanging the run.
public func returnsPromptly<T: Sendable>(unblocking path: String, _ body: @escaping @Sendable () -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Thread { box.value = body(); done.signal() }.start()
    if done.wait(timeout: .now() + 5) == .timedOut {
        Issue.record("reading a FIFO blocked waiting for a writer")
        let fd = open(path, O_WRONLY)
        if fd >= 0 { close(fd) }
        done.wait()
    }
    return try #require(box.value)
}

/// Carries a worker thread's result; written once before the semaphore is signalled, read after.
public final class ResultBox<T>: @unchecked Sendable {
    public var value: T?
    public init() {}
}
