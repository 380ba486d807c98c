import Audio
import Foundation
import Testing
import TestSupport

@Suite struct AudioFileTests {
    static let rates = [8000, 11025, 22050, 44100, 48000]
    static let seconds = 0.6
    /// Left and right differ so that averaging is visible: mono must hold both tones at half amplitude.
    static let left = Tones(components: [(440, 0.5)])
    static let right = Tones(components: [(1000, 0.3)])
    static let mix = Tones(components: [(440, 0.25), (1000, 0.15)])

    static func write(_ format: AudioFileFormat, rate: Int, channels: Int, in directory: TemporaryDirectory)
        throws -> String {
        let count = Int(Double(rate) * seconds)
        let path = directory.file("tone-\(rate)-\(channels)ch-\(format.rawValue).\(format.fileExtension)")
        if channels == 1 {
            try AudioWriter.write(left.samples(rate: rate, count: count), sampleRate: rate, to: path, format: format)
        } else {
            try AudioWriter.write(channels: [left.samples(rate: rate, count: count),
                                             right.samples(rate: rate, count: count)],
                                  sampleRate: rate, to: path, format: format)
        }
        return path
    }

    @Test(arguments: [AudioFileFormat.wav16, .wavFloat, .flac, .aiff], rates)
    func losslessFilesDecodeToTheExactToneAt16kHz(format: AudioFileFormat, rate: Int) throws {
        let directory = try TemporaryDirectory()
        for channels in [1, 2] {
            let path = try Self.write(format, rate: rate, channels: channels, in: directory)
            let audio = try AudioFile.read(path: path)
            let frames = Int(Double(rate) * Self.seconds)
            #expect(audio.sampleRate == 16000)
            #expect(audio.sourceSampleRate == rate)
            #expect(audio.sourceChannels == channels)
            #expect(audio.sourceFrames == Int64(frames))
            #expect(audio.samples.count == (frames * 16000 + rate - 1) / rate)
            #expect(abs(audio.duration - Self.seconds) < 1.0 / 16000)
            // 16-bit storage adds up to 1.5e-5 of rounding per channel (0.5 LSB of 32768) and a gain of
            // 32767/32768 (libsndfile scales by 32767 on write, 1/32768 on read): 3e-5 on a 0.5 peak; the
            // resampler adds < 1e-6 (see ResamplerTests). Measured worst: 3.9e-5 (16-bit), 6.6e-7 (float).
            // The bounds fail for a channel dropped instead of averaged (error 0.15-0.25), a wrong rate, or a
            // shift of a hundredth of a sample (~1e-3).
            let tolerance = format == .wavFloat ? 5e-6 : 1e-4
            let expected = channels == 1 ? Self.left : Self.mix
            let edge = 16000 / 50
            let error = maxError(audio.samples, rate: 16000, against: expected,
                                 over: edge..<(audio.samples.count - edge))
            #expect(error < tolerance, "\(format) \(rate) Hz \(channels) ch: max error \(error)")
        }
    }

