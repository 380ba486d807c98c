import Foundation
import Logging
import NIOCore
import NIOPosix
import Recognizer
import Tensors

#if canImport(Glibc)
import Glibc
#endif

/// Tunables of the socket server; the defaults suit a desktop daemon.
public struct ServerConfiguration: Sendable {
    /// Reported in `hello` as the `server` field.
    public var serverName = "earshotd"
    public var maxLineBytes = ProtocolInfo.defaultMaxLineBytes
    public var maxFrameBytes = ProtocolInfo.defaultMaxFrameBytes
    /// Bounds of each client's queue of events waiting for its socket (see `OutboundQueue`).
    public var clientQueueEvents = 1024
    public var clientQueueBytes = 1 << 20
    /// How long a client being closed (too slow, shutdown) gets to take its last bytes before the socket
    /// is closed regardless.
    public var closeGraceSeconds = 1.0
    /// How long a shutdown gives each client session to recognise its queued audio (up to the backlog
    /// limit, minutes of audio at a low sample rate) before it ends without its last results: the
    /// microphone's 15 s, this and the grace above stay within systemd's `TimeoutStopSec=30`.
    public var shutdownFlushSeconds = 10.0
    /// Permissions of a socket file this server binds (the daemon's users and group may connect).
    public var socketMode: UInt32 = 0o660
    /// Group given to a socket file this server binds (by name), nil to keep the process's group.
    public var socketGroup: String?
    /// Event loop threads for socket I/O (recognition never runs on them).
    public var eventLoopThreads = 1
    /// Audio bytes a session may have waiting for recognition before the server stops reading from
    /// that client (TCP-style backpressure instead of unbounded memory).
    public var sessionBacklogBytes = 4 << 20
    /// NIO's write-buffer watermarks: above `high` a client counts as not writable and events queue in
    /// its bounded `OutboundQueue` instead.
    public var writeBufferLow = 32 * 1024
    public var writeBufferHigh = 64 * 1024
    /// Connections served at once; one more gets `too_many_clients` instead of `hello`. Each may hold
    /// an unfinished frame (up to `maxFrameBytes`) and a session backlog, so this bounds the memory
    /// local clients can make the daemon hold.
    public var maxClients = 64
    /// How long an unfinished message (a frame header and part of its payload, a line without its
    /// newline) may wait for its next byte before the connection is closed with `frame_timeout`: a
    /// client that stalls mid-frame would otherwise hold up to a frame's bytes for ever. Time while
    /// the server itself has paused reading (the session backlog) does not count.
    public var frameStallSeconds = 30.0

    public init() {}
}

/// What the daemon knows that the server reports in `status`.
public struct DaemonStatus: Sendable, Equatable {
    public var capture: CaptureSummary?
    /// Seconds of microphone audio recognised, and CPU seconds spent on it.
    public var microphoneAudioSeconds: Double
    public var microphoneProcessingSeconds: Double

    public init(capture: CaptureSummary? = nil, microphoneAudioSeconds: Double = 0, microphoneProcessingSeconds: Double = 0) {
        self.capture = capture
        self.microphoneAudioSeconds = microphoneAudioSeconds
        self.microphoneProcessingSeconds = microphoneProcessingSeconds
    }
}

/// Callbacks the daemon installs.
public struct ServerHooks: Sendable {
    /// Called for every `status` request, on an event loop: must be quick (read counters).
    public var status: (@Sendable () -> DaemonStatus)?
    /// Called for `reload` (the client's model path or nil for "the configured one") off the event loop;
    /// returns the engine new sessions use. The daemon swaps its microphone recogniser inside it. Throwing
    /// leaves the current engine in service and sends `reload_failed` with the error's description.
    public var reload: (@Sendable (_ modelPath: String?) throws -> any TranscriptionEngine)?

    public init(status: (@Sendable () -> DaemonStatus)? = nil,
                reload: (@Sendable (_ modelPath: String?) throws -> any TranscriptionEngine)? = nil) {
        self.status = status
        self.reload = reload
    }
}

