import CSndFile
import Foundation

/// libsndfile reports why `sf_open` failed through process-wide state (`sf_error(NULL)`,
/// `sf_strerror(NULL)`), so two threads opening bad files at once could swap their messages. Opens are
/// serialised behind this one lock (writers' opens too); using an opened file needs no lock (its errors live in its handle).
let sndfileOpenLock = NSLock()

/// An open libsndfile handle for reading; owns the `SNDFILE*` and closes it on deinit. C pointers stay
/// inside this module.
final class SoundFileReader {
    let path: String
    let handle: OpaquePointer
    let info: SF_INFO
    /// Size of the file on disk, for messages about empty files and to bound what the header claims;
    /// -1 for a stream (`init(descriptor:name:)`), whose size is not known until it ends.
    let byteCount: Int64

    init(path: String) throws(AudioError) {
        self.path = path
        // Checked before libsndfile opens the path: its plain open() would wait forever on a FIFO with
        // no writer. (Opening by descriptor would close the gap between check and open, but libsndfile
        // then loses the file name, which it needs to recognise MP3 files without an ID3 tag.)
        byteCount = try Self.checkReadableRegularFile(path)

        var info = SF_INFO()
        var failure: (code: Int32, systemError: Int32, text: String)?
        let opened: OpaquePointer? = sndfileOpenLock.withLock {
            let handle = sf_open(path, Int32(SFM_READ), &info)
            if handle == nil {
                failure = (sf_error(nil), errno, String(cString: sf_strerror(nil)))
            }
            return handle
        }
        guard let opened else {
            // The file was readable a moment ago; a permission change in between is the one system error
            // worth its own message.
            if let failure, failure.code == Int32(SF_ERR_SYSTEM) {
                if failure.systemError == EACCES || failure.systemError == EPERM { throw .permissionDenied(path: path) }
                if failure.systemError == ENOENT || failure.systemError == ENOTDIR { throw .fileNotFound(path: path) }
                // Too many open files, no memory, an I/O error: the system's fault, not the format's.
                if failure.systemError != 0 { throw .systemError(path: path, reason: String(cString: strerror(failure.systemError))) }
            }
            throw .unsupportedFormat(path: path, libsndfile: failure?.text ?? "unknown error")
        }
        handle = opened
        self.info = info
    }

    /// Reads an open descriptor (a pipe) as its bytes arrive, never seeking: libsndfile decodes WAV, AU
    /// and Ogg this way, FLAC not (it then fails here or part-way). The reader decodes a duplicate of
    /// `descriptor`; the caller still owns and closes its own. Messages call the stream `name`.
    init(descriptor: Int32, name: String) throws(AudioError) {
        path = name
        byteCount = -1
        // libsndfile gets a copy of the descriptor, and closes it: when sf_open_fd fails, libsndfile 1.2
        // closes the descriptor it was given even when told not to, and the caller's later close of the
        // same number could then close a file another thread had opened in between.
        let copy = dup(descriptor)
        guard copy >= 0 else { throw .systemError(path: name, reason: String(cString: strerror(errno))) }
        _ = fcntl(copy, F_SETFD, FD_CLOEXEC)
        var info = SF_INFO()
        var failure = ""
        let opened: OpaquePointer? = sndfileOpenLock.withLock {
            let handle = sf_open_fd(copy, Int32(SFM_READ), &info, 1)
            if handle == nil { failure = String(cString: sf_strerror(nil)) }
            return handle
        }
        guard let opened else { throw .unsupportedFormat(path: name, libsndfile: failure) }
        handle = opened
        self.info = info
    }

    deinit { sf_close(handle) }

    /// Whether this reads a stream (`init(descriptor:name:)`) rather than a file on disk.
    var isStream: Bool { byteCount < 0 }

