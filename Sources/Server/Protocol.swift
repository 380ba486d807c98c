import Audio
import Decoding
import Recognizer

// The wire protocol's vocabulary: what a client may ask and what the server answers. Encoding and
// decoding live in MessageCodec.swift, byte framing in FrameCodec.swift; docs/protocol.md is the
// reference for both.

/// Protocol constants: the version a client checks in `hello`, and the default limits.
public enum ProtocolInfo {
    /// Bumped on any incompatible change to framing or to a message's meaning.
    public static let version = 1
    /// Longest JSON line (including its newline) either side may send.
    public static let defaultMaxLineBytes = 64 * 1024
    /// Largest audio frame payload a client may send.
    public static let defaultMaxFrameBytes = 1 << 20
    /// Channel counts a session may declare.
    public static let channelRange = 1...8
    /// Sample rates a session may declare (libsamplerate converts by factors up to 256 either way; these
    /// bounds keep every rate within that of 16 kHz models and exclude nonsense).
    public static let sampleRateRange = 1000...384_000
    /// The lead byte of a binary audio frame; JSON lines start with `{`.
    public static let audioFrameMarker: UInt8 = 0x00
}

/// How a session's audio samples are laid out in frames: little-endian signed 16-bit or 32-bit float,
/// channels interleaved.
public enum AudioEncoding: String, Sendable, CaseIterable, Codable {
    case s16le, f32le

    public var bytesPerSample: Int { self == .s16le ? 2 : 4 }
}

/// What a client declares in `start`: its sample rate, sample encoding and channel count.
public struct AudioFormat: Sendable, Equatable {
    public var sampleRate: Int
    public var encoding: AudioEncoding
    public var channels: Int

    public init(sampleRate: Int, encoding: AudioEncoding = .s16le, channels: Int = 1) {
        self.sampleRate = sampleRate
        self.encoding = encoding
        self.channels = channels
    }

    /// Bytes per interleaved sample frame; an audio frame's payload must be a multiple of this.
    public var bytesPerFrame: Int { encoding.bytesPerSample * channels }
}

/// A client's optional request tag, echoed in the reply so a client can match answers to questions.
public enum RequestID: Sendable, Hashable {
    case int(Int)
    case string(String)
}

/// Where a transcript came from: the daemon's microphone (to subscribers) or the connection's own session.
public enum EventSource: String, Sendable, Equatable {
    case microphone, session
}

/// Machine-readable error codes; docs/protocol.md says which close the connection.
public enum ErrorCode: String, Sendable, Equatable, CaseIterable {
    /// A line (or the bytes after `{` without a newline) longer than the line limit. Closes.
    case lineTooLong = "line_too_long"
    /// An audio frame whose declared length exceeds the frame limit. Closes.
    case frameTooLarge = "frame_too_large"
    /// A message starting with a byte that is neither `{` nor 0x00; the stream cannot be resynchronised. Closes.
    case badFraming = "bad_framing"
    /// A line that is not a JSON object.
    case malformedJSON = "malformed_json"
    /// A JSON object whose `type` is missing or not one this server knows.
    case unknownType = "unknown_type"
    /// A known message with a missing or invalid field.
    case badRequest = "bad_request"
    /// Audio or `stop` without a session started.
    case noSession = "no_session"
    /// `start` while a session is already running on this connection.
    case sessionActive = "session_active"
    case unsupportedSampleRate = "unsupported_sample_rate"
    case unsupportedEncoding = "unsupported_encoding"
    case unsupportedChannels = "unsupported_channels"
    /// An audio frame whose byte count is not a whole number of sample frames; the frame is ignored.
    case misalignedAudio = "misaligned_audio"
    /// The client fell so far behind that finals no longer fit its queue. Closes.
    case clientTooSlow = "client_too_slow"
    /// `reload` when the daemon installed no reload handler.
    case reloadUnavailable = "reload_unavailable"
    /// `reload` failed; the previous model stays in service.
    case reloadFailed = "reload_failed"
    /// The server is shutting down. Closes after in-flight sessions are flushed.
    case shuttingDown = "shutting_down"
    /// The server already serves its maximum number of clients. Closes (instead of `hello`).
    case tooManyClients = "too_many_clients"
    /// A message was left unfinished (a line without its newline, an audio frame short of its length)
    /// with no byte arriving for the stall limit. Closes.
    case frameTimeout = "frame_timeout"
    /// A bug or resource failure inside the server.
    case internalError = "internal"

