import CSndFile

/// A decoded file: mono samples (the source channels averaged) at `sampleRate`, plus what the source was.
public struct DecodedAudio: Sendable, Equatable {
    /// Mono, time-ordered, nominally in [-1, 1].
    public var samples: [Float]
    public var sampleRate: Int
    public var sourceSampleRate: Int
    public var sourceChannels: Int
    /// Frames decoded from the file, at `sourceSampleRate`.
    public var sourceFrames: Int64

    public init(samples: [Float], sampleRate: Int, sourceSampleRate: Int, sourceChannels: Int, sourceFrames: Int64) {
        self.samples = samples
        self.sampleRate = sampleRate
        self.sourceSampleRate = sourceSampleRate
        self.sourceChannels = sourceChannels
        self.sourceFrames = sourceFrames
    }

    /// Seconds of audio; equals the source's duration to within one output sample.
    public var duration: Double { Double(samples.count) / Double(sampleRate) }
}

/// What a file's header says, without decoding the audio.
public struct AudioFileInfo: Sendable, Equatable {
    public var path: String
    /// libsndfile's name for the container, e.g. "WAV (Microsoft)", "FLAC (Free Lossless Audio Codec)".
    public var format: String
    /// libsndfile's name for the sample encoding, e.g. "Signed 16 bit PCM", "Vorbis".
    public var encoding: String
    public var sampleRate: Int
    public var channels: Int
    /// Frames per channel the header declares (0 for a header with no audio; for MP3 an estimate); where
    /// the header does not know (FLAC written to a pipe), the frames the file decodes to.
    public var frames: Int64
    public var duration: Double { sampleRate > 0 ? Double(frames) / Double(sampleRate) : 0 }
}

/// Reads audio files through libsndfile: every container and encoding the installed libsndfile decodes
/// (WAV, FLAC, OGG/Vorbis, Opus, AIFF, CAF, AU, MP3 with libsndfile >= 1.1, ...), any rate, any channel
/// count. Owns no state; each call opens, decodes and closes its file.
public enum AudioFile {
    /// Decodes the file at `path`, averages its channels to mono and resamples to `targetSampleRate`
    /// (`quality`: see `ResamplingQuality`). Decoding, down-mixing and resampling run block by block
    /// (`AudioStreamReader`), so only the output array grows with the file's length.
    public static func read(
        path: String, targetSampleRate: Int = 16000, quality: ResamplingQuality = .medium
    ) throws(AudioError) -> DecodedAudio {
        let reader = try AudioStreamReader(path: path, targetSampleRate: targetSampleRate, quality: quality)
        var output: [Float] = []
        output.reserveCapacity(reader.expectedSampleCount)
        while try reader.read(appendingTo: &output) {}
        return DecodedAudio(samples: output, sampleRate: targetSampleRate, sourceSampleRate: reader.sourceSampleRate,
                            sourceChannels: reader.sourceChannels, sourceFrames: reader.sourceFrames)
    }

    /// The header's description of the file at `path`. Throws what `read` would throw before decoding
    /// (missing, not a file, unreadable, 0 bytes, not audio, header promising more data than present);
    /// a valid header with no audio gives `frames == 0` rather than an error.
    public static func info(path: String) throws(AudioError) -> AudioFileInfo {
        let file = try SoundFileReader(path: path)
        if let promised = file.headerPromisedFrames() {
            throw .truncated(path: path, declaredFrames: promised, availableFrames: file.info.frames)
        }
        return AudioFileInfo(path: path, format: file.majorFormatName, encoding: file.encodingName,
                             sampleRate: file.sampleRate, channels: file.channels,
                             frames: file.declaredFrames ?? countFrames(file))
    }

    /// Frames decoded from a file whose header does not know its length (FLAC streamed to a pipe
    /// stores 0 there, and libsndfile reports "unknown"): such a file is fine, and 0 would call it empty.
    static func countFrames(_ file: SoundFileReader) -> Int64 {
        let blockFrames = AudioStreamReader.blockFrames
        var block = [Float](repeating: 0, count: blockFrames * max(1, file.channels))
        var total: Int64 = 0
        while true {
            let count = block.withUnsafeMutableBufferPointer { file.readFrames(into: $0.baseAddress!, frames: blockFrames) }
            if count <= 0 { return total }
            total += Int64(count)
        }
    }

    /// The containers the installed libsndfile reads, by its names ("WAV (Microsoft)", "MPEG-1/2 Audio", ...).
    public static var readableFormats: [String] { sndfileMajorFormats().map(\.name) }

    /// Whether this libsndfile was built with MPEG (MP3) support, which arrived in libsndfile 1.1.
    public static var canReadMP3: Bool {
        sndfileMajorFormats().contains { $0.format == Int32(SF_FORMAT_MPEG) }
    }

    /// Index of the first of `frames` interleaved frames holding a NaN or infinite sample, if any.
    static func firstNonFiniteFrame(_ samples: UnsafePointer<Float>, frames: Int, channels: Int) -> Int? {
        for i in 0..<(frames * channels) where !samples[i].isFinite { return i / channels }
        return nil
    }
}

extension AudioError {
    /// Resampler errors are raised without a file in hand; attach it when there is one.
    func naming(_ path: String) -> AudioError {
        if case .resamplingFailed(nil, let fromRate, let toRate, let reason) = self {
            return .resamplingFailed(path: path, fromRate: fromRate, toRate: toRate, reason: reason)
        }
        return self
    }
}

