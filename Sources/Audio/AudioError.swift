/// Everything that can go wrong reading, writing or resampling audio. Each case names the file (where
/// there is one) and its `description` says, in one line, what is wrong and what the user can do about it.
public enum AudioError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Nothing exists at the path (or a folder on the way to it is missing).
    case fileNotFound(path: String)
    /// The path exists but is a directory, device or socket rather than a regular file.
    case notARegularFile(path: String)
    /// The file exists but this process may not read it.
    case permissionDenied(path: String)
    /// The file has 0 bytes, or a valid header with 0 audio frames after it; `byteCount` is -1 for a
    /// stream (a pipe), whose size is not known.
    case empty(path: String, byteCount: Int64)
    /// libsndfile does not recognise the contents (not audio, corrupt header, or an encoding it lacks);
    /// `libsndfile` holds its `sf_strerror` text.
    case unsupportedFormat(path: String, libsndfile: String)
    /// The header promises more audio than the file holds (an interrupted copy or recording).
    case truncated(path: String, declaredFrames: Int64, availableFrames: Int64)
    /// Decoding stopped part-way for a reason other than a known truncation; `libsndfile` holds its text.
    case readFailed(path: String, libsndfile: String)
    /// The system refused to open or read the file for a reason of its own (too many open files, out of
    /// memory, an I/O error, a path too long or looping): `reason` is its `strerror` text. The file
    /// itself may be fine, so this is not reported as a damaged or unsupported file.
    case systemError(path: String, reason: String)
    /// libsamplerate refused the conversion (`path` is nil when resampling a buffer, not a file).
    case resamplingFailed(path: String?, fromRate: Int, toRate: Int, reason: String)
    /// The file could not be created or written; `reason` says why.
    case writeFailed(path: String, reason: String)
    /// A (floating-point) file holds a NaN or infinite sample; `frame` is the first such frame (0-based,
    /// at the file's own rate).
    case nonFiniteSample(path: String, frame: Int64)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "cannot read '\(path)': no such file (check the path and the current directory)"
        case .notARegularFile(let path):
            return "cannot read '\(path)': it is a folder or special file, not an audio file (for the audio in a folder, pass its files, e.g. '\(path)'/*.wav)"
        case .permissionDenied(let path):
            return "cannot read '\(path)': permission denied (check the file's owner and mode)"
        case .empty(let path, let byteCount):
            if byteCount == 0 {
                return "cannot read '\(path)': the file is empty (0 bytes)"
            }
            if byteCount < 0 {
                return "cannot read '\(path)': the stream ended before any audio frames"
            }
            return "cannot read '\(path)': the file is empty (its \(byteCount) bytes hold no audio frames, or its header says so: a recording stopped before its header was finished? "
                + "If so, `sox --ignore-length '\(path)' fixed.wav` recovers the audio after the header)"
        case .unsupportedFormat(let path, let libsndfile):
            return "cannot read '\(path)': not a supported audio format, or the file is corrupt "
                + "(libsndfile: \(libsndfile)); convert it to WAV or FLAC and try again"
        case .truncated(let path, let declaredFrames, let availableFrames):
            return "cannot read '\(path)': the file is truncated (its header promises \(declaredFrames) audio "
                + "frames but only \(availableFrames) are present); re-copy or re-record it"
        case .readFailed(let path, let libsndfile):
            return "cannot read '\(path)': decoding failed part-way (libsndfile: \(libsndfile)); "
                + "the file is probably damaged"
        case .systemError(let path, let reason):
            return "cannot read '\(path)': \(reason) (a system error, not a fault in the file)"
        case .resamplingFailed(let path, let fromRate, let toRate, let reason):
            let subject = path.map { "cannot resample '\($0)'" } ?? "cannot resample audio"
            return "\(subject) from \(fromRate) Hz to \(toRate) Hz: \(reason)"
        case .writeFailed(let path, let reason):
            return "cannot write '\(path)': \(reason)"
        case .nonFiniteSample(let path, let frame):
            return "cannot read '\(path)': sample frame \(frame) is NaN or infinite, so the file is damaged "
                + "(re-export or re-record it)"
        }
    }
}