    /// Whether the server closes the connection after sending this error.
    public var closesConnection: Bool {
        switch self {
        case .lineTooLong, .frameTooLarge, .badFraming, .clientTooSlow, .shuttingDown, .tooManyClients, .frameTimeout:
            return true
        default: return false
        }
    }
}

/// The model a server recognises with, as reported in `hello`, `status` and `reloaded`.
public struct ModelSummary: Sendable, Equatable {
    public var name: String
    public var path: String?
    public var sampleRate: Int
    public var parameters: Int?
    public var vocabularySize: Int?
    public var sha256: String?

    public init(name: String, path: String? = nil, sampleRate: Int, parameters: Int? = nil,
                vocabularySize: Int? = nil, sha256: String? = nil) {
        self.name = name
        self.path = path
        self.sampleRate = sampleRate
        self.parameters = parameters
        self.vocabularySize = vocabularySize
        self.sha256 = sha256
    }
}

/// The first message on every connection.
public struct Hello: Sendable, Equatable {
    public var protocolVersion: Int
    public var server: String
    public var capabilities: [String]
    public var sampleRate: Int
    public var encodings: [AudioEncoding]
    public var maxChannels: Int
    public var maxLineBytes: Int
    public var maxFrameBytes: Int
    public var model: ModelSummary

    public init(protocolVersion: Int = ProtocolInfo.version, server: String, capabilities: [String],
                sampleRate: Int, encodings: [AudioEncoding] = AudioEncoding.allCases,
                maxChannels: Int = ProtocolInfo.channelRange.upperBound,
                maxLineBytes: Int, maxFrameBytes: Int, model: ModelSummary) {
        self.protocolVersion = protocolVersion
        self.server = server
        self.capabilities = capabilities
        self.sampleRate = sampleRate
        self.encodings = encodings
        self.maxChannels = maxChannels
        self.maxLineBytes = maxLineBytes
        self.maxFrameBytes = maxFrameBytes
        self.model = model
    }
}

/// The capture loop's counters as `status` reports them.
public struct CaptureSummary: Sendable, Equatable {
    public var state: String
    public var device: String?
    public var overruns: Int
    public var droppedSamples: Int64
    public var suspends: Int
    public var reopenCount: Int
    public var lastError: String?

    public init(state: String, device: String? = nil, overruns: Int = 0, droppedSamples: Int64 = 0,
                suspends: Int = 0, reopenCount: Int = 0, lastError: String? = nil) {
        self.state = state
        self.device = device
        self.overruns = overruns
        self.droppedSamples = droppedSamples
        self.suspends = suspends
        self.reopenCount = reopenCount
        self.lastError = lastError
    }

    public init(_ status: CaptureStatus) {
        let state: String
        switch status.state {
        case .starting: state = "starting"
        case .running: state = "running"
        case .retrying: state = "retrying"
        case .stopped: state = "stopped"
        @unknown default: state = "unknown"
        }
        self.init(state: state, device: status.device?.device, overruns: status.overruns,
                  droppedSamples: status.droppedSamples, suspends: status.suspends,
                  reopenCount: status.reopenCount, lastError: status.lastError.map { "\($0)" })
    }
}

