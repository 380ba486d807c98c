/// One message cut out of the byte stream: a JSON line (without its line ending) or an audio frame's
/// payload.
public enum Frame: Sendable, Equatable {
    case line([UInt8])
    case audio([UInt8])
}

/// Why the byte stream cannot be cut into messages any more. Each one ends the connection: after it, the
/// decoder cannot know where the next message starts.
public enum FrameError: Error, Equatable, CustomStringConvertible, Sendable {
    case lineTooLong(limit: Int)
    case frameTooLarge(size: Int, limit: Int)
    case badFraming(byte: UInt8)

    public var description: String {
        switch self {
        case .lineTooLong(let limit):
            return "a JSON line is longer than the limit of \(limit) bytes (or lacks its newline)"
        case .frameTooLarge(let size, let limit):
            return "an audio frame declares \(size) bytes, more than the limit of \(limit)"
        case .badFraming(let byte):
            return "a message starts with byte 0x\(String(byte, radix: 16)), neither '{' (JSON) nor 0x00 (audio frame)"
        }
    }

    public var code: ErrorCode {
        switch self {
        case .lineTooLong: return .lineTooLong
        case .frameTooLarge: return .frameTooLarge
        case .badFraming: return .badFraming
        }
    }
}

/// Cuts a byte stream into frames; owns the bytes received but not yet cut. Feed it whatever arrives
/// (any split), then take frames until it returns nil. The framing (docs/protocol.md):
///
/// - a JSON line: starts with `{`, ends with `\n` (a `\r` before it is dropped), at most `maxLineBytes`
///   bytes including the newline;
/// - an audio frame: byte 0x00, a big-endian UInt32 payload length (at most `maxFrameBytes`), the payload;
/// - whitespace (space, tab, CR, LF) between messages is skipped, so `socat` users can type blank lines.
///
/// JSON never starts with 0x00 and an audio frame never starts with `{`, so the first byte decides.
/// Not thread-safe: one per connection.
public struct FrameDecoder: Sendable {
    public let maxLineBytes: Int
    public let maxFrameBytes: Int
    private var buffer: [UInt8] = []
    /// Start of the bytes not yet consumed.
    private var start = 0
    /// How far past `start` a line has been searched for its newline without finding one, so a long
    /// line arriving in small pieces is scanned once, not once per piece.
    private var scanned = 0
    private var failed: FrameError?

    public init(maxLineBytes: Int = ProtocolInfo.defaultMaxLineBytes,
                maxFrameBytes: Int = ProtocolInfo.defaultMaxFrameBytes) {
        self.maxLineBytes = maxLineBytes
        self.maxFrameBytes = maxFrameBytes
    }

    /// Bytes received and not yet returned as frames.
    public var bufferedCount: Int { buffer.count - start }

    public mutating func append<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        // Compact when the consumed prefix dominates, so the buffer stays about one message long.
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, nil when more bytes are needed. After a `FrameError` every call throws it.
    public mutating func next() throws(FrameError) -> Frame? {
        if let failed { throw failed }
        while start < buffer.count, Self.isWhitespace(buffer[start]) {
            start += 1
            scanned = 0
        }
        guard start < buffer.count else { return nil }
        let lead = buffer[start]
        if lead == UInt8(ascii: "{") {
            return try nextLine()
        } else if lead == ProtocolInfo.audioFrameMarker {
            return try nextAudio()
        }
        return try fail(.badFraming(byte: lead))
    }

    private mutating func nextLine() throws(FrameError) -> Frame? {
        var i = start + scanned
        let end = buffer.count
        let newline = UInt8(ascii: "\n")
        while i < end && buffer[i] != newline { i += 1 }
        if i == end {
            scanned = end - start
            if scanned >= maxLineBytes { return try fail(.lineTooLong(limit: maxLineBytes)) }
            return nil
        }
        if i - start + 1 > maxLineBytes { return try fail(.lineTooLong(limit: maxLineBytes)) }
        var lineEnd = i
        if lineEnd > start && buffer[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
        let line = Array(buffer[start..<lineEnd])
        start = i + 1
        scanned = 0
        return .line(line)
    }

    private mutating func nextAudio() throws(FrameError) -> Frame? {
        guard buffer.count - start >= 5 else { return nil }
        var length = 0
        for k in 1...4 { length = length << 8 | Int(buffer[start + k]) }
        if length > maxFrameBytes { return try fail(.frameTooLarge(size: length, limit: maxFrameBytes)) }
        guard buffer.count - start >= 5 + length else { return nil }
        let payload = Array(buffer[(start + 5)..<(start + 5 + length)])
        start += 5 + length
        return .audio(payload)
    }

    /// What is left when the client has closed its sending side: a last JSON line without its newline
    /// (`printf '{"type":"status"}' | socat ...`) as a line, and nil otherwise. The byte count of an
    /// unfinished audio frame is `unfinishedAudio`.
    public mutating func endOfInput() -> Frame? {
        guard failed == nil, (try? next()) == nil, start < buffer.count, buffer[start] == UInt8(ascii: "{") else { return nil }
        var end = buffer.count
        while end > start, Self.isWhitespace(buffer[end - 1]) { end -= 1 }
        let line = Array(buffer[start..<end])
        start = buffer.count
        scanned = 0
        return .line(line)
    }

    /// (received, declared) payload bytes of an audio frame cut off by the end of input, if any.
    public var unfinishedAudio: (received: Int, declared: Int)? {
        guard failed == nil, start < buffer.count, buffer[start] == ProtocolInfo.audioFrameMarker else { return nil }
        var length = 0
        if buffer.count - start >= 5 { for k in 1...4 { length = length << 8 | Int(buffer[start + k]) } }
        return (max(0, buffer.count - start - 5), length)
    }

    private mutating func fail(_ error: FrameError) throws(FrameError) -> Frame? {
        failed = error
        throw error
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}

/// Writes frames in the wire format.
public enum FrameEncoder {
    /// An audio frame: 0x00, big-endian length, payload.
    public static func audio<C: Collection>(_ payload: C) -> [UInt8] where C.Element == UInt8 {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(5 + payload.count)
        appendAudioHeader(length: payload.count, to: &bytes)
        bytes.append(contentsOf: payload)
        return bytes
    }

    public static func appendAudioHeader(length: Int, to bytes: inout [UInt8]) {
        precondition(length >= 0 && length <= Int(UInt32.max), "audio frame of \(length) bytes")
        bytes.append(ProtocolInfo.audioFrameMarker)
        let n = UInt32(length)
        bytes.append(UInt8(n >> 24)); bytes.append(UInt8(n >> 16 & 0xFF))
        bytes.append(UInt8(n >> 8 & 0xFF)); bytes.append(UInt8(n & 0xFF))
    }

    /// A JSON line: the object's bytes and a newline.
    public static func line(_ json: [UInt8]) -> [UInt8] { json + [UInt8(ascii: "\n")] }
}
