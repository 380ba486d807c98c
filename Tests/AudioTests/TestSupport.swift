import Foundation
import Testing
import TestSupport

/// A fresh directory under the system temp dir, removed when the value is released.
final class TemporaryDirectory {
    let path: String

    init() throws {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("earshot-audio-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        path = url.path
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A sum of sines, the exact continuous-time reference a correct resampler must reproduce.
struct Tones {
    var components: [(frequency: Double, amplitude: Double)]

    /// Value at time `t` seconds; phases computed in Double with the cycle count reduced first, so the
    /// reference itself is accurate to ~1e-15 rather than float's ~1e-3 at large phases.
    func value(at t: Double) -> Double {
        components.reduce(0) { sum, tone in
            let cycles = tone.frequency * t
            return sum + tone.amplitude * sin(2 * Double.pi * (cycles - cycles.rounded(.down)))
        }
    }

    func samples(rate: Int, count: Int) -> [Float] {
        (0..<count).map { Float(value(at: Double($0) / Double(rate))) }
    }
}

/// Largest |actual[i] - reference(i / rate)| over `range`.
func maxError(_ actual: [Float], rate: Int, against tones: Tones, over range: Range<Int>) -> Double {
    range.reduce(0) { worst, i in
        max(worst, abs(Double(actual[i]) - tones.value(at: Double(i) / Double(rate))))
    }
}

/// Least-squares amplitude of a sinusoid at `frequency` in `signal[range]` (phase-free: projects on sin and
/// cos). Over a whole number of periods of every tone present, other tones contribute nothing.
func amplitude(of frequency: Double, in signal: [Float], rate: Int, over range: Range<Int>) -> Double {
    var s = 0.0, c = 0.0
    for i in range {
        let phase = 2 * Double.pi * frequency * Double(i) / Double(rate)
        s += Double(signal[i]) * sin(phase)
        c += Double(signal[i]) * cos(phase)
    }
    return 2 * (s * s + c * c).squareRoot() / Double(range.count)
}

func rms(_ signal: [Float], over range: Range<Int>) -> Double {
    (range.reduce(0.0) { $0 + Double(signal[$1]) * Double(signal[$1]) } / Double(range.count)).squareRoot()
}

/// Runs `script` with the test-only Python (numpy/scipy); `inputs` are passed as raw float32 files whose
/// paths are argv[1...], and the script writes raw float32 to the path in env OUT. Fails the test (never
/// skips) when the interpreter is missing.
func runPythonReference(_ script: String, inputs: [[Float]], in directory: TemporaryDirectory) throws -> [Float] {
    let python = ProcessInfo.processInfo.environment["EARSHOT_TEST_PYTHON"]
        ?? packageRoot().appendingPathComponent(".venv/bin/python").path
    try #require(FileManager.default.isExecutableFile(atPath: python),
                 "test Python not found at \(python): run scripts/setup.sh (or set EARSHOT_TEST_PYTHON)")
    var arguments = ["-c", script]
    for (index, input) in inputs.enumerated() {
        let path = directory.file("py-input-\(index).f32")
        try input.withUnsafeBufferPointer { try Data(buffer: $0).write(to: URL(fileURLWithPath: path)) }
        arguments.append(path)
    }
    let outputPath = directory.file("py-output.f32")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(["OUT": outputPath]) { $1 }
    let stderr = Pipe()
    process.standardError = stderr
    try process.run()
    // Drain stderr before waiting, so a chatty failure cannot fill the pipe and deadlock.
    let message = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    try #require(process.terminationStatus == 0, "Python reference failed: \(message)")
    let data = try Data(contentsOf: URL(fileURLWithPath: outputPath))
    return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}
