import Foundation

/// A parsed JSON value, for reading messages field by field with precise error messages.
enum WireJSON: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([WireJSON])
    case object([String: WireJSON])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([WireJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: WireJSON].self)) }
    }

    static func parse(_ bytes: [UInt8]) -> WireJSON? {
        try? JSONDecoder().decode(WireJSON.self, from: Data(bytes))
    }

    var string: String? { if case .string(let s) = self { return s }; return nil }
    var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    var number: Double? { if case .number(let d) = self { return d }; return nil }
    var array: [WireJSON]? { if case .array(let a) = self { return a }; return nil }
    var object: [String: WireJSON]? { if case .object(let o) = self { return o }; return nil }
    /// An integral number that fits an Int.
    var int: Int? {
        guard case .number(let d) = self, d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }
}

/// Writes one JSON object with keys in the order given (`type` first reads well in logs and `socat`).
struct JSONObjectWriter {
    private var text = "{"
    private var empty = true

    init() {}

    mutating func raw(_ key: String, _ json: String) {
        if !empty { text += "," }
        empty = false
        text += Self.quote(key)
        text += ":"
        text += json
    }

    mutating func add(_ key: String, _ value: String) { raw(key, Self.quote(value)) }
    mutating func add(_ key: String, _ value: Int) { raw(key, String(value)) }
    mutating func add(_ key: String, _ value: Int64) { raw(key, String(value)) }
    mutating func add(_ key: String, _ value: Double) { raw(key, Self.number(value)) }
    mutating func add(_ key: String, _ value: Bool) { raw(key, value ? "true" : "false") }
    mutating func add(_ key: String, _ value: RequestID?) {
        switch value {
        case nil: return
        case .int(let i): raw(key, String(i))
        case .string(let s): add(key, s)
        }
    }
    mutating func addIfPresent(_ key: String, _ value: String?) { if let value { add(key, value) } }
    mutating func addIfPresent(_ key: String, _ value: Int?) { if let value { add(key, value) } }

    var json: String { text + "}" }

    /// Shortest text that reads back as the same Double; non-finite values (never meaningful here) as null.
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        out.unicodeScalars.reserveCapacity(s.unicodeScalars.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
        return out
    }
}