/// The server's answer to `status`.
public struct StatusReport: Sendable, Equatable {
    public var uptime: Double
    /// Seconds of audio recognised: microphone plus every session since start.
    public var audioSeconds: Double
    /// CPU seconds of recognition per second of audio (below 1 keeps up with real time).
    public var realTimeFactor: Double
    /// Sessions running now, and started since the server started.
    public var sessions: Int
    public var sessionsTotal: Int
    public var subscribers: Int
    public var clients: Int
    /// Partials dropped for slow subscribers, and subscribers disconnected for being too slow.
    public var droppedEvents: Int
    public var slowClientsDisconnected: Int
    public var capture: CaptureSummary?
    public var model: ModelSummary

    public init(uptime: Double, audioSeconds: Double, realTimeFactor: Double, sessions: Int, sessionsTotal: Int,
                subscribers: Int, clients: Int, droppedEvents: Int, slowClientsDisconnected: Int,
                capture: CaptureSummary?, model: ModelSummary) {
        self.uptime = uptime
        self.audioSeconds = audioSeconds
        self.realTimeFactor = realTimeFactor
        self.sessions = sessions
        self.sessionsTotal = sessionsTotal
        self.subscribers = subscribers
        self.clients = clients
        self.droppedEvents = droppedEvents
        self.slowClientsDisconnected = slowClientsDisconnected
        self.capture = capture
        self.model = model
    }
}

/// Everything a client may send, JSON lines and audio frames alike.
public enum ClientMessage: Sendable, Equatable {
    case subscribe(partials: Bool)
    case unsubscribe
    case start(AudioFormat, partials: Bool)
    /// One audio frame's payload, in the format `start` declared.
    case audio([UInt8])
    case stop
    case status
    case reload(modelPath: String?)
    case ping
}

/// A client message with its optional request tag.
public struct ClientRequest: Sendable, Equatable {
    public var message: ClientMessage
    public var id: RequestID?

    public init(_ message: ClientMessage, id: RequestID? = nil) {
        self.message = message
        self.id = id
    }
}

/// Everything the server sends; always JSON lines.
public enum ServerMessage: Sendable, Equatable {
    case hello(Hello)
    case subscribed(partials: Bool)
    case unsubscribed
    case started(session: Int, format: AudioFormat)
    case stopped(session: Int, audioSeconds: Double)
    case partial(source: EventSource, utterance: Int, text: String, start: Double)
    case final(source: EventSource, utterance: Int, transcript: Transcript, start: Double, end: Double)
    case endpoint(source: EventSource, utterance: Int, reason: String, at: Double)
    case error(code: ErrorCode, message: String)
    case status(StatusReport)
    case reloaded(ModelSummary)
    case pong

    /// The value of the `type` field.
    public var type: String {
        switch self {
        case .hello: return "hello"
        case .subscribed: return "subscribed"
        case .unsubscribed: return "unsubscribed"
        case .started: return "started"
        case .stopped: return "stopped"
        case .partial: return "partial"
        case .final: return "final"
        case .endpoint: return "endpoint"
        case .error: return "error"
        case .status: return "status"
        case .reloaded: return "reloaded"
        case .pong: return "pong"
        }
    }
}

/// A server message with the tag of the request it answers, if any.
public struct ServerReply: Sendable, Equatable {
    public var message: ServerMessage
    public var id: RequestID?

    public init(_ message: ServerMessage, id: RequestID? = nil) {
        self.message = message
        self.id = id
    }
}

extension EventSource {
    /// A recogniser event as the server sends it.
    public func message(for event: RecognitionEvent) -> ServerMessage {
        switch event {
        case .partial(let utterance, let text, let start):
            return .partial(source: self, utterance: utterance, text: text, start: start)
        case .final(let utterance, let transcript, let start, let end, _):
            return .final(source: self, utterance: utterance, transcript: transcript, start: start, end: end)
        case .endpoint(let utterance, let reason, let at):
            return .endpoint(source: self, utterance: utterance, reason: reason.wireName, at: at)
        }
    }
}