/// Why a reload did not put a new model in service; the previous one serves on.
public enum ReloadError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The server was started without a reload hook.
    case unavailable
    /// The hook failed; `reason` is its error's description (it names the file).
    case failed(reason: String)

    public var description: String {
        switch self {
        case .unavailable: return "this server was started without a reload handler"
        case .failed(let reason): return reason
        }
    }
}

/// Why the server could not start listening.
public enum ServerError: Error, CustomStringConvertible, Equatable, Sendable {
    case alreadyStarted
    case socketInUse(path: String)
    case notASocket(path: String)
    case bindFailed(path: String, reason: String)
    case permissions(path: String, reason: String)
    case unknownGroup(name: String)
    case adoptFailed(fd: Int32, reason: String)

    public var description: String {
        switch self {
        case .alreadyStarted:
            return "the server is already listening"
        case .socketInUse(let path):
            return "\(path): another server is already listening on this socket (stop it first, or choose another path)"
        case .notASocket(let path):
            return "\(path): the path exists and is not a socket; refusing to replace it (remove it or choose another path)"
        case .bindFailed(let path, let reason):
            return "cannot listen on \(path): \(reason)"
        case .permissions(let path, let reason):
            return "cannot set the permissions of \(path): \(reason)"
        case .unknownGroup(let name):
            return "socket group \"\(name)\" does not exist (create it or change socket_group)"
        case .adoptFailed(let fd, let reason):
            return "cannot use the inherited listening socket (fd \(fd)): \(reason)"
        }
    }
}

/// The Unix-socket server: owns the listening channel, the event loops, every client connection and the
/// counters `status` reports. Thread-safe; the daemon calls `broadcast` from its recognition thread.
///
/// Lifecycle: `init`, `start(path:)` or `start(listeningFD:)`, then `broadcast` as microphone events
/// arrive, and `shutdown(flushingSessions:)` once.
public final class EarshotServer: Sendable {
    public let configuration: ServerConfiguration
    let hooks: ServerHooks
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let state: Locked<ServerState>
    /// Held while a reload loads its model (seconds), so reloads run one at a time; never taken with
    /// `state`'s lock held.
    let reloadLock = NSLock()
    let startTime = DispatchTime.now()
    /// Work on session queues and reload handlers that will still hop back to an event loop; shutdown
    /// waits for it before stopping the loops.
    let pendingWork = DispatchGroup()

