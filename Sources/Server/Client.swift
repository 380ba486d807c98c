import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why talking to the server failed, naming the socket and the reason in words a user can act on.
public enum ClientError: Error, CustomStringConvertible, Equatable, Sendable {
    case connect(path: String, reason: String)
    case send(path: String, reason: String)
    case receive(path: String, reason: String)
    case timedOut(path: String, seconds: Double)
    case protocolViolation(path: String, reason: String)

    public var description: String {
        switch self {
        case .connect(let path, let reason): return "cannot connect to \(path): \(reason)"
        case .send(let path, let reason): return "cannot send to \(path): \(reason)"
        case .receive(let path, let reason): return "cannot read from \(path): \(reason)"
        case .timedOut(let path, let seconds): return "\(path): no answer within \(seconds) s"
        case .protocolViolation(let path, let reason): return "\(path) sent something unexpected: \(reason)"
        }
    }
}

/// A blocking client connection to the server's Unix socket, for the CLI and tests: owns the socket and
/// the bytes received but not yet parsed. One thread at a time (a reader and a writer thread may share it:
/// sending and receiving touch disjoint state).
public final class SocketClient: @unchecked Sendable {
    public let path: String
    public let fd: Int32
    private var decoder = FrameDecoder()
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var closed = false

    /// Connects to the socket at `path`.
    public init(path: String) throws(ClientError) {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .connect(path: path, reason: String(cString: strerror(errno))) }
        guard var address = UnixAddress(path: path) else {
            Glibc.close(fd)
            throw .connect(path: path, reason: "the path is empty or longer than a Unix socket path may be (107 bytes)")
        }
        if address.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
            let code = errno
            Glibc.close(fd)
            // connect() refuses a regular file as it refuses a socket nobody listens on; tell them apart
            // (following a symbolic link, as connect() does).
            var info = stat()
            if code == ECONNREFUSED, stat(path, &info) == 0, info.st_mode & S_IFMT != S_IFSOCK {
                throw .connect(path: path, reason: "not a socket (a regular file or folder): is this earshotd's socket path?")
            }
            throw .connect(path: path, reason: Self.explain(code))
        }
        self.fd = fd
    }

    deinit { close() }

    static func explain(_ code: Int32) -> String {
        switch code {
        case ENOENT: return "no such file - is earshotd running?"
        case ECONNREFUSED: return "connection refused: nothing listens on this socket file (earshotd is not running, or still loading its model)"
        case EACCES, EPERM: return "permission denied - is your user in the socket's group?"
        case ENOTSOCK: return "not a socket"
        default: return String(cString: strerror(code))
        }
    }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    /// Ends the sending direction; the server sees end-of-stream but may still answer.
    public func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    public func send(_ request: ClientRequest) throws(ClientError) {
        try sendRaw(MessageCodec.encode(request))
    }

    public func send(_ message: ClientMessage) throws(ClientError) {
        try send(ClientRequest(message))
    }

    /// Writes bytes as they are (tests use it to send malformed input).
    public func sendRaw(_ bytes: [UInt8]) throws(ClientError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .send(path: path, reason: String(cString: strerror(errno)))
            }
            offset += n
        }
    }

    /// The next message from the server; nil when the server closed the connection. With a timeout,
    /// throws `.timedOut` if nothing complete arrives in time.
    public func receive(timeout: Double? = nil) throws(ClientError) -> ServerReply? {
        guard let line = try receiveLine(timeout: timeout) else { return nil }
        do {
            return try MessageCodec.decodeServer(line: line)
        } catch {
            throw .protocolViolation(path: path, reason: error.description)
        }
    }

    /// The next raw line from the server, without its newline; nil at end of stream.
    public func receiveLine(timeout: Double? = nil) throws(ClientError) -> [UInt8]? {
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        while true {
            do {
                switch try decoder.next() {
                case .line(let line)?: return line
                case .audio?: throw ClientError.protocolViolation(path: path, reason: "an audio frame")
                case nil: break
                }
            } catch let error as ClientError {
                throw error
            } catch {
                throw .protocolViolation(path: path, reason: "\(error)")
            }
            if let deadline {
                let left = deadline.timeIntervalSinceNow
                guard left > 0 else { throw .timedOut(path: path, seconds: timeout!) }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, Int32(min(left * 1000, 1_000_000)) + 1)
                if ready < 0 && errno != EINTR { throw .receive(path: path, reason: String(cString: strerror(errno))) }
                if ready <= 0 { continue }
            }
            let n = readBuffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET { return nil }
                throw .receive(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 {
                if decoder.bufferedCount > 0 {
                    throw .protocolViolation(path: path, reason: "the connection ended inside a message")
                }
                return nil
            }
            decoder.append(readBuffer[0..<n])
        }
    }
}
