import Audio
import Foundation
import Testing
import TestSupport

/// `AudioStreamReader` over a real pipe: what `earshot stream -` decodes while a recorder is still
/// writing. The reference is `AudioFile.read` of the same bytes as a file on disk.
@Suite struct AudioStreamReaderTests {
    func tone(frames: Int) -> [Float] { (0..<frames).map { Float(sin(Double($0) * 0.05)) * 0.5 } }

    /// Bytes of a 16-bit WAV whose data and RIFF sizes are replaced by sox's "length unknown" placeholder,
    /// as `sox -d -t wav -` writes to a pipe.
    func streamingWAV(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        let data = Array("data".utf8)
        let at = (12..<(out.count - 8)).first { Array(out[$0..<($0 + 4)]) == data }!
        for (offset, value) in [(4, UInt32(0x7FFF_F024)), (at + 4, UInt32(0x7FFF_F000))] {
            for k in 0..<4 { out[offset + k] = UInt8((value >> (8 * UInt32(k))) & 0xFF) }
        }
        return out
    }

    /// Decodes `bytes` written into a pipe by another thread in pieces of `piece` bytes, `pause` apart;
    /// returns the samples, or the error, and how many samples had come out before the writer was half
    /// way through.
    func decodePiped(_ bytes: [UInt8], piece: Int = 4096, pause: useconds_t = 0, rate: Int = 16000)
        -> (samples: [Float], error: AudioError?, beforeHalfWritten: Int) {
        var ends: [Int32] = [0, 0]
        precondition(pipe(&ends) == 0)
        let half = Flag(), done = Flag(), writeEnd = ends[1]
        let writer = Thread {
            var offset = 0
            while offset < bytes.count {
                let n = min(piece, bytes.count - offset)
                let w = bytes.withUnsafeBytes { write(writeEnd, $0.baseAddress! + offset, n) }
                precondition(w > 0)
                offset += w
                if offset >= bytes.count / 2 { half.set() }
                if pause > 0 { usleep(pause) }
            }
            done.set()
            close(writeEnd)
        }
        writer.start()
        defer {
            // The caller's descriptor is the caller's: closed twice, its number could by then belong to
            // a file another thread opened (libsndfile closes what it is given when it cannot open it).
            #expect(fcntl(ends[0], F_GETFD) >= 0, "the reader closed the caller's descriptor")
            close(ends[0])
        }
        var samples: [Float] = []
        var early = 0
        do {
            let reader = try AudioStreamReader(descriptor: ends[0], name: "-", targetSampleRate: rate)
            while try reader.read(appendingTo: &samples) {
                if !half.isSet { early = samples.count }
            }
            return (samples, nil, early)
        } catch {
            while !done.isSet { usleep(1000) }
            return (samples, error, early)
        }
    }

    @Test("a WAV with a streaming writer's length placeholder decodes from a pipe as it arrives, as the file would")
    func placeholderWAVFromAPipe() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("tone.wav")
        try AudioWriter.write(tone(frames: 24000), sampleRate: 16000, to: path, format: .wav16)
        let reference = try AudioFile.read(path: path)
        let bytes = streamingWAV(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        // 0.1 s of audio every 20 ms: the writer is still busy while the first samples come out.
        let piped = decodePiped(bytes, piece: 3200, pause: 20_000)
        #expect(piped.error == nil, "\(String(describing: piped.error))")
        #expect(piped.samples == reference.samples)
        #expect(piped.beforeHalfWritten > 0, "nothing decoded before the writer was half way")
        // Resampled on the way (8 kHz out), equally.
        let reference8k = try AudioFile.read(path: path, targetSampleRate: 8000)
        #expect(decodePiped(bytes, rate: 8000).samples == reference8k.samples)
    }

    @Test("a pipe that ends before its WAV header's exact length is reported truncated, at its end")
    func truncatedPipe() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("tone.wav")
        try AudioWriter.write(tone(frames: 16000), sampleRate: 16000, to: path, format: .wav16)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        // Whole, the exact header is honoured.
        #expect(decodePiped(bytes).samples == (try AudioFile.read(path: path)).samples)
        // The first half (16 000 frames declared, about 7 978 present).
        let half = decodePiped(Array(bytes[0..<16000]))
        guard case .truncated(let name, let declared, let available)? = half.error else {
            Issue.record("expected truncated, got \(String(describing: half.error))"); return
        }
        #expect(name == "-" && declared == 16000 && available == Int64((16000 - 44) / 2))
        #expect(half.error?.description.contains("'-'") == true)
    }

    @Test("a pipe with a header and no audio is empty, and the message says it is a stream")
    func emptyPipe() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("tone.wav")
        try AudioWriter.write(tone(frames: 100), sampleRate: 16000, to: path, format: .wav16)
        let header = Array(streamingWAV(Array(try Data(contentsOf: URL(fileURLWithPath: path))))[0..<44])
        let piped = decodePiped(header)
        #expect(piped.error == .empty(path: "-", byteCount: -1))
        #expect(piped.error?.description == "cannot read '-': the stream ended before any audio frames")
        // Not audio at all: refused at once, by name.
        let text = decodePiped(Array("hello, this is not audio at all\n".utf8))
        guard case .unsupportedFormat(let name, _)? = text.error else {
            Issue.record("expected unsupportedFormat, got \(String(describing: text.error))"); return
        }
        #expect(name == "-")
    }
}

/// Set once, read from another thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
