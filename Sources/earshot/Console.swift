import Foundation
import Tensors

#if canImport(Glibc)
import Glibc
#endif

// FileHandle's write(_:) (the one that does not throw) stops the process with a crash and a backtrace on
// any write error: a full disk, /dev/full, a closed descriptor. Every write of the CLI goes through here.

/// The first failed write to standard output (a full disk, a closed descriptor), if any. Writing goes on
/// being tried; commands whose product is standard output check this before exiting 0. Process-wide,
/// as standard output is.
let standardOutputFailure = Locked<String?>(nil)

/// Writes to stdout without buffering surprises (partials are rewritten in place).
func writeOut(_ text: String) {
    do { try FileHandle.standardOutput.write(contentsOf: Data(text.utf8)) } catch {
        standardOutputFailure.withLock { $0 = $0 ?? reason(of: error) }
    }
}

/// One line on stderr, prefixed "earshot: ".
func writeErr(_ text: String) {
    writeErrRaw("earshot: " + text + "\n")
}

/// Text on stderr as given. A failure is dropped: there is nowhere left to report it.
func writeErrRaw(_ text: String) {
    try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
}

/// Why a file operation failed, in the system's words ("No space left on device", "Is a directory")
/// where Foundation's own message is only an error code ("The operation could not be completed. ...").
func reason(of error: Error) -> String {
    let ns = error as NSError
    if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(posix.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if ns.domain == NSCocoaErrorDomain {
        switch ns.code {
        case CocoaError.fileWriteNoPermission.rawValue, CocoaError.fileReadNoPermission.rawValue: return String(cString: strerror(EACCES))
        case CocoaError.fileWriteOutOfSpace.rawValue: return String(cString: strerror(ENOSPC))
        case CocoaError.fileWriteVolumeReadOnly.rawValue: return String(cString: strerror(EROFS))
        default:
            // A folder where the file should go gives only "error 512".
            var isFolder: ObjCBool = false
            if let path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path,
               FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                return "a folder of that name is in the way"
            }
        }
    }
    return ns.localizedDescription
}
