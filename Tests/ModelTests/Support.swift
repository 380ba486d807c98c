import Foundation
import Testing
import Tensors
@testable import Model

/// The shared seeded generator, so a failing random case reproduces exactly.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale, using: &self) } }
    mutating func matrix(_ rows: Int, _ cols: Int, scale: Float = 1) -> Matrix { Matrix(rows: rows, cols: cols, data: floats(rows * cols, scale: scale)) }
}

/// Random parameters for every tensor the architecture needs, weights scaled by 1/sqrt(fan-in) so
/// activations stay O(1) through deep stacks (then float32 rounding stays far below test tolerances).
func randomParameters(_ arch: EncoderArchitecture, rng: inout SeededRandom) -> [String: Tensor] {
    var p: [String: Tensor] = [:]
    for (name, shape) in arch.parameterShapes {
        let n = shape.reduce(1, *)
        let fanIn = shape.count > 1 ? shape.dropFirst().reduce(1, *) : 1
        let scale: Float = name.hasSuffix(".weight") && shape.count > 1 ? 1 / Float(fanIn).squareRoot() : 0.5
        var values = rng.floats(n, scale: scale)
        // Layernorm gains near 1, as after initialisation and training.
        if shape.count == 1 && name.hasSuffix(".weight") { values = values.map { 1 + $0 } }
        p[name] = Tensor(shape: shape, data: values)
    }
    return p
}

/// A fresh temporary directory, removed by `cleanup()`.
struct TempDir {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-model-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { "\(path)/\(name)" }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

func writeFloats(_ values: [Float], to path: String) throws {
    try values.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: path))
}

func readFloats(_ path: String) throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

/// The test-only Python (NumPy) reference interpreter.
enum Python {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var interpreter: String {
        ProcessInfo.processInfo.environment["EARSHOT_TEST_PYTHON"] ?? packageRoot.appendingPathComponent(".venv/bin/python").path
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Runs `script` with `args`; returns stdout. A missing interpreter is a failure saying how to fix it.
    static func run(_ script: String, _ args: [String] = []) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: interpreter) else {
            throw Failure(description: "NumPy reference interpreter \(interpreter) not found: run scripts/setup.sh (or set EARSHOT_TEST_PYTHON)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: interpreter)
        p.arguments = ["-c", script] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw Failure(description: "reference script failed (\(p.terminationStatus)): \(String(decoding: stderr, as: UTF8.self))")
        }
        return String(decoding: stdout, as: UTF8.self)
    }
}

/// The `ModelError` `body` throws, or nil (any other error is recorded as a test failure).
func modelError(_ body: () throws -> Void) -> ModelError? {
    do { try body(); return nil } catch let error as ModelError { return error } catch {
        Issue.record("expected a ModelError, got \(error)")
        return nil
    }
}