    public init(engine: any TranscriptionEngine, configuration: ServerConfiguration = .init(),
                hooks: ServerHooks = .init(), logger: Logger = Logger(label: "earshot.server")) {
        self.configuration = configuration
        self.hooks = hooks
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoopThreads))
        self.state = Locked(ServerState(engine: engine))
    }

    /// The engine new sessions use (replaced by `reload` or `replaceEngine`).
    public var engine: any TranscriptionEngine { state.withLock { $0.engine } }

    /// The engine and how many times it has been replaced; sessions compare the generation between
    /// frames to notice a reload.
    var engineSnapshot: (engine: any TranscriptionEngine, generation: Int) {
        state.withLock { ($0.engine, $0.engineGeneration) }
    }

    /// Makes new sessions (and `hello`/`status`) use `engine`; running sessions that can switch models
    /// (`TranscriptionSession.adopt`) do so at their next utterance boundary, the others finish with the
    /// old one. Reloads should go through `reload(modelPath:)`, which serialises them.
    public func replaceEngine(_ engine: any TranscriptionEngine) {
        state.withLock {
            $0.engine = engine
            $0.engineGeneration += 1
        }
    }

    /// Runs the reload hook and puts its engine in service, one reload at a time (the socket's `reload`
    /// and the daemon's SIGHUP both come here, so the last model loaded is the one serving: two reloads
    /// racing could otherwise leave the microphone on one model and the sessions on another). Blocks
    /// while the model loads: call it off the event loops. Throws `ReloadError`.
    public func reload(modelPath: String?) throws(ReloadError) -> any TranscriptionEngine {
        guard let hook = hooks.reload else { throw .unavailable }
        reloadLock.lock()
        defer { reloadLock.unlock() }
        // Reloads queued behind this lock (one per connection, but many connections) would each load a
        // model that no session will use, and shutdown waits for them: once it has begun they end here.
        guard !state.withLock({ $0.shuttingDown || $0.reloadsRefused }) else { throw .failed(reason: "the server is shutting down") }
        let engine: any TranscriptionEngine
        do {
            engine = try hook(modelPath)
        } catch {
            throw .failed(reason: "\(error)")
        }
        replaceEngine(engine)
        return engine
    }

    /// From now on reloads fail at once: for a daemon that has begun stopping before `shutdown` (its
    /// microphone finishing), where a model loaded now would serve nobody.
    public func refuseReloads() { state.withLock { $0.reloadsRefused = true } }

    /// The socket file this server bound, nil for an adopted descriptor.
    public var socketPath: String? { state.withLock { $0.ownedSocketPath } }

    // MARK: starting

    /// Binds a Unix domain socket at `path` and starts accepting. An existing socket file nobody accepts
    /// on (left by a crash) is removed; a live one, or a path that is not a socket, is refused. The file
    /// gets `configuration.socketMode` and, if set, `configuration.socketGroup`.
    public func start(path: String) async throws(ServerError) {
        try checkNotStarted()
        switch SocketProbe.probe(path: path) {
        case .absent: break
        case .notSocket: throw .notASocket(path: path)
        case .live: throw .socketInUse(path: path)
        case .stale:
            logger.info("removing stale socket file", metadata: ["path": "\(path)"])
            if unlink(path) != 0 && errno != ENOENT {
                throw .bindFailed(path: path, reason: "cannot remove the stale socket file: \(String(cString: strerror(errno)))")
            }
        }
        // Bound here rather than by NIO, whose listener removes whatever socket file is at its path when
        // it closes: by then that may be a new instance's (see `shutdown`).
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .bindFailed(path: path, reason: "socket: \(String(cString: strerror(errno)))") }
        guard var address = UnixAddress(path: path) else {
            close(fd)
            throw .bindFailed(path: path, reason: "the path is longer than a Unix socket address holds (107 bytes)")
        }
        guard address.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .bindFailed(path: path, reason: reason)
        }
        // The socket file is created with the umask's permissions; the window until chmod is closed only by
        // the directory's own permissions (the systemd unit's RuntimeDirectoryMode=0750), as documented.
        do throws(ServerError) {
            guard listen(fd, Self.listenBacklog) == 0 else { throw .bindFailed(path: path, reason: "listen: \(String(cString: strerror(errno)))") }
            try applyPermissions(path: path)
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
        let channel: Channel
        do {
            channel = try await bootstrap().withBoundSocket(fd).get()
        } catch {
            // Not closed here: NIO closes it on a failed registration (a failure before that, in setting
            // it non-blocking, would leak it; that is not worth a double close).
            unlink(path)
            throw .bindFailed(path: path, reason: "\(error)")
        }
        Self.restoreBacklog(fd)
        let identity = SocketFileIdentity(path: path)
        state.withLock {
            $0.serverChannel = channel
            $0.ownedSocketPath = path
            $0.ownedSocketIdentity = identity
        }
        logger.info("listening", metadata: ["path": "\(path)"])
    }

    /// Accepts on an already bound and listening socket, e.g. fd 3 from systemd socket activation
    /// (the daemon checks LISTEN_FDS/LISTEN_PID). The socket file's permissions are systemd's business
    /// (SocketMode=, SocketGroup=) and the file is left alone at shutdown.
    public func start(listeningFD fd: Int32) async throws(ServerError) {
        try checkNotStarted()
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw .adoptFailed(fd: fd, reason: "not a socket (\(String(cString: strerror(errno))))")
        }
        guard type == Int32(SOCK_STREAM.rawValue) else {
            throw .adoptFailed(fd: fd, reason: "not a stream socket (ListenStream= in the .socket unit)")
        }
        let channel: Channel
        do {
            channel = try await bootstrap().withBoundSocket(fd).get()
        } catch {
            throw .adoptFailed(fd: fd, reason: "\(error)")
        }
        Self.restoreBacklog(fd)
        state.withLock { $0.serverChannel = channel }
        logger.info("listening on inherited socket", metadata: ["fd": "\(fd)"])
    }

    /// The listen queue: clients connecting at once (a burst of `earshot transcribe`-like scripts).
    static let listenBacklog: Int32 = 256

    /// NIO listens again, with its own backlog of 128, on a socket it adopts: the queue is put back
    /// (systemd's `Backlog=` in earshotd.socket is the same 256).
    private static func restoreBacklog(_ fd: Int32) {
        _ = listen(fd, listenBacklog)
    }

    private func checkNotStarted() throws(ServerError) {
        let started = state.withLock { $0.serverChannel != nil || $0.shuttingDown }
        if started { throw .alreadyStarted }
    }

    private func bootstrap() -> ServerBootstrap {
        let config = configuration
        // No backlog option: NIO applies it only when it binds itself (see `restoreBacklog`).
        return ServerBootstrap(group: group)
            // A client that half-closes after its last request (a pipe into socat) still gets the answers.
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.writeBufferWaterMark,
                                value: .init(low: config.writeBufferLow, high: config.writeBufferHigh))
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(server: self))
                }
            }
    }

    private func applyPermissions(path: String) throws(ServerError) {
        if chmod(path, mode_t(configuration.socketMode)) != 0 {
            throw .permissions(path: path, reason: "chmod: \(String(cString: strerror(errno)))")
        }
        if let name = configuration.socketGroup {
            guard let entry = getgrnam(name) else { throw .unknownGroup(name: name) }
            if chown(path, uid_t.max, entry.pointee.gr_gid) != 0 {
                throw .permissions(path: path, reason: "chown to group \(name): \(String(cString: strerror(errno)))")
            }
        }
    }

    // MARK: microphone events

    /// Sends microphone events to every subscriber. Never blocks on clients: each event is encoded once
    /// and handed to each subscriber's event loop, where its bounded queue applies the slow-client policy.
    /// Call it from the recognition thread, in order.
    public func broadcast(_ events: [RecognitionEvent]) {
        guard !events.isEmpty else { return }
        let subscribers = state.withLock { $0.subscribers() }
        guard !subscribers.isEmpty else { return }
        let encoded = events.map { event -> EncodedEvent in
            let message = EventSource.microphone.message(for: event)
            var isPartial = false
            if case .partial = event { isPartial = true }
            return EncodedEvent(bytes: ByteBuffer(string: MessageCodec.encodeLine(ServerReply(message))),
                                isPartial: isPartial)
        }
        for subscriber in subscribers {
            let handler = subscriber.handler
            subscriber.eventLoop.execute { handler.value.deliverBroadcast(encoded) }
        }
    }

    // MARK: status

    /// What `status` answers now.
    public func status() -> StatusReport {
        let daemon = hooks.status?() ?? DaemonStatus()
        let uptime = Double(DispatchTime.now().uptimeNanoseconds - startTime.uptimeNanoseconds) / 1e9
        return state.withLock { s in
            let audio = s.stats.sessionAudioSeconds + daemon.microphoneAudioSeconds
            let cpu = s.stats.sessionProcessingSeconds + daemon.microphoneProcessingSeconds
            return StatusReport(uptime: uptime, audioSeconds: audio, realTimeFactor: audio > 0 ? cpu / audio : 0,
                                sessions: s.stats.activeSessions, sessionsTotal: s.stats.sessionsTotal,
                                subscribers: s.connections.values.filter(\.subscribed).count,
                                clients: s.connections.count, droppedEvents: s.stats.droppedEvents,
                                slowClientsDisconnected: s.stats.slowClientsDisconnected, capture: daemon.capture,
                                model: s.engine.summary)
        }
    }

    // MARK: shutdown

    /// Stops accepting, then ends every connection: with `flushingSessions`, each running session is
    /// finished first and its remaining finals and `stopped` are sent; every client then gets
    /// `error shutting_down` and is closed (waiting at most `closeGraceSeconds` for a client to read).
    /// Removes the socket file this server bound. Call once.
    public func shutdown(flushingSessions: Bool = true) async {
        let (channel, connections, path, identity) = state.withLock { s -> (Channel?, [ConnectionRef], String?, SocketFileIdentity?) in
            s.shuttingDown = true
            let result = (s.serverChannel, Array(s.connections.values), s.ownedSocketPath, s.ownedSocketIdentity)
            s.serverChannel = nil
            return result
        }
        // The file goes before the listener closes: once it is closed, a new instance may find the file
        // stale, replace it with its own, and this one would then remove the new instance's socket. And
        // only our own file: one that replaced it meanwhile is left alone.
        if let path, let identity, SocketFileIdentity(path: path) == identity { unlink(path) }
        try? await channel?.close().get()
        var closed: [EventLoopFuture<Void>] = []
        for connection in connections {
            let handler = connection.handler
            closed.append(connection.eventLoop.flatSubmit { handler.value.shutdown(flushing: flushingSessions) })
        }
        for future in closed { try? await future.get() }
        let work = pendingWork
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            work.notify(queue: .global()) { done.resume() }
        }
        try? await group.shutdownGracefully()
        logger.info("server stopped")
    }

    // MARK: bookkeeping for connections

    enum Admission { case admitted, shuttingDown, full }

    func register(_ ref: ConnectionRef) -> Admission {
        state.withLock { s in
            guard !s.shuttingDown else { return .shuttingDown }
            guard s.connections.count < configuration.maxClients else { return .full }
            s.connections[ref.id] = ref
            return .admitted
        }
    }

    func unregister(_ id: Int) {
        _ = state.withLock { $0.connections.removeValue(forKey: id) }
    }

    func setSubscription(_ id: Int, subscribed: Bool) {
        state.withLock { $0.connections[id]?.subscribed = subscribed }
    }

    func nextConnectionID() -> Int { state.withLock { s in s.nextID += 1; return s.nextID } }

    func sessionStarted() -> Int {
        state.withLock { s in
            s.nextSessionID += 1
            s.stats.activeSessions += 1
            s.stats.sessionsTotal += 1
            return s.nextSessionID
        }
    }

    func sessionEnded() { state.withLock { $0.stats.activeSessions -= 1 } }

    func addProcessing(audioSeconds: Double, cpuSeconds: Double) {
        state.withLock {
            $0.stats.sessionAudioSeconds += audioSeconds
            $0.stats.sessionProcessingSeconds += cpuSeconds
        }
    }

    func countDropped(_ n: Int) { state.withLock { $0.stats.droppedEvents += n } }
    func countFrame(skipped: Bool, bytes: Int) {
        state.withLock {
            if skipped {
                $0.stats.framesSkipped += 1
                $0.stats.bytesSkipped += bytes
            } else {
                $0.stats.framesProcessed += 1
            }
        }
    }

    func countReadPause() { state.withLock { $0.stats.readPauses += 1 } }
    var statistics: ServerStats { state.withLock { $0.stats } }
    func countSlowDisconnect() { state.withLock { $0.stats.slowClientsDisconnected += 1 } }

    /// Counts a connection refused for `maxClients` and logs it, at most once every ten seconds (a client
    /// that retries in a loop must not flood the journal), with the number refused since the last line.
    func countRefusedClient() {
        let now = DispatchTime.now()
        let unlogged: Int? = state.withLock { s in
            s.stats.clientsRefused += 1
            s.stats.clientsRefusedUnlogged += 1
            if let last = s.stats.lastRefusalLogged, now.uptimeNanoseconds - last.uptimeNanoseconds < 10_000_000_000 { return nil }
            s.stats.lastRefusalLogged = now
            defer { s.stats.clientsRefusedUnlogged = 0 }
            return s.stats.clientsRefusedUnlogged
        }
        if let unlogged {
            logger.warning("refusing clients: the server already serves its maximum (max_clients)",
                           metadata: ["max_clients": "\(configuration.maxClients)", "refused": "\(unlogged)"])
        }
    }

    func hello() -> Hello {
        let engine = self.engine
        var capabilities = ["subscribe", "session", "status", "ping"]
        if hooks.reload != nil { capabilities.append("reload") }
        return Hello(server: configuration.serverName, capabilities: capabilities, sampleRate: engine.sampleRate,
                     maxLineBytes: configuration.maxLineBytes, maxFrameBytes: configuration.maxFrameBytes,
                     model: engine.summary)
    }
}

