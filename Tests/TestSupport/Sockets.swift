import Foundation
import Server

#if canImport(Glibc)
import Glibc
#endif

/// A Unix stream socket bound to `path`, and listening when `backlog` is given: as systemd holds one for
/// socket activation, a scripted daemon serves a client, or a crashed daemon leaves one behind (bound,
/// not listening). The caller closes it.
public func boundSocket(at path: String, listeningWithBacklog backlog: Int32? = nil) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("cannot make a stream socket: \(String(cString: strerror(errno)))") }
    guard var address = UnixAddress(path: path), address.withSockaddr({ bind(fd, $0, $1) }) == 0,
          backlog.map({ listen(fd, $0) == 0 }) ?? true else {
        let reason = String(cString: strerror(errno))
        close(fd)
        throw TestFailure("cannot bind or listen on \(path): \(reason)")
    }
    return fd
}
