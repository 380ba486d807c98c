import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's side of systemd's notification protocol (sd_notify(3)) without libsystemd: one datagram
/// per message to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an abstract name written with a
/// leading '@'). Owns that datagram socket. Without $NOTIFY_SOCKET every call does nothing, so the daemon
/// runs the same under systemd, another supervisor, or a terminal.
final class SystemdNotifier: @unchecked Sendable {
    // `fd` and `address` are set once in init and only read afterwards; sendto on a datagram socket is
    // thread-safe, so no lock is needed.
    private let fd: Int32
    private var address = sockaddr_un()
    private let addressLength: socklen_t
    /// Half the watchdog timeout systemd expects pings within, when it set one for this process.
    let watchdogInterval: Duration?

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        var watchdog: Duration?
        if let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0 {
            // WATCHDOG_PID, when present, says which process the timeout is for (not a child we started).
            let pid = environment["WATCHDOG_PID"].flatMap(Int32.init)
            if pid == nil || pid == getpid() { watchdog = .microseconds(usec / 2) }
        }
        watchdogInterval = watchdog

        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty,
              path.hasPrefix("/") || path.hasPrefix("@") else {
            fd = -1
            addressLength = 0
            return
        }
        var bytes = Array(path.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            fd = -1
            addressLength = 0
            return
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == 0 ? 0 : 1))
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Whether a supervisor listens ($NOTIFY_SOCKET was usable).
    var isActive: Bool { fd >= 0 }

    /// Sends `READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`, `RELOADING=1`... (newline-separated
    /// assignments in one datagram). Returns false when nothing listens or the send failed; systemd's
    /// protocol has no replies, so a failure is only logged by the caller.
    @discardableResult
    func notify(_ message: String) -> Bool {
        guard fd >= 0 else { return false }
        let bytes = Array(message.utf8)
        // A copy: taking `&address` of the shared instance would count as a write from every thread.
        var target = address
        let sent = withUnsafePointer(to: &target) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, addressLength) }
            }
        }
        return sent == bytes.count
    }

    /// A status line for `systemctl status` (one line: newlines would end the assignment).
    func status(_ text: String) {
        notify("STATUS=" + text.replacingOccurrences(of: "\n", with: " "))
    }
}

/// The listening socket systemd passes under socket activation (sd_listen_fds(3)): descriptors from 3 on,
/// announced by $LISTEN_FDS for the process $LISTEN_PID. Returns fd 3 when it is for this process, and
/// removes the variables so that programs the daemon might start do not think the socket is theirs.
func inheritedListeningSocket() -> (fd: Int32, count: Int)? {
    let env = ProcessInfo.processInfo.environment
    defer {
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
    }
    guard let pid = env["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
          let count = env["LISTEN_FDS"].flatMap(Int.init), count >= 1 else { return nil }
    let first: Int32 = 3  // SD_LISTEN_FDS_START
    for fd in first..<(first + Int32(count)) {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }
    return (first, count)
}