/// Decodes audio block by block: mono (the source channels averaged), resampled to `sampleRate`, with
/// memory bounded whatever the input's length. Reads a file by path, or a stream (a pipe) as its bytes
/// arrive, so that `earshot stream` can send a recording while it is still being made. Every check
/// `AudioFile.read` makes applies; those that need the whole input (truncation, emptiness) are made at
/// its end. Not thread-safe: one reader per thread.
public final class AudioStreamReader {
    /// Frames decoded per libsndfile call. Memory for decoding is this many frames times the channel count,
    /// whatever the input's length, and 4096 frames keep the per-call overhead negligible.
    static let blockFrames = 4096

    /// The path, or the name given to a stream; errors name it.
    public let path: String
    public let sampleRate: Int
    public let sourceSampleRate: Int
    public let sourceChannels: Int
    /// Frames decoded so far, at `sourceSampleRate`.
    public private(set) var sourceFrames: Int64 = 0

    private let file: SoundFileReader
    private let resampler: StreamingResampler
    // Interleaved frames as libsndfile delivers them (frame-major, channels adjacent), then their mono mix.
    private var interleaved: [Float]
    private var mono: [Float]
    /// Frames asked of libsndfile at a time. It waits until it has them all, so a stream takes ones of
    /// 50 ms, to pass live audio on without delay.
    private let framesPerRead: Int
    private var ended = false

    /// Opens the file at `path`. Throws what `AudioFile.info` throws, and `.empty` for a header that
    /// declares no audio.
    public convenience init(path: String, targetSampleRate: Int = 16000, quality: ResamplingQuality = .medium) throws(AudioError) {
        let file = try SoundFileReader(path: path)
        if let promised = file.headerPromisedFrames() {
            throw .truncated(path: path, declaredFrames: promised, availableFrames: file.info.frames)
        }
        if file.declaredFrames == 0 {
            throw .empty(path: path, byteCount: file.byteCount)
        }
        try self.init(file, targetSampleRate: targetSampleRate, quality: quality)
    }

    /// Reads the open `descriptor` (a pipe) as its bytes arrive, never seeking; `name` is what messages
    /// call it. libsndfile decodes WAV, AU and Ogg streams; FLAC and most others need to seek, so read
    /// those from a file. The reader decodes a duplicate of `descriptor`; the caller closes its own.
    public convenience init(descriptor: Int32, name: String, targetSampleRate: Int = 16000,
                            quality: ResamplingQuality = .medium) throws(AudioError) {
        try self.init(try SoundFileReader(descriptor: descriptor, name: name), targetSampleRate: targetSampleRate, quality: quality)
    }

    private init(_ file: SoundFileReader, targetSampleRate: Int, quality: ResamplingQuality) throws(AudioError) {
        self.file = file
        path = file.path
        sampleRate = targetSampleRate
        sourceSampleRate = file.sampleRate
        sourceChannels = file.channels
        do {
            resampler = try StreamingResampler(from: file.sampleRate, to: targetSampleRate, quality: quality)
        } catch {
            throw error.naming(file.path)
        }
        framesPerRead = file.isStream ? min(Self.blockFrames, max(64, file.sampleRate / 20)) : Self.blockFrames
        interleaved = [Float](repeating: 0, count: framesPerRead * file.channels)
        mono = [Float](repeating: 0, count: framesPerRead)
    }

    /// Output samples the header leads one to expect, for reserving memory: 0 where it does not say, and
    /// never more than the file's size allows (a corrupt or hostile header may promise far more).
    public var expectedSampleCount: Int {
        guard !file.isStream, let frames = file.declaredFrames else { return 0 }
        return StreamingResampler.outputCount(forInput: min(frames, file.maximumFrames), from: sourceSampleRate, to: sampleRate)
    }

    /// Decodes the next block and appends its samples (possibly none, while the resampler fills) to
    /// `output`. Returns false once the input has ended: that call has appended the resampler's tail and
    /// made the end checks (truncated, empty, a decoding error), appending the tail even when one throws;
    /// later calls append nothing. A stream's call waits until its next bytes arrive.
    public func read(appendingTo output: inout [Float]) throws(AudioError) -> Bool {
        guard !ended else { return false }
        let count = interleaved.withUnsafeMutableBufferPointer { buffer in
            file.readFrames(into: buffer.baseAddress!, frames: framesPerRead)
        }
        guard count > 0 else {
            ended = true
            try finish(appendingTo: &output)
            return false
        }
        // NaN or infinity (float files only) would spread through the resampler and every feature; such
        // a file is damaged, and saying where lets the user find it.
        if let bad = interleaved.withUnsafeBufferPointer({ AudioFile.firstNonFiniteFrame($0.baseAddress!, frames: count, channels: sourceChannels) }) {
            throw .nonFiniteSample(path: path, frame: sourceFrames + Int64(bad))
        }
        sourceFrames += Int64(count)
        let channels = sourceChannels
        interleaved.withUnsafeBufferPointer { source in
            mono.withUnsafeMutableBufferPointer { target in
                downmix(source.baseAddress!, frames: count, channels: channels, into: target.baseAddress!) { $0 }
            }
        }
        do {
            try resampler.push(mono[0..<count])
        } catch {
            throw error.naming(path)
        }
        resampler.pull(into: &output)
        return true
    }

    /// The resampler's tail goes out first: a caller sending audio as it comes (`earshot stream`) still
    /// has all of what did arrive when the input then turns out short.
    private func finish(appendingTo output: inout [Float]) throws(AudioError) {
        do {
            try resampler.finish()
        } catch {
            throw error.naming(path)
        }
        resampler.pull(into: &output)
        if let declared = file.declaredFrames, sourceFrames < declared, file.declaredFramesAreExact {
            throw .truncated(path: path, declaredFrames: declared, availableFrames: sourceFrames)
        }
        if let problem = file.errorText {
            throw .readFailed(path: path, libsndfile: problem)
        }
        if sourceFrames == 0 {
            throw .empty(path: path, byteCount: file.byteCount)
        }
    }
}
