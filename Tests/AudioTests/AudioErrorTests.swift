import Audio
import Foundation
import Testing
import TestSupport

/// Each broken input must give its own `AudioError` case, and the message must name the file.
@Suite struct AudioErrorTests {
    /// Reads `path`, expecting a failure; returns the error after checking its message names the file.
    func readError(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> AudioError? {
        do {
            let audio = try AudioFile.read(path: path)
            Issue.record("read \(audio.samples.count) samples from \(path) instead of failing",
                         sourceLocation: sourceLocation)
            return nil
        } catch {
            #expect(error.description.contains("'\(path)'"), "message does not name the file: \(error)",
                    sourceLocation: sourceLocation)
            return error
        }
    }

    func tone(frames: Int) -> [Float] { (0..<frames).map { Float(sin(Double($0) * 0.1)) * 0.5 } }

    @Test func missingFileIsReportedAsNotFound() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("nope.wav")
        #expect(readError(path) == .fileNotFound(path: path))
        #expect(readError(directory.file("no-folder/nope.wav")) == .fileNotFound(path: directory.file("no-folder/nope.wav")))
        #expect(throws: AudioError.fileNotFound(path: path)) { try AudioFile.info(path: path) }
    }

    /// The system's own refusals (here a name longer than the file system allows; likewise too many
    /// open files, no memory, an I/O error) are reported as such, not as a damaged or unsupported file.
    @Test func systemRefusalIsNotCalledADamagedFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file(String(repeating: "a", count: 300) + ".wav")
        let error = readError(path)
        #expect(error == .systemError(path: path, reason: String(cString: strerror(ENAMETOOLONG))))
        #expect(error?.description.contains("a system error, not a fault in the file") == true, "\(String(describing: error))")
    }

    @Test func zeroByteFileIsReportedAsEmpty() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("empty.wav")
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        let error = readError(path)
        #expect(error == .empty(path: path, byteCount: 0))
        #expect(error?.description == "cannot read '\(path)': the file is empty (0 bytes)")
    }

    @Test func headerWithoutFramesIsReportedAsEmpty() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("header-only.wav")
        try AudioWriter.write([], sampleRate: 16000, to: path, format: .wav16)
        let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size == 44)  // the canonical RIFF/fmt/data header, nothing after it
        let error = readError(path)
        #expect(error == .empty(path: path, byteCount: 44))
        #expect(error?.description.contains("its 44 bytes hold no audio frames") == true)
        // info describes such a file rather than failing: the header itself is fine.
        #expect(try AudioFile.info(path: path).frames == 0)
    }

    @Test func wavCutInHalfIsReportedAsTruncated() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("cut.wav")
        try AudioWriter.write(tone(frames: 16000), sampleRate: 16000, to: path, format: .wav16)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(data.count == 44 + 32000)
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        // Half of 32044 bytes leaves 15978 bytes of 16-bit samples after the 44-byte header.
        let expected = AudioError.truncated(path: path, declaredFrames: 16000, availableFrames: 7989)
        #expect(readError(path) == expected)
        #expect(expected.description.contains("header promises 16000 audio frames but only 7989"))
        #expect(throws: expected) { try AudioFile.info(path: path) }
    }

    @Test func aiffCutInHalfIsReportedAsTruncated() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("cut.aiff")
        try AudioWriter.write(tone(frames: 16000), sampleRate: 16000, to: path, format: .aiff)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let header = data.count - 32000
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        let available = Int64((data.count / 2 - header) / 2)
        #expect(readError(path) == .truncated(path: path, declaredFrames: 16000, availableFrames: available))
    }

    /// What `sox ... -t wav - | cat > x.wav` (and -t aiff, -t flac) writes: the header cannot know the
    /// length, so WAV says 0x7FFFF000 data bytes, AIFF 0x7F000008 and FLAC 0 samples. Whole files, read
    /// whole: not "truncated", and `info` counts the frames rather than calling the file empty.
    @Test func filesStreamedToAPipeAreReadWhole() throws {
        let directory = try TemporaryDirectory()
        func patched(_ name: String, _ format: AudioFileFormat, _ patch: (inout [UInt8]) throws -> Void) throws -> String {
            let path = directory.file(name)
            try AudioWriter.write(tone(frames: 16000), sampleRate: 16000, to: path, format: format)
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            try patch(&bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
        func chunk(_ bytes: [UInt8], _ id: String) throws -> Int {
            let tag = [UInt8](id.utf8)
            return try #require((0...(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == tag })
        }
        let wav = try patched("pipe.wav", .wav16) { b in
            let at = try chunk(b, "data") + 4
            b.replaceSubrange(at..<(at + 4), with: [0x00, 0xF0, 0xFF, 0x7F])       // 0x7FFFF000, little-endian
        }
        let aiff = try patched("pipe.aiff", .aiff) { b in
            let at = try chunk(b, "SSND") + 4
            b.replaceSubrange(at..<(at + 4), with: [0x7F, 0x00, 0x00, 0x08])       // 0x7F000008, big-endian
        }
        let flac = try patched("pipe.flac", .flac) { b in
            try #require(b.count > 26 && b[0..<4] == [0x66, 0x4C, 0x61, 0x43])
            b[21] &= 0xF0                                                          // STREAMINFO total samples: 0
            for i in 22...25 { b[i] = 0 }
        }
        for path in [wav, aiff, flac] {
            #expect(try AudioFile.read(path: path).samples.count == 16000, "\(path)")
            #expect(try AudioFile.info(path: path).frames == 16000, "\(path)")
        }
    }

    @Test func flacCutShortIsReportedAsTruncated() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("cut.flac")
        try AudioWriter.write(tone(frames: 32000), sampleRate: 16000, to: path, format: .flac)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        // FLAC's STREAMINFO holds the total; the decoder then runs out of data part-way.
        guard case .truncated(path, 32000, let available) = readError(path) else {
            Issue.record("expected .truncated for \(path)")
            return
        }
        #expect(available > 0 && available < 32000)
    }

    @Test func randomBytesNamedWavAreReportedAsUnsupported() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("noise.wav")
        var generator = SeededGenerator(seed: 42)
        // Printable-range bytes so nothing can pass for an MPEG frame sync (0xFFE) or a known magic number.
        let bytes = (0..<4096).map { _ in UInt8.random(in: 0x20...0x7E, using: &generator) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        guard case .unsupportedFormat(path, let libsndfile) = readError(path) else {
            Issue.record("expected .unsupportedFormat")
            return
        }
        #expect(!libsndfile.isEmpty)
    }

    @Test func textFileNamedFlacIsReportedAsUnsupported() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("notes.flac")
        try "This is a shopping list, not audio.\nMilk\nEggs\n".write(toFile: path, atomically: true, encoding: .utf8)
        let error = readError(path)
        guard case .unsupportedFormat(path, let libsndfile) = error else {
            Issue.record("expected .unsupportedFormat, got \(String(describing: error))")
            return
        }
        // libsndfile's own reason is part of the message.
        #expect(error?.description.contains(libsndfile) == true)
    }

    @Test func directoryIsReportedAsNotAFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("looks-like.wav")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect(readError(path) == .notARegularFile(path: path))
    }

    @Test(.enabled(if: geteuid() != 0, "root reads files whatever their mode"))
    func unreadableFileIsReportedAsPermissionDenied() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("secret.wav")
        try AudioWriter.write(tone(frames: 100), sampleRate: 16000, to: path)
        chmod(path, 0)
        #expect(readError(path) == .permissionDenied(path: path))
    }

    @Test func impossibleTargetRateIsAResamplingFailureNamingTheFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("ok.wav")
        try AudioWriter.write(tone(frames: 100), sampleRate: 16000, to: path)
        guard case .resamplingFailed(path, 16000, 0, _) = readError(path, targetRate: 0) else {
            Issue.record("expected .resamplingFailed naming the file")
            return
        }
    }

    func readError(_ path: String, targetRate: Int) -> AudioError? {
        do {
            _ = try AudioFile.read(path: path, targetSampleRate: targetRate)
            return nil
        } catch {
            #expect(error.description.contains("'\(path)'"))
            return error
        }
    }
}
