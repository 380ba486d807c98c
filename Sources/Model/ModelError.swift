/// Everything that can go wrong reading, writing or checking a model file or building an encoder.
///
/// Every case names the file (or `<memory>` for a model that never touched disk) and says what is wrong
/// in words a user can act on; the CLI prints `description` on one line.
public enum ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be opened or read (missing, permissions, I/O error).
    case unreadable(file: String, reason: String)
    /// The file (or its temporary sibling) could not be written, synced or renamed into place.
    case unwritable(file: String, reason: String)
    /// The file ends before the safetensors structure it announces (header length or data).
    case truncated(file: String, reason: String)
    /// The safetensors JSON header is not valid JSON or not the expected shape.
    case malformedHeader(file: String, reason: String)
    /// A tensor entry is inconsistent: offsets out of range, overlapping, leaving holes, or a byte
    /// length that does not match its shape and dtype.
    case badTensor(file: String, tensor: String, reason: String)
    /// A tensor uses a dtype this reader does not convert (F32, F16 and BF16 are supported).
    case unsupportedDType(file: String, tensor: String, dtype: String)
    /// The file is a valid safetensors file but not an Earshot CTC model.
    case notAModel(file: String, reason: String)
    /// The model was written by a newer Earshot whose format this build cannot read.
    case unsupportedFormatVersion(file: String, found: String, supported: Int)
    /// A `__metadata__` entry (architecture, vocabulary, ...) is missing or malformed.
    case malformedMetadata(file: String, key: String, reason: String)
    /// The architecture names a layer type this Earshot does not know (a newer or foreign model).
    case unknownLayerType(file: String, type: String)
    /// A parameter the architecture needs is absent.
    case missingParameter(file: String, name: String, expectedShape: [Int])
    /// A parameter exists but its shape differs from what the architecture needs.
    case wrongShape(file: String, name: String, expected: [Int], found: [Int])
    /// A parameter holds NaN or infinity (a diverged training run).
    case nonFiniteParameter(file: String, name: String, index: Int)
    /// The layer list does not chain: channel counts disagree, a residual changes shape, bad groups, ...
    case inconsistentArchitecture(file: String, reason: String)
    /// The vocabulary size differs from the last layer's output size.
    case vocabularyMismatch(file: String, vocabularySize: Int, outputSize: Int)
    /// Models that cannot be averaged with the first one given: another architecture, frontend,
    /// vocabulary, feature statistics or domain decoding.
    case cannotAverage(file: String, first: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let f, let r): return "\(f): cannot read model file: \(r)"
        case .unwritable(let f, let r): return "\(f): cannot write model file: \(r)"
        case .truncated(let f, let r): return "\(f): file is truncated or not a safetensors file: \(r)"
        case .malformedHeader(let f, let r): return "\(f): corrupt safetensors header: \(r)"
        case .badTensor(let f, let t, let r): return "\(f): tensor '\(t)' is corrupt: \(r)"
        case .unsupportedDType(let f, let t, let d):
            return "\(f): tensor '\(t)' has dtype '\(d)'; Earshot reads F32, F16 and BF16 only"
        case .notAModel(let f, let r): return "\(f): not an Earshot model: \(r)"
        case .unsupportedFormatVersion(let f, let found, let supported):
            return "\(f): model format version \(found) is newer than this Earshot supports (\(supported)); upgrade Earshot to load it"
        case .malformedMetadata(let f, let k, let r): return "\(f): metadata '\(k)' is invalid: \(r)"
        case .unknownLayerType(let f, let t):
            return "\(f): unknown layer type '\(t)' in the architecture (known: conv1d, dense, layernorm, relu, residual); a newer Earshot may read it"
        case .missingParameter(let f, let n, let s):
            return "\(f): parameter '\(n)' (shape \(s)) required by the architecture is missing"
        case .wrongShape(let f, let n, let e, let s):
            return "\(f): parameter '\(n)' has shape \(s) but the architecture needs \(e)"
        case .nonFiniteParameter(let f, let n, let i):
            return "\(f): parameter '\(n)' holds NaN or infinity at element \(i) (did training diverge?)"
        case .inconsistentArchitecture(let f, let r): return "\(f): inconsistent architecture: \(r)"
        case .vocabularyMismatch(let f, let v, let o):
            return "\(f): vocabulary has \(v) tokens but the last layer outputs \(o) values per frame"
        case .cannotAverage(let f, let first, let r):
            // A refusal of the file itself (a checkpoint) names no other.
            return f == first ? "\(f): cannot be averaged: \(r)" : "\(f): cannot be averaged with \(first): \(r) (average snapshots of one training run)"
        }
    }

    /// The file the error is about.
    public var file: String {
        switch self {
        case .unreadable(let f, _), .unwritable(let f, _), .truncated(let f, _), .malformedHeader(let f, _),
             .badTensor(let f, _, _), .unsupportedDType(let f, _, _), .notAModel(let f, _),
             .unsupportedFormatVersion(let f, _, _), .malformedMetadata(let f, _, _), .unknownLayerType(let f, _),
             .cannotAverage(let f, _, _),
             .missingParameter(let f, _, _), .wrongShape(let f, _, _, _), .nonFiniteParameter(let f, _, _),
             .inconsistentArchitecture(let f, _), .vocabularyMismatch(let f, _, _):
            return f
        }
    }
}
