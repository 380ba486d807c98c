import Audio
import Foundation
import Testing

/// A fresh folder under the system temporary directory, removed when `body` returns or throws.
func withTemporaryDirectory<T>(_ label: String = #function, _ body: (URL) throws -> T) throws -> T {
    let name = "earshot-recognizer-" + label.prefix(while: { $0.isLetter || $0.isNumber }) + "-" + UUID().uuidString
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(name, isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try body(dir)
}

/// The first executable called `name` on PATH.
func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// espeak-ng, or a test failure saying how to get it (never a silent skip).
func espeakPath() throws -> String {
    guard let path = findExecutable("espeak-ng") else {
        Issue.record("espeak-ng is not installed; run scripts/setup.sh (Debian package espeak-ng)")
        throw CancellationError()
    }
    return path
}

/// One spoken rendering of a text: espeak-ng voice, speed (words per minute), pitch (0-99).
struct Rendering: Sendable, Hashable {
    var text: String
    var voice: String
    var speed: Int
    var pitch: Int = 50

    var fileName: String { "\(text.replacingOccurrences(of: " ", with: "_"))-\(voice)-s\(speed)-p\(pitch).wav" }
}

/// Synthesises each rendering into `directory` (espeak-ng's 22.05 kHz WAV) and returns the files in order.
func synthesize(_ renderings: [Rendering], into directory: URL) throws -> [URL] {
    let espeak = try espeakPath()
    return try renderings.map { r in
        let url = directory.appendingPathComponent(r.fileName)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: espeak)
        process.arguments = ["-v", r.voice, "-s", "\(r.speed)", "-p", "\(r.pitch)", "-w", url.path, r.text]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "espeak-ng failed for \(r)")
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

    /// A standard normal draw (Box-Muller).
    mutating func gaussian() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self), u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