    var sampleRate: Int { Int(info.samplerate) }
    var channels: Int { Int(info.channels) }
    /// Frames the header declares; nil where the container cannot know before decoding (libsndfile then
    /// reports SF_COUNT_MAX), and in a stream whose header holds a streaming writer's "length unknown"
    /// placeholder (see `headerPromisedFrames`), which such a stream is read to its end regardless of.
    var declaredFrames: Int64? {
        guard info.frames != Int64.max, info.frames >= 0 else { return nil }
        if isStream, let bytesPerFrame {
            let bytes = info.frames.multipliedReportingOverflow(by: Int64(bytesPerFrame))
            if bytes.overflow || bytes.partialValue >= Self.unknownLengthPlaceholder { return nil }
        }
        return info.frames
    }

    /// Data sizes from here up are the "length unknown" placeholders streaming writers put in a header:
    /// arecord 0x80000000, ffmpeg 0xFFFFFFFF, sox to a pipe 0x7FFFF000 (WAV) or 0x7F000008 (AIFF).
    static let unknownLengthPlaceholder: Int64 = 0x7F00_0000

    /// Whether `declaredFrames` is a promise rather than a guess. For MP3 without a Xing/Info header
    /// mpg123 extrapolates the length from the file size and the first frame's bitrate, so a VBR file can
    /// decode to fewer frames without anything being wrong.
    var declaredFramesAreExact: Bool {
        (info.format & Int32(SF_FORMAT_TYPEMASK)) != Int32(SF_FORMAT_MPEG)
    }