    @Test(arguments: [AudioFileFormat.oggVorbis, .mp3], rates)
    func lossyFilesKeepTheToneFrequenciesAndAmplitudes(format: AudioFileFormat, rate: Int) throws {
        if format == .mp3 {
            try #require(AudioFile.canReadMP3, "this libsndfile lacks MPEG support (needs >= 1.1 with mpg123/LAME)")
        }
        let directory = try TemporaryDirectory()
        for channels in [1, 2] {
            let path = try Self.write(format, rate: rate, channels: channels, in: directory)
            let audio = try AudioFile.read(path: path)
            #expect(audio.sourceChannels == channels)
            #expect(audio.sourceSampleRate == rate)
            // This libsndfile trims Vorbis and (gapless, via the LAME tag) MP3 to the exact length (measured
            // difference: 0). A build without gapless MP3 adds up to ~0.15 s of encoder delay and padding at
            // 8 kHz. (A rate mix-up moves the tones, which the amplitude checks below catch.)
            #expect(abs(audio.duration - Self.seconds) < 0.15, "\(format) \(rate) \(channels): \(audio.duration) s")

            // Phase and a codec delay do not matter here, so compare amplitudes by projection over the
            // middle 0.4 s (a whole number of periods of both tones: 176 and 400).
            let middle = 1600..<8000
            let expected = channels == 1 ? Self.left : Self.mix
            for tone in [(440.0, expected.components[0].amplitude),
                         (1000.0, expected.components.count > 1 ? expected.components[1].amplitude : 0)] {
                let measured = amplitude(of: tone.0, in: audio.samples, rate: 16000, over: middle)
                // Perceptual codecs at default quality keep strong pure tones within a few per cent
                // (measured worst: 3.4 %, Vorbis at 8 kHz); 5 % plus 0.002 for an absent tone still fails for
                // a dropped channel (-50 %), a summed instead of averaged mix (+100 %) or a wrong rate.
                #expect(abs(measured - tone.1) < 0.05 * tone.1 + 0.002,
                        "\(format) \(rate) Hz \(channels) ch: \(tone.0) Hz amplitude \(measured), want \(tone.1)")
            }
            // Nothing but those tones: the total level must be theirs (measured worst: 1.6 % off).
            let total = rms(audio.samples, over: middle)
            let toneRMS = (expected.components.reduce(0) { $0 + $1.amplitude * $1.amplitude } / 2).squareRoot()
            #expect(abs(total - toneRMS) < 0.05 * toneRMS, "\(format) \(rate) \(channels): rms \(total) want \(toneRMS)")
        }
    }

    @Test func stereoChannelsAreAveragedSampleBySample() throws {
        let directory = try TemporaryDirectory()
        var generator = SeededGenerator(seed: 3)
        let channels = (0..<3).map { _ in (0..<4000).map { _ in Float.random(in: -1...1, using: &generator) } }
        for count in [2, 3] {
            let path = directory.file("noise-\(count).wav")
            try AudioWriter.write(channels: Array(channels.prefix(count)), sampleRate: 16000, to: path,
                                  format: .wavFloat)
            let audio = try AudioFile.read(path: path, targetSampleRate: 16000)
            try #require(audio.samples.count == 4000)
            // Float WAV at the target rate: no quantisation, no resampling, so only the sum's float rounding
            // (a few ulps of values below 3) separates the result from the mean.
            let worst = (0..<4000).map { i -> Float in
                let mean = channels.prefix(count).reduce(Float(0)) { $0 + $1[i] } / Float(count)
                return abs(audio.samples[i] - mean)
            }.max() ?? 0
            #expect(worst < 1e-6, "\(count) channels: max difference from the mean \(worst)")
        }
    }

    @Test func infoReportsTheHeaderWithoutDecoding() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("info.flac")
        try AudioWriter.write([Float](repeating: 0.1, count: 2 * 22050), channels: 2, sampleRate: 22050, to: path)
        let info = try AudioFile.info(path: path)
        #expect(info.format.hasPrefix("FLAC"))
        #expect(info.encoding == "Signed 16 bit PCM")
        #expect(info.sampleRate == 22050)
        #expect(info.channels == 2)
        #expect(info.frames == 22050)
        #expect(info.duration == 1.0)
    }

    @Test func readingAtTheSourceRateReturnsTheSamplesUnchanged() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("same.wav")
        var generator = SeededGenerator(seed: 11)
        // Longer than several read blocks, and not a multiple of the block size.
        let input = (0..<(3 * 4096 + 123)).map { _ in Float.random(in: -1...1, using: &generator) }
        try AudioWriter.write(input, sampleRate: 44100, to: path, format: .wavFloat)
        let audio = try AudioFile.read(path: path, targetSampleRate: 44100)
        #expect(audio.samples == input)
    }

    @Test func integerFormatsClipInsteadOfWrappingAround() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("loud.wav")
        try AudioWriter.write([1.5, -1.5, 1.0, -1.0, 0.5], sampleRate: 16000, to: path, format: .wav16)
        let samples = try AudioFile.read(path: path).samples
        // Without clipping, 1.5 would wrap to a large negative value.
        #expect(samples[0] > 0.99 && samples[1] < -0.99 && samples[2] > 0.99 && samples[3] < -0.99)
        #expect(abs(samples[4] - 0.5) < 1e-4)
    }

    @Test func libsndfileOfferstheUsualContainers() {
        let formats = AudioFile.readableFormats
        for name in ["WAV", "FLAC", "OGG", "AIFF"] {
            #expect(formats.contains { $0.hasPrefix(name) }, "\(name) missing from \(formats)")
        }
    }

    @Test func writerRefusesBuffersItCannotWrite() throws {
        let directory = try TemporaryDirectory()
        let oddPath = directory.file("odd.wav")
        #expect(throws: AudioError.writeFailed(path: oddPath, reason: "3 samples do not divide into 2 interleaved channels")) {
            try AudioWriter.write([0, 0, 0], channels: 2, sampleRate: 16000, to: oddPath)
        }
        let unknown = directory.file("sound.xyz")
        do {
            try AudioWriter.write([0], sampleRate: 16000, to: unknown)
            Issue.record("wrote a file with an unknown extension")
        } catch {
            #expect(error.description.contains(unknown))
        }
        let noFolder = directory.file("missing-folder/x.wav")
        do {
            try AudioWriter.write([0], sampleRate: 16000, to: noFolder)
            Issue.record("wrote into a missing folder")
        } catch {
            guard case .writeFailed(noFolder, _) = error else { Issue.record("wrong error \(error)"); return }
        }
    }
}
