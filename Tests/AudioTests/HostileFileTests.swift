import Audio
import Foundation
import Testing
import TestSupport

/// Files that are not what they claim: special files, non-finite samples, headers promising far more
/// than the file holds. Each must give an `AudioError` naming the file, promptly and without a trap.
@Suite struct HostileFileTests {
    @Test(.timeLimit(.minutes(1)))
    func namedPipeIsRefusedWithoutWaitingForAWriter() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("pipe.wav")
        try #require(mkfifo(path, 0o600) == 0)
        let read = try returnsPromptly(unblocking: path) { () -> AudioError? in
            do throws(AudioError) { _ = try AudioFile.read(path: path); return nil } catch { return error }
        }
        #expect(read == .notARegularFile(path: path))
        let info = try returnsPromptly(unblocking: path) { () -> AudioError? in
            do throws(AudioError) { _ = try AudioFile.info(path: path); return nil } catch { return error }
        }
        #expect(info == .notARegularFile(path: path))
    }

    @Test(arguments: [Float.nan, .infinity, -.infinity])
    func nonFiniteSampleIsRefusedNamingTheFrame(bad: Float) throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("damaged.wav")
        // Stereo, the bad value in the right channel of a frame in the second decoding block.
        let frames = 10_000, badFrame = 5_003
        var samples = (0..<(2 * frames)).map { Float(sin(Double($0) * 0.01)) * 0.5 }
        samples[2 * badFrame + 1] = bad
        try AudioWriter.write(samples, channels: 2, sampleRate: 16000, to: path, format: .wavFloat)
        do {
            let audio = try AudioFile.read(path: path)
            Issue.record("read \(audio.samples.count) samples instead of refusing the file")
        } catch {
            #expect(error == .nonFiniteSample(path: path, frame: Int64(badFrame)))
        }
        #expect(AudioError.nonFiniteSample(path: path, frame: Int64(badFrame)).description.contains("'\(path)'"))
    }

    @Test func finiteFloatFileBeyondFullScaleStillReads() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("loud.wav")
        try AudioWriter.write([Float](repeating: 3, count: 1600), sampleRate: 16000, to: path, format: .wavFloat)
        #expect(try AudioFile.read(path: path).samples.count == 1600)
    }

    @Test func headerClaimingBillionsOfFramesIsTruncatedNotAHugeReservation() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("liar.flac")
        try AudioWriter.write((0..<8000).map { Float(sin(Double($0) * 0.05)) * 0.5 }, sampleRate: 16000, to: path)
        // FLAC's STREAMINFO (after "fLaC" and a 4-byte block header) ends its fixed fields with a 36-bit
        // total sample count in bytes 21 (low nibble) to 25: set it to 2^36 - 1, about 20 days at 16 kHz,
        // which reserved 275 GB before the file's size bounded the reservation.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        try #require(bytes.count > 26 && bytes[0..<4] == [0x66, 0x4C, 0x61, 0x43])
        bytes[21] |= 0x0F
        for i in 22...25 { bytes[i] = 0xFF }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(try AudioFile.info(path: path).frames == (1 << 36) - 1)
        #expect(throws: AudioError.truncated(path: path, declaredFrames: (1 << 36) - 1, availableFrames: 8000)) {
            try AudioFile.read(path: path)
        }
    }
}
