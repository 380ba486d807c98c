import Decoding

/// A message that could not be understood: the code and words sent back in an `error` event, and the
/// request's `id` when it got that far.
public struct ProtocolError: Error, Equatable, CustomStringConvertible, Sendable {
    public var code: ErrorCode
    public var message: String
    public var id: RequestID?

    public init(_ code: ErrorCode, _ message: String, id: RequestID? = nil) {
        self.code = code
        self.message = message
        self.id = id
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// Turns messages into wire bytes and back, both directions (the server and the CLI client share it).
/// Unknown fields are ignored so either side can add optional fields without a version bump.
public enum MessageCodec {
    // MARK: client -> server

    /// Parses one frame from a client.
    public static func decodeClient(_ frame: Frame) throws(ProtocolError) -> ClientRequest {
        switch frame {
        case .audio(let payload): return ClientRequest(.audio(payload))
        case .line(let line): return try decodeClient(line: line)
        }
    }

    public static func decodeClient(line: [UInt8]) throws(ProtocolError) -> ClientRequest {
        let fields = try object(line)
        let id = requestID(fields["id"])
        guard let type = fields["type"] else {
            throw ProtocolError(.unknownType, "the message has no \"type\" field", id: id)
        }
        guard let name = type.string else {
            throw ProtocolError(.unknownType, "\"type\" must be a string", id: id)
        }
        let reader = FieldReader(fields: fields, type: name, id: id)
        switch name {
        case "subscribe":
            return ClientRequest(.subscribe(partials: try reader.bool("partials", default: true)), id: id)
        case "unsubscribe":
            return ClientRequest(.unsubscribe, id: id)
        case "start":
            guard let rateValue = fields["sample_rate"] else {
                throw ProtocolError(.badRequest, "start needs \"sample_rate\" (Hz, an integer)", id: id)
            }
            guard let rate = rateValue.int, ProtocolInfo.sampleRateRange.contains(rate) else {
                throw ProtocolError(.unsupportedSampleRate,
                                    "sample_rate must be an integer from \(ProtocolInfo.sampleRateRange.lowerBound) to \(ProtocolInfo.sampleRateRange.upperBound) Hz",
                                    id: id)
            }
            let encodingName = try reader.string("encoding", default: AudioEncoding.s16le.rawValue)
            guard let encoding = AudioEncoding(rawValue: encodingName) else {
                throw ProtocolError(.unsupportedEncoding,
                                    "encoding \"\(encodingName)\" is not supported (use s16le or f32le)", id: id)
            }
            let channels: Int
            if let value = fields["channels"] {
                guard let c = value.int, ProtocolInfo.channelRange.contains(c) else {
                    throw ProtocolError(.unsupportedChannels, "channels must be an integer from 1 to 8", id: id)
                }
                channels = c
            } else {
                channels = 1
            }
            let partials = try reader.bool("partials", default: true)
            return ClientRequest(.start(AudioFormat(sampleRate: rate, encoding: encoding, channels: channels),
                                        partials: partials), id: id)
        case "stop":
            return ClientRequest(.stop, id: id)
        case "status":
            return ClientRequest(.status, id: id)
        case "reload":
            return ClientRequest(.reload(modelPath: try reader.optionalString("model")), id: id)
        case "ping":
            return ClientRequest(.ping, id: id)
        default:
            throw ProtocolError(.unknownType, "unknown message type \"\(name)\"", id: id)
        }
    }

    /// The wire bytes of a client message: a JSON line, or an audio frame.
    public static func encode(_ request: ClientRequest) -> [UInt8] {
        var w = JSONObjectWriter()
        switch request.message {
        case .audio(let payload):
            return FrameEncoder.audio(payload)
        case .subscribe(let partials):
            w.add("type", "subscribe"); w.add("partials", partials)
        case .unsubscribe:
            w.add("type", "unsubscribe")
        case .start(let format, let partials):
            w.add("type", "start"); w.add("sample_rate", format.sampleRate)
            w.add("encoding", format.encoding.rawValue); w.add("channels", format.channels)
            w.add("partials", partials)
        case .stop:
            w.add("type", "stop")
        case .status:
            w.add("type", "status")
        case .reload(let path):
            w.add("type", "reload"); w.addIfPresent("model", path)
        case .ping:
            w.add("type", "ping")
        }
        w.add("id", request.id)
        return FrameEncoder.line(Array(w.json.utf8))
    }

    // MARK: server -> client

    /// The wire bytes of a server message: one JSON line.
    public static func encode(_ reply: ServerReply) -> [UInt8] {
        Array(encodeLine(reply).utf8)
    }

    public static func encode(_ message: ServerMessage) -> [UInt8] { encode(ServerReply(message)) }

    /// The JSON line of a server message, newline included.
    public static func encodeLine(_ reply: ServerReply) -> String {
        var w = JSONObjectWriter()
        w.add("type", reply.message.type)
        switch reply.message {
        case .hello(let h):
            w.add("protocol", h.protocolVersion)
            w.add("server", h.server)
            w.raw("capabilities", "[" + h.capabilities.map(JSONObjectWriter.quote).joined(separator: ",") + "]")
            w.add("sample_rate", h.sampleRate)
            w.raw("encodings", "[" + h.encodings.map { JSONObjectWriter.quote($0.rawValue) }.joined(separator: ",") + "]")
            w.add("max_channels", h.maxChannels)
            w.add("max_line_bytes", h.maxLineBytes)
            w.add("max_frame_bytes", h.maxFrameBytes)
            w.raw("model", modelJSON(h.model))
        case .subscribed(let partials):
            w.add("partials", partials)
        case .unsubscribed, .pong:
            break
        case .started(let session, let format):
            w.add("session", session)
            w.add("sample_rate", format.sampleRate)
            w.add("encoding", format.encoding.rawValue)
            w.add("channels", format.channels)
        case .stopped(let session, let seconds):
            w.add("session", session)
            w.add("audio_seconds", seconds)
        case .partial(let source, let utterance, let text, let start):
            w.add("source", source.rawValue)
            w.add("utterance", utterance)
            w.add("text", text)
            w.add("start", start)
        case .final(let source, let utterance, let transcript, let start, let end):
            w.add("source", source.rawValue)
            w.add("utterance", utterance)
            w.add("text", transcript.text)
            w.add("start", start)
            w.add("end", end)
            let words = transcript.words.map { word -> String in
                var o = JSONObjectWriter()
                o.add("word", word.text); o.add("start", word.start); o.add("end", word.end)
                o.add("confidence", word.confidence)
                return o.json
            }
            w.raw("words", "[" + words.joined(separator: ",") + "]")
        case .endpoint(let source, let utterance, let reason, let at):
            w.add("source", source.rawValue)
            w.add("utterance", utterance)
            w.add("reason", reason)
            w.add("at", at)
        case .error(let code, let message):
            w.add("code", code.rawValue)
            w.add("message", message)
        case .status(let s):
            w.add("uptime", s.uptime)
            w.add("audio_seconds", s.audioSeconds)
            w.add("real_time_factor", s.realTimeFactor)
            w.add("sessions", s.sessions)
            w.add("sessions_total", s.sessionsTotal)
            w.add("subscribers", s.subscribers)
            w.add("clients", s.clients)
            w.add("dropped_events", s.droppedEvents)
            w.add("slow_clients_disconnected", s.slowClientsDisconnected)
            if let c = s.capture {
                var o = JSONObjectWriter()
                o.add("state", c.state); o.addIfPresent("device", c.device)
                o.add("overruns", c.overruns); o.add("dropped_samples", c.droppedSamples)
                o.add("suspends", c.suspends); o.add("reopen_count", c.reopenCount)
                o.addIfPresent("last_error", c.lastError)
                w.raw("capture", o.json)
            }
            w.raw("model", modelJSON(s.model))
        case .reloaded(let model):
            w.raw("model", modelJSON(model))
        }
        w.add("id", reply.id)
        return w.json + "\n"
    }

    private static func modelJSON(_ m: ModelSummary) -> String {
        var o = JSONObjectWriter()
        o.add("name", m.name)
        o.addIfPresent("path", m.path)
        o.add("sample_rate", m.sampleRate)
        o.addIfPresent("parameters", m.parameters)
        o.addIfPresent("vocabulary_size", m.vocabularySize)
        o.addIfPresent("sha256", m.sha256)
        return o.json
    }

    /// Parses one line from the server.
    public static func decodeServer(line: [UInt8]) throws(ProtocolError) -> ServerReply {
        let fields = try object(line)
        let id = requestID(fields["id"])
        guard let name = fields["type"]?.string else {
            throw ProtocolError(.unknownType, "the message has no string \"type\" field", id: id)
        }
        let r = FieldReader(fields: fields, type: name, id: id)
        let message: ServerMessage
        switch name {
        case "hello":
            let encodings = try r.array("encodings").compactMap { $0.string.flatMap(AudioEncoding.init(rawValue:)) }
            message = .hello(Hello(protocolVersion: try r.int("protocol"), server: try r.string("server"),
                                   capabilities: try r.array("capabilities").compactMap(\.string),
                                   sampleRate: try r.int("sample_rate"), encodings: encodings,
                                   maxChannels: try r.int("max_channels"), maxLineBytes: try r.int("max_line_bytes"),
                                   maxFrameBytes: try r.int("max_frame_bytes"), model: try model(r.object("model"), id: id)))
        case "subscribed":
            message = .subscribed(partials: try r.bool("partials", default: true))
        case "unsubscribed":
            message = .unsubscribed
        case "pong":
            message = .pong
        case "started":
            let encoding = AudioEncoding(rawValue: try r.string("encoding")) ?? .s16le
            message = .started(session: try r.int("session"),
                               format: AudioFormat(sampleRate: try r.int("sample_rate"), encoding: encoding,
                                                   channels: try r.int("channels")))
        case "stopped":
            message = .stopped(session: try r.int("session"), audioSeconds: try r.double("audio_seconds"))
        case "partial":
            message = .partial(source: try source(r), utterance: try r.int("utterance"), text: try r.string("text"),
                               start: try r.double("start"))
        case "final":
            var words: [Word] = []
            for item in try r.array("words") {
                let w = FieldReader(fields: item.object ?? [:], type: "final word", id: id)
                words.append(Word(text: try w.string("word"), start: try w.double("start"), end: try w.double("end"),
                                  confidence: try w.double("confidence")))
            }
            message = .final(source: try source(r), utterance: try r.int("utterance"),
                             transcript: Transcript(text: try r.string("text"), words: words),
                             start: try r.double("start"), end: try r.double("end"))
        case "endpoint":
            message = .endpoint(source: try source(r), utterance: try r.int("utterance"),
                                reason: try r.string("reason"), at: try r.double("at"))
        case "error":
            let codeName = try r.string("code")
            message = .error(code: ErrorCode(rawValue: codeName) ?? .internalError, message: try r.string("message"))
        case "status":
            var capture: CaptureSummary?
            if let c = fields["capture"]?.object {
                let cr = FieldReader(fields: c, type: "status capture", id: id)
                capture = CaptureSummary(state: try cr.string("state"), device: try cr.optionalString("device"),
                                         overruns: try cr.int("overruns"),
                                         droppedSamples: Int64(try cr.int("dropped_samples")),
                                         suspends: try cr.int("suspends"), reopenCount: try cr.int("reopen_count"),
                                         lastError: try cr.optionalString("last_error"))
            }
            message = .status(StatusReport(
                uptime: try r.double("uptime"), audioSeconds: try r.double("audio_seconds"),
                realTimeFactor: try r.double("real_time_factor"), sessions: try r.int("sessions"),
                sessionsTotal: try r.int("sessions_total"), subscribers: try r.int("subscribers"),
                clients: try r.int("clients"), droppedEvents: try r.int("dropped_events"),
                slowClientsDisconnected: try r.int("slow_clients_disconnected"), capture: capture,
                model: try model(r.object("model"), id: id)))
        case "reloaded":
            message = .reloaded(try model(r.object("model"), id: id))
        default:
            throw ProtocolError(.unknownType, "unknown message type \"\(name)\"", id: id)
        }
        return ServerReply(message, id: id)
    }

    private static func source(_ r: FieldReader) throws(ProtocolError) -> EventSource {
        let name = try r.string("source")
        guard let s = EventSource(rawValue: name) else {
            throw ProtocolError(.badRequest, "unknown source \"\(name)\"", id: r.id)
        }
        return s
    }

    private static func model(_ fields: [String: WireJSON], id: RequestID?) throws(ProtocolError) -> ModelSummary {
        let r = FieldReader(fields: fields, type: "model", id: id)
        return ModelSummary(name: try r.string("name"), path: try r.optionalString("path"),
                            sampleRate: try r.int("sample_rate"), parameters: fields["parameters"]?.int,
                            vocabularySize: fields["vocabulary_size"]?.int, sha256: try r.optionalString("sha256"))
    }

    // MARK: helpers

    private static func object(_ line: [UInt8]) throws(ProtocolError) -> [String: WireJSON] {
        guard let value = WireJSON.parse(line) else {
            throw ProtocolError(.malformedJSON, "the line is not valid JSON")
        }
        guard let fields = value.object else {
            throw ProtocolError(.malformedJSON, "the line is JSON but not an object")
        }
        return fields
    }

    private static func requestID(_ value: WireJSON?) -> RequestID? {
        if let i = value?.int { return .int(i) }
        if let s = value?.string { return .string(s) }
        return nil
    }
}

/// Typed access to a message's fields, with errors that name the message and the field.
private struct FieldReader {
    let fields: [String: WireJSON]
    let type: String
    let id: RequestID?

    func bad(_ key: String, _ what: String) -> ProtocolError {
        ProtocolError(.badRequest, "\(type): \"\(key)\" must be \(what)", id: id)
    }

    func bool(_ key: String, default value: Bool) throws(ProtocolError) -> Bool {
        guard let v = fields[key], v != .null else { return value }
        guard let b = v.bool else { throw bad(key, "true or false") }
        return b
    }

    func string(_ key: String, default value: String) throws(ProtocolError) -> String {
        guard let v = fields[key], v != .null else { return value }
        guard let s = v.string else { throw bad(key, "a string") }
        return s
    }

    func optionalString(_ key: String) throws(ProtocolError) -> String? {
        guard let v = fields[key], v != .null else { return nil }
        guard let s = v.string else { throw bad(key, "a string") }
        return s
    }

    func string(_ key: String) throws(ProtocolError) -> String {
        guard let s = fields[key]?.string else { throw bad(key, "a string") }
        return s
    }

    func int(_ key: String) throws(ProtocolError) -> Int {
        guard let i = fields[key]?.int else { throw bad(key, "an integer") }
        return i
    }

    func double(_ key: String) throws(ProtocolError) -> Double {
        guard let d = fields[key]?.number else { throw bad(key, "a number") }
        return d
    }

    func array(_ key: String) throws(ProtocolError) -> [WireJSON] {
        guard let a = fields[key]?.array else { throw bad(key, "an array") }
        return a
    }

    func object(_ key: String) throws(ProtocolError) -> [String: WireJSON] {
        guard let o = fields[key]?.object else { throw bad(key, "an object") }
        return o
    }
}
