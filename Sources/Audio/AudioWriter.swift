import CSndFile

/// The file types `AudioWriter` produces: the container and sample encoding together.
public enum AudioFileFormat: String, Sendable, CaseIterable {
    /// RIFF WAV, signed 16-bit PCM.
    case wav16
    /// RIFF WAV, 32-bit IEEE float (no quantisation; values beyond [-1, 1] survive).
    case wavFloat
    /// FLAC, 16-bit.
    case flac
    /// OGG container, Vorbis encoding (lossy).
    case oggVorbis
    /// AIFF, signed 16-bit PCM.
    case aiff
    /// MPEG-1/2 Layer III (lossy); needs libsndfile >= 1.1 built with LAME (`AudioFile.canReadMP3`).
    case mp3

    /// The usual extension for the format, without the dot.
    public var fileExtension: String {
        switch self {
        case .wav16, .wavFloat: return "wav"
        case .flac: return "flac"
        case .oggVorbis: return "ogg"
        case .aiff: return "aiff"
        case .mp3: return "mp3"
        }
    }

    /// Guesses from a path's extension (case-insensitive); `.wav` means 16-bit PCM.
    public init?(path: String) {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return nil }
        switch path[path.index(after: dot)...].lowercased() {
        case "wav": self = .wav16
        case "flac": self = .flac
        case "ogg", "oga": self = .oggVorbis
        case "aif", "aiff": self = .aiff
        case "mp3": self = .mp3
        default: return nil
        }
    }

    var sndfileFormat: Int32 {
        switch self {
        case .wav16: return Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)
        case .wavFloat: return Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT)
        case .flac: return Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16)
        case .oggVorbis: return Int32(SF_FORMAT_OGG | SF_FORMAT_VORBIS)
        case .aiff: return Int32(SF_FORMAT_AIFF | SF_FORMAT_PCM_16)
        case .mp3: return Int32(SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III)
        }
    }
}

/// Writes float buffers to audio files through libsndfile (for tests, other modules' tests and corpus
/// tooling). Owns no state; each call creates, writes and closes one file.
public enum AudioWriter {
    /// Writes `samples` - interleaved frames (frame-major: `channels` adjacent values per frame) - to
    /// `path`. `format` defaults to what the path's extension suggests. Integer formats clip to [-1, 1]
    /// instead of wrapping around.
    public static func write(
        _ samples: [Float], channels: Int = 1, sampleRate: Int, to path: String, format: AudioFileFormat? = nil
    ) throws(AudioError) {
        guard let format = format ?? AudioFileFormat(path: path) else {
            throw .writeFailed(path: path, reason: "cannot tell the format from the extension; "
                               + "use .wav, .flac, .ogg, .aiff or .mp3, or pass a format")
        }
        guard channels > 0, samples.count % channels == 0 else {
            throw .writeFailed(path: path, reason: "\(samples.count) samples do not divide into "
                               + "\(channels) interleaved channels")
        }
        guard sampleRate > 0 else {
            throw .writeFailed(path: path, reason: "the sample rate must be positive, not \(sampleRate)")
        }
        var info = SF_INFO()
        info.samplerate = Int32(sampleRate)
        info.channels = Int32(channels)
        info.format = format.sndfileFormat
        guard sf_format_check(&info) != 0 else {
            throw .writeFailed(path: path, reason: "libsndfile cannot write \(format.rawValue) with "
                               + "\(channels) channel(s) at \(sampleRate) Hz")
        }
        var openError: String?
        let opened: OpaquePointer? = sndfileOpenLock.withLock {
            let handle = sf_open(path, Int32(SFM_WRITE), &info)
            if handle == nil { openError = String(cString: sf_strerror(nil)) }
            return handle
        }
        guard let handle = opened else {
            throw .writeFailed(path: path, reason: openError ?? "libsndfile could not create the file")
        }
        // Without clipping, libsndfile converts 1.0 to 32768, which wraps to -32768 in 16-bit formats.
        sf_command(handle, Int32(SFC_SET_CLIPPING), nil, Int32(SF_TRUE))

        let frames = samples.count / channels
        var written = 0
        let blockFrames = 16384
        samples.withUnsafeBufferPointer { buffer in
            while written < frames {
                let count = min(blockFrames, frames - written)
                let done = Int(sf_writef_float(handle, buffer.baseAddress! + written * channels, Int64(count)))
                written += done
                if done < count { break }
            }
        }
        let writeError = sf_error(handle) != 0 ? String(cString: sf_strerror(handle)) : nil
        let closeStatus = sf_close(handle)
        if written < frames || closeStatus != 0 {
            throw .writeFailed(path: path, reason: "wrote \(written) of \(frames) frames ("
                               + "\(writeError ?? "libsndfile: error \(closeStatus) on close")); is the disk full?")
        }
    }

    /// Writes one array per channel (all the same length) to `path`.
    public static func write(
        channels: [[Float]], sampleRate: Int, to path: String, format: AudioFileFormat? = nil
    ) throws(AudioError) {
        guard let first = channels.first, channels.allSatisfy({ $0.count == first.count }) else {
            throw .writeFailed(path: path, reason: "needs at least one channel, all of the same length")
        }
        var interleaved = [Float](repeating: 0, count: first.count * channels.count)
        for (c, channel) in channels.enumerated() {
            for (i, value) in channel.enumerated() {
                interleaved[i * channels.count + c] = value
            }
        }
        try write(interleaved, channels: channels.count, sampleRate: sampleRate, to: path, format: format)
    }
}