/// One event encoded once for all subscribers.
struct EncodedEvent: Sendable {
    var bytes: ByteBuffer
    var isPartial: Bool
}

/// What the server knows about a connection outside its event loop.
struct ConnectionRef: Sendable {
    let id: Int
    let eventLoop: any EventLoop
    let handler: NIOLoopBound<ConnectionHandler>
    var subscribed = false
}

struct ServerStats {
    var sessionAudioSeconds = 0.0
    var sessionProcessingSeconds = 0.0
    var activeSessions = 0
    var sessionsTotal = 0
    var droppedEvents = 0
    var slowClientsDisconnected = 0
    /// Times a session's backlog paused reading from its client (for tests and debugging).
    var readPauses = 0
    /// Audio frames (and their bytes) recognised for sessions, and those skipped because their client had
    /// gone before they were reached (for tests and debugging).
    var framesProcessed = 0
    var framesSkipped = 0
    var bytesSkipped = 0
    /// Connections refused for `maxClients`, and how many of them the log has not mentioned yet.
    var clientsRefused = 0
    var clientsRefusedUnlogged = 0
    var lastRefusalLogged: DispatchTime?
}

/// The server's shared mutable state, behind `EarshotServer.state`'s lock.
struct ServerState {
    var engine: any TranscriptionEngine
    var connections: [Int: ConnectionRef] = [:]
    var serverChannel: Channel?
    var ownedSocketPath: String?
    var ownedSocketIdentity: SocketFileIdentity?
    var shuttingDown = false
    var reloadsRefused = false
    var nextID = 0
    var nextSessionID = 0
    /// Incremented by every `replaceEngine`.
    var engineGeneration = 0
    var stats = ServerStats()

