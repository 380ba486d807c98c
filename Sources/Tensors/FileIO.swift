import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Whole-file reads and crash-safe writes, shared by the model files (Model) and the language models
// (Decoding); both wrap the reason into their own typed error, which names the file.

/// Why a file could not be read or written: the system's reason, without the path.
public struct FileIOError: Error, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

private func errnoText() -> String { String(cString: strerror(errno)) }

/// Opens `path` for reading if it is a regular file: its descriptor (the caller closes it) and size.
///
/// Opened with O_NONBLOCK so that a FIFO (which would otherwise wait for a writer, possibly forever)
/// reaches the regular-file check at once; on a regular file the flag has no effect.
private func openRegularFile(_ path: String) throws(FileIOError) -> (fd: Int32, size: Int) {
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw FileIOError(errnoText()) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { let reason = errnoText(); close(fd); throw FileIOError(reason) }
    guard (st.st_mode & S_IFMT) == S_IFREG else { close(fd); throw FileIOError("not a regular file") }
    return (fd, Int(st.st_size))
}

/// Reads a whole regular file with POSIX calls (models and language models are tens of megabytes, so
/// one buffer is fine).
public func readRegularFile(_ path: String, maxBytes: Int = 4 << 30) throws(FileIOError) -> [UInt8] {
    let (fd, size) = try openRegularFile(path)
    defer { close(fd) }
    // One buffer of the file's size: a huge file given by mistake must be an error, not a trap.
    guard size <= maxBytes else { throw FileIOError("it is \(size) bytes, more than the \(maxBytes >> 20) MiB this reads") }
    var failure: String?
    let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
        var done = 0
        while done < size {
            let r = Glibc.read(fd, buffer.baseAddress! + done, size - done)
            if r < 0 {
                if errno == EINTR { continue }
                failure = errnoText(); break
            }
            if r == 0 { break }  // shrank while reading; decode reports the truncation
            done += r
        }
        initialized = done
    }
    if let failure { throw FileIOError(failure) }
    return bytes
}

/// The first `count` bytes of a regular file (fewer if it is shorter) and the file's size, to check a
/// format's header before reading the whole file: a recording given where a model belongs is refused
/// without reading it all.
public func readRegularFilePrefix(_ path: String, count: Int) throws(FileIOError) -> (prefix: [UInt8], size: Int) {
    let (fd, size) = try openRegularFile(path)
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let r = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, count - done) }
        if r < 0 {
            if errno == EINTR { continue }
            throw FileIOError(errnoText())
        }
        if r == 0 { break }
        done += r
    }
    return (Array(bytes[..<done]), size)
}

/// The temporary files that `writeFileAtomically` calls killed mid-write left in `folder`
/// (".NAME.tmp-PID-N"), with the PID of the process that wrote each.
public func atomicWriteTemporaries(in folder: String) -> [(path: String, writer: pid_t)] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
    return names.compactMap { name in
        guard name.hasPrefix("."), let range = name.range(of: ".tmp-", options: .backwards) else { return nil }
        let tail = name[range.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
        guard tail.count == 2, tail.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let pid = pid_t(tail[0]), UInt32(tail[1]) != nil else { return nil }
        return ((folder.hasSuffix("/") ? folder : folder + "/") + name, pid)
    }
}

/// Writes `bytes` to `path` so that a crash or power cut leaves either the old file or the complete
/// new one, never a half-written model: write a temporary file in the same directory (rename is only
/// atomic within one file system), fsync it, rename it over `path`, then fsync the directory so the
/// rename itself is durable.
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws(FileIOError) {
    let slash = path.lastIndex(of: "/")
    let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
    let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
    let temp = (directory == "/" ? "" : directory) + "/.\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FileIOError("cannot create \(temp): \(errnoText())") }
    var failure: String?
    // A replaced file keeps its permissions (a model made private with chmod 600 must not become
    // readable by others because it was adapted again).
    var old = stat()
    if stat(path, &old) == 0, (old.st_mode & S_IFMT) == S_IFREG, fchmod(fd, old.st_mode & 0o7777) != 0 {
        failure = "cannot give \(temp) the permissions of \(path): \(errnoText())"
    }
    if failure == nil { bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let w = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
            if w < 0 {
                if errno == EINTR { continue }
                failure = "write failed: \(errnoText())"; return
            }
            done += w
        }
    } }
    if failure == nil, fsync(fd) != 0 { failure = "fsync failed: \(errnoText())" }
    if close(fd) != 0, failure == nil { failure = "close failed: \(errnoText())" }
    if failure == nil, rename(temp, path) != 0 { failure = "rename failed: \(errnoText())" }
    if let failure {
        unlink(temp)
        throw FileIOError(failure)
    }
    let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 {
        // The data is already in place; a failing directory fsync (some file systems refuse it) only
        // weakens durability, so it is not an error.
        _ = fsync(dfd)
        close(dfd)
    }
}