    /// libsndfile's parse log for this file: the chunk sizes it found and what it corrected.
    var parseLog: String {
        var buffer = [CChar](repeating: 0, count: 16384)
        let count = buffer.withUnsafeMutableBufferPointer { raw in
            sf_command(handle, Int32(SFC_GET_LOG_INFO), raw.baseAddress, Int32(raw.count))
        }
        guard count > 0 else { return "" }
        return String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var errorText: String? {
        sf_error(handle) == 0 ? nil : String(cString: sf_strerror(handle))
    }

    func formatName(_ format: Int32) -> String {
        var formatInfo = SF_FORMAT_INFO()
        formatInfo.format = format
        guard sf_command(nil, Int32(SFC_GET_FORMAT_INFO), &formatInfo, Int32(MemoryLayout<SF_FORMAT_INFO>.size)) == 0,
              let name = formatInfo.name else { return "unknown" }
        return String(cString: name)
    }

    var majorFormatName: String { formatName(info.format & Int32(SF_FORMAT_TYPEMASK)) }
    var encodingName: String { formatName(info.format & Int32(SF_FORMAT_SUBMASK)) }

    /// WAV and AIFF readers clamp a data chunk that runs past the end of the file and only say so in the
    /// parse log ("data : 32000 (should be 15978)"); `info.frames` then already counts just what is there.
    /// Returns the frame count the header promised when that happened.
    /// Nil for a stream: its length is only known at its end (`AudioStreamReader` checks it there).
    func headerPromisedFrames() -> Int64? {
        guard !isStream else { return nil }
        for line in parseLog.split(separator: "\n") {
            let trimmed = line.drop(while: { $0 == " " })
            guard trimmed.hasPrefix("data :") || trimmed.hasPrefix("SSND :"),
                  let open = trimmed.range(of: "(should be ") else { continue }
            let numbers = trimmed.split(whereSeparator: { !$0.isNumber }).compactMap { Int64($0) }
            guard numbers.count >= 2, open.lowerBound > trimmed.startIndex else { continue }
            // An AIFF SSND chunk starts with 8 bytes (offset, block size) before the samples.
            let chunkOverhead: Int64 = trimmed.hasPrefix("SSND") ? 8 : 0
            let declaredBytes = numbers[0] - chunkOverhead, presentBytes = numbers[1] - chunkOverhead
            // A streaming writer's "length unknown" placeholder (`unknownLengthPlaceholder`) does not
            // make a file truncated. (A real data chunk of 2 GB or more that lost its end is then read
            // as far as it goes, unflagged.)
            guard declaredBytes > presentBytes, declaredBytes < Self.unknownLengthPlaceholder else { return nil }
            if let bytesPerFrame = bytesPerFrame {
                return declaredBytes / Int64(bytesPerFrame)
            }
            guard presentBytes > 0 else { return nil }
            return Int64((Double(info.frames) * Double(declaredBytes) / Double(presentBytes)).rounded())
        }
        return nil
    }

    /// Most frames the file's size allows: exact for fixed-size encodings; for compressed ones 16 frames
    /// per byte, beyond any real codec's ratio on anything but digital silence (where the output
    /// array simply grows). Bounds the memory reserved on the header's word.
    var maximumFrames: Int64 {
        if let bytesPerFrame { return byteCount / Int64(bytesPerFrame) }
        return byteCount.multipliedReportingOverflow(by: 16).overflow ? .max : byteCount * 16
    }

    /// Bytes per interleaved frame for fixed-size encodings; nil for compressed ones.
    private var bytesPerFrame: Int? {
        let bytesPerSample: Int
        switch info.format & Int32(SF_FORMAT_SUBMASK) {
        case Int32(SF_FORMAT_PCM_S8), Int32(SF_FORMAT_PCM_U8), Int32(SF_FORMAT_ULAW), Int32(SF_FORMAT_ALAW):
            bytesPerSample = 1
        case Int32(SF_FORMAT_PCM_16): bytesPerSample = 2
        case Int32(SF_FORMAT_PCM_24): bytesPerSample = 3
        case Int32(SF_FORMAT_PCM_32), Int32(SF_FORMAT_FLOAT): bytesPerSample = 4
        case Int32(SF_FORMAT_DOUBLE): bytesPerSample = 8
        default: return nil
        }
        return bytesPerSample * channels
    }

    /// Reads up to `frames` interleaved frames as floats in [-1, 1); returns how many it read.
    func readFrames(into buffer: UnsafeMutablePointer<Float>, frames: Int) -> Int {
        Int(sf_readf_float(handle, buffer, Int64(frames)))
    }

    /// Distinguishes "not there", "not a file", "not allowed" and "0 bytes" before libsndfile, whose own
    /// message for all of them is a vague "system error" or "unknown format". Returns the file's size.
    ///
    /// O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, possibly forever; with it
    /// the open returns at once and `fstat` refuses the FIFO (on a regular file it has no effect).
    private static func checkReadableRegularFile(_ path: String) throws(AudioError) -> Int64 {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            switch errno {
            case ENOENT, ENOTDIR: throw .fileNotFound(path: path)
            case EACCES, EPERM: throw .permissionDenied(path: path)
            default: throw .systemError(path: path, reason: String(cString: strerror(errno)))
            }
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw .systemError(path: path, reason: String(cString: strerror(errno)))
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw .notARegularFile(path: path) }
        guard status.st_size > 0 else { throw .empty(path: path, byteCount: 0) }
        return Int64(status.st_size)
    }
}

/// The container formats the installed libsndfile can read, as it names them.
func sndfileMajorFormats() -> [(format: Int32, name: String, fileExtension: String)] {
    var count: Int32 = 0
    sf_command(nil, Int32(SFC_GET_FORMAT_MAJOR_COUNT), &count, Int32(MemoryLayout<Int32>.size))
    var formats: [(Int32, String, String)] = []
    for index in 0..<count {
        var formatInfo = SF_FORMAT_INFO()
        formatInfo.format = index
        guard sf_command(nil, Int32(SFC_GET_FORMAT_MAJOR), &formatInfo,
                         Int32(MemoryLayout<SF_FORMAT_INFO>.size)) == 0 else { continue }
        let name = formatInfo.name.map { String(cString: $0) } ?? "?"
        let ext = formatInfo.extension.map { String(cString: $0) } ?? ""
        formats.append((formatInfo.format, name, ext))
    }
    return formats
}