    func subscribers() -> [ConnectionRef] { connections.values.filter(\.subscribed) }
}

/// Which file a path names, to tell the socket file this server bound from one that replaced it. The
/// inode alone does not: a file system reuses a freed inode at once, so the change time is part of it.
struct SocketFileIdentity: Equatable {
    let device: UInt64
    let inode: UInt64
    let changed: Int
    let changedNanoseconds: Int

    init?(path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        changed = info.st_ctim.tv_sec
        changedNanoseconds = info.st_ctim.tv_nsec
    }
}

/// What is at a socket path before binding.
enum SocketProbe: Equatable {
    case absent, notSocket, stale, live

    static func probe(path: String) -> SocketProbe {
        var info = stat()
        guard lstat(path, &info) == 0 else { return .absent }
        guard info.st_mode & S_IFMT == S_IFSOCK else { return .notSocket }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .live }  // cannot tell: refuse rather than delete a live socket
        defer { close(fd) }
        guard var address = UnixAddress(path: path) else { return .live }
        let result = address.withSockaddr { connect(fd, $0, $1) }
        if result == 0 { return .live }
        // ECONNREFUSED: a socket file with no listener behind it (the server died).
        return errno == ECONNREFUSED ? .stale : .live
    }
}

/// A `sockaddr_un` for a path, for the plain POSIX calls outside NIO (probing, the CLI client).
public struct UnixAddress {
    private var storage = sockaddr_un()

    public init?(path: String) {
        storage.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
    }

    public mutating func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}
