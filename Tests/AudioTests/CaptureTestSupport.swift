import Foundation
import Testing
import TestSupport
@testable import Audio

/// A raw audio file behind ALSA's `file` PCM plugin: the plugin reads `input.raw` as the captured audio
/// (in whatever format, rate and channel count the capture asks for, since its `null` slave accepts any)
/// and `/dev/null` receives its copy. Real libasound, no sound card. The PCM is defined in a private
/// asoundrc loaded through `CaptureConfiguration.alsaConfigFile`, so the process environment is untouched.
struct FileBackedPCM {
    static let name = "earshot_test"
    let directory: TemporaryDirectory
    let configFile: String
    let inputPath: String

    init(directory: TemporaryDirectory, inputName: String = "input.raw") throws {
        self.directory = directory
        inputPath = directory.file(inputName)
        configFile = directory.file("asoundrc")
        try fileBackedPCMConfiguration(name: Self.name, infile: inputPath).write(toFile: configFile, atomically: true, encoding: .utf8)
    }

    /// Writes `frames` (interleaved, values in [-1, 1]) as the plugin's input in `format`. Atomically, so a
    /// capture retrying its open meanwhile finds either no file or the whole of it.
    func writeInput(_ interleaved: [Float], format: CaptureSampleFormat) throws {
        try encode(interleaved, as: format).write(to: URL(fileURLWithPath: inputPath), options: .atomic)
    }
}

/// Little-endian raw bytes, scaled as the capture loop unscales them (2^15 and 2^31 full scale).
func encode(_ samples: [Float], as format: CaptureSampleFormat) -> Data {
    var data = Data(capacity: samples.count * format.bytesPerSample)
    for sample in samples {
        switch format {
        case .s16LE:
            let value = Int16(clamping: Int((Double(sample) * 32768).rounded()))
            withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
        case .s32LE:
            let value = Int32(clamping: Int64((Double(sample) * 2_147_483_648).rounded()))
            withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
        case .float32LE:
            withUnsafeBytes(of: sample.bitPattern.littleEndian) { data.append(contentsOf: $0) }
        }
    }
    return data
}

/// What the device hands the loop after format conversion: the encoded values decoded back, in Double.
func decodedMono(_ interleaved: [Float], channels: Int, format: CaptureSampleFormat) -> [Float] {
    let data = encode(interleaved, as: format)
    let values: [Double] = data.withUnsafeBytes { bytes in
        switch format {
        case .s16LE: return bytes.bindMemory(to: Int16.self).map { Double(Int16(littleEndian: $0)) / 32768 }
        case .s32LE: return bytes.bindMemory(to: Int32.self).map { Double(Int32(littleEndian: $0)) / 2_147_483_648 }
        case .float32LE: return bytes.bindMemory(to: UInt32.self).map { Double(Float(bitPattern: UInt32(littleEndian: $0))) }
        }
    }
    return stride(from: 0, to: values.count, by: channels).map { start in
        Float(values[start..<(start + channels)].reduce(0, +) / Double(channels))
    }
}

/// Polls `capture.status` until `predicate` holds; fails the test (and returns the last status) after
/// `timeout`. Polling, not sleeping a fixed time, keeps the tests fast when the machine is idle and
/// correct when it is loaded.
@discardableResult
func waitForStatus(
    _ capture: AudioCapture, timeout: Duration = .seconds(5), sourceLocation: SourceLocation = #_sourceLocation,
    _ predicate: (CaptureStatus) -> Bool
) -> CaptureStatus {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var status = capture.status
    while !predicate(status) {
        if clock.now >= deadline {
            Issue.record("status never reached the expected condition; last: \(status)", sourceLocation: sourceLocation)
            return status
        }
        Thread.sleep(forTimeInterval: 0.002)
        status = capture.status
    }
    return status
}

/// Reads until the capture has stopped and its buffer is drained.
func readToEnd(_ capture: AudioCapture, timeout: Duration = .seconds(5)) -> [Float] {
    var samples: [Float] = []
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        guard let chunk = capture.nextChunk(maxSamples: 4096, timeout: .milliseconds(100)) else { break }
        samples += chunk
    }
    return samples
}

extension CaptureState {
    var isRetrying: Bool {
        if case .retrying = self { return true }
        return false
    }

    var retryReason: CaptureError? {
        if case .retrying(let reason, _, _) = self { return reason }
        return nil
    }

    var retryAttempt: Int {
        if case .retrying(_, let attempt, _) = self { return attempt }
        return 0
    }
}
