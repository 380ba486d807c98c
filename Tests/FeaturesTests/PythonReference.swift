import Foundation
import Testing
import Tensors

/// Runs the independent NumPy/SciPy/librosa references through the test-only virtualenv and moves
/// arrays to and from it as raw little-endian files (float32 in, float64 out so the reference keeps
/// its precision).
enum PythonReference {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The package root, three levels above this file (Tests/FeaturesTests/PythonReference.swift).
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// EARSHOT_TEST_PYTHON if set, else `<package root>/.venv/bin/python`; a missing interpreter is a
    /// test failure, never a skip.
    static func interpreter() throws -> String {
        let path: String
        if let env = ProcessInfo.processInfo.environment["EARSHOT_TEST_PYTHON"], !env.isEmpty {
            path = env
        } else {
            path = packageRoot.appendingPathComponent(".venv/bin/python").path
        }
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failure(description: "no Python reference interpreter at \(path): run scripts/setup.sh (it creates .venv with numpy, scipy and librosa) or set EARSHOT_TEST_PYTHON")
        }
        return path
    }

    /// Runs `script` (passed with `-c`) with `arguments`; returns its stdout, or throws with its stderr.
    @discardableResult
    static func run(_ script: String, arguments: [String]) throws -> String {
        let python = try interpreter()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let errURL = dir.appendingPathComponent("stderr.txt")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let errHandle = try FileHandle(forWritingTo: errURL)
        let outPipe = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script] + arguments
        process.standardOutput = outPipe
        process.standardError = errHandle
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        process.environment = environment
        try process.run()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try errHandle.close()
        guard process.terminationStatus == 0 else {
            let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
            throw Failure(description: "Python reference (\(python)) exited with \(process.terminationStatus): \(err.suffix(3000))")
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("earshot-features-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func writeFloat32(_ values: [Float], to url: URL) throws {
        let data = values.withUnsafeBufferPointer { Data(buffer: $0) }
        try data.write(to: url)
    }

    static func readFloat64(_ url: URL) throws -> [Double] {
        let data = try Data(contentsOf: url)
        return data.withUnsafeBytes { raw in
            (0..<(data.count / 8)).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
        }
    }
}

/// A deterministic generator for test signals and chunk sizes (the shared SplitMix64), so every run is the same.
struct TestRandom {
    private var generator: SplitMix64
    init(seed: UInt64) { generator = SplitMix64(seed: seed) }
    mutating func next() -> UInt64 { generator.next() }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
}

/// A speech-like test signal: 50 ms of digital silence, then voiced harmonics with vibrato, a chirp and
/// white noise under a slow amplitude envelope, so every mel bin carries energy well above float32
/// rounding except in the silence.
func testSignal(seconds: Double, sampleRate: Int = 16000, seed: UInt64 = 1) -> [Float] {
    var random = TestRandom(seed: seed)
    let n = Int(seconds * Double(sampleRate))
    let silence = sampleRate / 20
    var phase = 0.0
    return (0..<n).map { i in
        if i < silence { return 0 }
        let t = Double(i) / Double(sampleRate)
        let f0 = 140 + 30 * sin(2 * Double.pi * 3 * t)
        phase += 2 * Double.pi * f0 / Double(sampleRate)
        var voiced = 0.0
        for h in 1...12 { voiced += sin(Double(h) * phase) / Double(h) }
        let chirp = 0.1 * sin(2 * Double.pi * (200 * t + 900 * t * t))
        let noise = 0.02 * (random.unit() * 2 - 1)
        let envelope = 0.3 + 0.25 * sin(2 * Double.pi * 0.7 * t)
        return Float(envelope * (0.3 * voiced + chirp) + noise)
    }
}
