import Foundation
import Tensors

/// The contents of one safetensors file (Hugging Face's format): named tensors and string metadata.
///
/// On disk: an 8-byte little-endian header length `N`, `N` bytes of JSON
/// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`, then the raw
/// little-endian tensor bytes, offsets relative to the end of the header. Reading accepts F32, F16 and
/// BF16 (converted to `Float`, so models trained elsewhere can be imported); writing always uses F32.
/// Reading is strict: every inconsistency is a `ModelError` naming the file, because a silently
/// misread model produces plausible-looking garbage transcripts.
public struct SafeTensors: Sendable, Equatable {
    public var tensors: [String: Tensor]
    public var metadata: [String: String]

    public init(tensors: [String: Tensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Headers larger than this are rejected before parsing (the Hugging Face reader uses the same cap),
    /// so a corrupt length cannot make us parse hundreds of megabytes as JSON.
    static let maxHeaderBytes = 100_000_000

    /// Reads and validates the file at `path`.
    public static func read(path: String) throws(ModelError) -> SafeTensors {
        try decode(try readSafeTensorsFile(path), file: path)
    }

    /// Parses safetensors bytes; `file` names the source in errors.
    public static func decode(_ bytes: [UInt8], file: String) throws(ModelError) -> SafeTensors {
        guard bytes.count >= 8 else {
            throw .truncated(file: file, reason: "\(bytes.count) bytes, shorter than the 8-byte header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        let available = bytes.count - 8
        guard n <= UInt64(available) else {
            throw .truncated(file: file, reason: "header length \(n) exceeds the \(available) bytes after it")
        }
        guard n <= UInt64(maxHeaderBytes) else {
            throw .malformedHeader(file: file, reason: "header length \(n) is larger than the \(maxHeaderBytes)-byte limit")
        }
        let headerLength = Int(n)
        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart

        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart]), options: [])
        } catch {
            throw .malformedHeader(file: file, reason: "header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = root as? [String: Any] else {
            throw .malformedHeader(file: file, reason: "header JSON is not an object")
        }

        var metadata: [String: String] = [:]
        if let raw = header["__metadata__"] {
            guard let dict = raw as? [String: Any] else {
                throw .malformedHeader(file: file, reason: "__metadata__ is not an object")
            }
            for (key, value) in dict {
                guard let s = value as? String else {
                    throw .malformedHeader(file: file, reason: "__metadata__ value for '\(key)' is not a string")
                }
                metadata[key] = s
            }
        }

        struct Entry { var name: String; var dtype: DType; var shape: [Int]; var begin: Int; var end: Int }
        var entries: [Entry] = []
        for (name, raw) in header where name != "__metadata__" {
            guard let info = raw as? [String: Any] else {
                throw .badTensor(file: file, tensor: name, reason: "header entry is not an object")
            }
            guard let dtypeName = info["dtype"] as? String else {
                throw .badTensor(file: file, tensor: name, reason: "missing or non-string 'dtype'")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw .unsupportedDType(file: file, tensor: name, dtype: dtypeName)
            }
            guard let shapeAny = info["shape"] as? [Any] else {
                throw .badTensor(file: file, tensor: name, reason: "missing or non-array 'shape'")
            }
            var shape: [Int] = []
            for d in shapeAny {
                guard let v = exactInt(d), v >= 0 else {
                    throw .badTensor(file: file, tensor: name, reason: "shape \(shapeAny) has an entry that is not a non-negative integer")
                }
                shape.append(v)
            }
            guard let offs = info["data_offsets"] as? [Any], offs.count == 2,
                  let begin = exactInt(offs[0]), let end = exactInt(offs[1]) else {
                throw .badTensor(file: file, tensor: name, reason: "'data_offsets' is not a pair of integers")
            }
            guard begin >= 0, begin <= end else {
                throw .badTensor(file: file, tensor: name, reason: "data_offsets [\(begin), \(end)] are not an increasing pair of byte offsets")
            }
            guard end <= dataLength else {
                throw .truncated(file: file, reason: "tensor '\(name)' needs data bytes \(begin)..<\(end) but the file holds only \(dataLength)")
            }
            var elements = 1
            for d in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw .badTensor(file: file, tensor: name, reason: "shape \(shape) overflows") }
                elements = p
            }
            guard elements.multipliedReportingOverflow(by: dtype.size).partialValue == end - begin,
                  !elements.multipliedReportingOverflow(by: dtype.size).overflow else {
                throw .badTensor(file: file, tensor: name,
                                 reason: "shape \(shape) of \(dtypeName) needs \(elements) x \(dtype.size) bytes but data_offsets span \(end - begin)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }

        // The format requires the buffer to be covered exactly: no overlaps (two tensors aliasing bytes)
        // and no holes (bytes nobody owns usually mean a writer bug or a spliced file).
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var cursor = 0
        for e in entries {
            if e.begin < cursor {
                throw .badTensor(file: file, tensor: e.name, reason: "data_offsets [\(e.begin), \(e.end)] overlap another tensor's bytes")
            }
            if e.begin > cursor {
                throw .badTensor(file: file, tensor: e.name,
                                 reason: "bytes \(cursor)..<\(e.begin) before it belong to no tensor (hole in the data buffer)")
            }
            cursor = e.end
        }
        if cursor != dataLength {
            throw .malformedHeader(file: file, reason: "data buffer has \(dataLength) bytes but the tensors cover only \(cursor)")
        }

        var tensors: [String: Tensor] = [:]
        bytes.withUnsafeBytes { raw in
            for e in entries {
                let src = UnsafeRawBufferPointer(rebasing: raw[(dataStart + e.begin)..<(dataStart + e.end)])
                tensors[e.name] = Tensor(shape: e.shape, data: e.dtype.toFloats(src))
            }
        }
        return SafeTensors(tensors: tensors, metadata: metadata)
    }

    /// The file's bytes: F32 tensors in name order, the header padded with spaces to 8 bytes so the
    /// data is aligned for memory mapping (as the Hugging Face writer does).
    public func encoded() -> [UInt8] {
        let names = tensors.keys.sorted()
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(JSONValue.quoted($0)):\(JSONValue.quoted(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for name in names {
            let t = tensors[name]!
            let size = t.count * 4
            if !first { json += "," }
            first = false
            json += "\(JSONValue.quoted(name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}"
            offset += size
        }
        json += "}"
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }

        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        let n = UInt64(header.count)
        for i in 0..<8 { out.append(UInt8((n >> (8 * UInt64(i))) & 0xff)) }
        out.append(contentsOf: header)
        for name in names {
            let t = tensors[name]!
            #if _endian(little)
            t.data.withUnsafeBytes { out.append(contentsOf: $0) }
            #else
            for v in t.data { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            #endif
        }
        return out
    }

    /// Writes the file atomically (see `writeFileAtomically`).
    public func write(path: String) throws(ModelError) {
        try writeFileAtomically(encoded(), to: path)
    }
}

/// The element types the reader converts to `Float`.
enum DType: String {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"

    var size: Int { self == .f32 ? 4 : 2 }

    func toFloats(_ src: UnsafeRawBufferPointer) -> [Float] {
        let count = src.count / size
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            switch self {
            case .f32:
                for i in 0..<count {
                    out[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                }
            case .f16:
                for i in 0..<count {
                    out[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            case .bf16:
                for i in 0..<count {
                    let h = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    out[i] = Float(bitPattern: UInt32(h) << 16)
                }
            }
            initialized = count
        }
    }
}

/// IEEE 754 binary16 to binary32, exact for every input (done by hand because `Float16` is missing on
/// some platforms Swift supports, e.g. macOS on Intel).
func halfToFloat(_ h: UInt16) -> Float {
    let sign: UInt32 = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1f)
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0 {
        let magnitude = Float(mantissa) * 0x1p-24  // zero or subnormal: exact in Float
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}

/// JSON numbers arrive from JSONSerialization as NSNumber; accept only exact integers. (A JSON `true`
/// is indistinguishable from 1 after bridging on Linux, so it is read as 1.)
private func exactInt(_ v: Any) -> Int? {
    if let i = v as? Int { return i }
    if let d = v as? Double, d == d.rounded(), abs(d) < 9e15 { return Int(d) }
    return nil
}
