import Foundation
import Testing

/// Runs `script` under the test virtualenv's Python with `input` as JSON on stdin and decodes its JSON stdout.
/// Fails the test (never skips) when the interpreter is missing.
func runPythonReference<Input: Encodable, Output: Decodable>(_ script: String, input: Input, as: Output.Type,
                                                              filePath: String = #filePath) throws -> Output {
    let root = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let python = ProcessInfo.processInfo.environment["EARSHOT_TEST_PYTHON"] ?? root.appendingPathComponent(".venv/bin/python").path
    guard FileManager.default.isExecutableFile(atPath: python) else {
        Issue.record("the Python reference interpreter \(python) is missing; run scripts/setup.sh to create the test virtualenv")
        throw CancellationError()
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = ["-c", script]
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin; process.standardOutput = stdout; process.standardError = stderr
    try process.run()
    stdin.fileHandleForWriting.write(try JSONEncoder().encode(input))
    try stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    let err = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try #require(process.terminationStatus == 0, "reference script failed: \(String(decoding: err, as: UTF8.self))")
    return try JSONDecoder().decode(Output.self, from: out)
}
