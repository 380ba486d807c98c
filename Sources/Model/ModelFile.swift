import Features
import Foundation
import Tensors

/// Everything in a model file except the tensors: the architecture, the frontend configuration, the
/// vocabulary, provenance and decoding defaults. The frontend and decoding settings are kept as JSON
/// text here because their types belong to the Features and Decoding modules.
public struct ModelDescription: Codable, Sendable, Equatable {
    public var architecture: EncoderArchitecture
    /// The frontend configuration (Features' `FrontendConfig`) as JSON text.
    public var frontendJSON: String
    /// Output tokens; index 0 is the CTC blank.
    public var vocabulary: [String]
    /// Free-form record of where the model came from: trained_by, data, date, base_model_sha256, ...
    public var provenance: [String: JSONValue]
    /// Optional decoding defaults as JSON text: Decoding's `DomainDecoding` (a domain LM as ARPA text,
    /// its words, hotwords and weights), read through Recognizer's `ModelFile.domainDecoding()`.
    public var decodingJSON: String?
    /// Where this model places words relative to the audio (`earshot model calibrate`), corrected by the
    /// recogniser; nil for a model never calibrated (its word times are the raw CTC emission times).
    public var timing: WordTiming?

    /// The most bytes `decodingJSON` may have: it lives in the safetensors header, which every reader
    /// parses whole before any tensor, so it is kept to what domain text needs (the same limit as
    /// `DomainDecoding.maximumJSONBytes`; a test checks they agree).
    public static let maximumDecodingJSONBytes = 8 * 1024 * 1024

    public init(architecture: EncoderArchitecture, frontendJSON: String = "{}", vocabulary: [String],
                provenance: [String: JSONValue] = [:], decodingJSON: String? = nil, timing: WordTiming? = nil) {
        self.architecture = architecture; self.frontendJSON = frontendJSON; self.vocabulary = vocabulary
        self.provenance = provenance; self.decodingJSON = decodingJSON; self.timing = timing
    }

    /// The decoding entry, if any, is a JSON object no larger than `maximumDecodingJSONBytes`. Its
    /// contents belong to the Decoding module and are checked where they are read.
    public func validateDecoding(file: String = "<memory>") throws(ModelError) {
        guard let json = decodingJSON else { return }
        let bytes = json.utf8.count
        guard bytes <= Self.maximumDecodingJSONBytes else {
            throw .malformedMetadata(file: file, key: "decoding",
                                     reason: "\(bytes) bytes, more than the \(Self.maximumDecodingJSONBytes)-byte limit")
        }
        guard (try? JSONSerialization.jsonObject(with: Data(json.utf8))) is [String: Any] else {
            throw .malformedMetadata(file: file, key: "decoding", reason: "not a JSON object")
        }
    }

    /// The vocabulary of a model file: usable by a decoder (`checkVocabularyIsDecodable`), and every
    /// token distinct and non-empty (the blank's text may be anything else), so text maps back to tokens
    /// unambiguously. The architecture must be valid (its output size is computed).
    public func validateVocabulary(file: String = "<memory>") throws(ModelError) {
        try checkVocabularyIsDecodable(file: file)
        func fail(_ reason: String) -> ModelError { .malformedMetadata(file: file, key: "vocabulary", reason: reason) }
        var seen: [String: Int] = [:]
        for (i, token) in vocabulary.enumerated() {
            guard i == 0 || !token.isEmpty else { throw fail("token \(i) is the empty string") }
            if let first = seen.updateValue(i, forKey: token) {
                throw fail("token \(i) '\(token)' repeats token \(first); tokens must be distinct")
            }
        }
    }

    /// What a CTC decoder needs of the vocabulary, whose violation would trap it: one token per output
    /// of the last layer, and index 0 (the blank) not the word separator " ". Checked for models built
    /// in memory too (`Encoder(model:)`); a file must also pass `validateVocabulary`.
    public func checkVocabularyIsDecodable(file: String = "<memory>") throws(ModelError) {
        guard let blank = vocabulary.first else {
            throw .malformedMetadata(file: file, key: "vocabulary", reason: "it is empty; index 0 must be the CTC blank")
        }
        guard blank != " " else {
            throw .malformedMetadata(file: file, key: "vocabulary",
                reason: "token 0 is \" \" (space), but index 0 is the CTC blank and space is the word separator; put the blank first")
        }
        guard vocabulary.count == architecture.outputDim else {
            throw .vocabularyMismatch(file: file, vocabularySize: vocabulary.count, outputSize: architecture.outputDim)
        }
    }
}

/// How late a model places words: a CTC model emits a word's first letter some frames after the word's
/// sound begins (its look-ahead lets it wait for evidence), and its last letter after the sound ends.
/// Measured once per model on recordings whose speech is known (`earshot model calibrate`); the
/// recogniser subtracts the delays from every word time it reports, so subtitles and word times follow
/// the audio. Stored under the metadata key "timing" as {"start_delay_ms", "end_delay_ms"}.
public struct WordTiming: Codable, Sendable, Equatable {
    /// Median of (the model's first word start - the audio's speech onset), in milliseconds.
    public var startDelayMs: Double
    /// Median of (the model's last word end - the audio's speech offset), in milliseconds.
    public var endDelayMs: Double

    /// The largest delay either way a file may state: a second is several times any model's look-ahead
    /// (the shipped model's is 270 ms), so anything more is a damaged or hand-edited file.
    public static let maximumMs = 1000.0

    public init(startDelayMs: Double, endDelayMs: Double) {
        self.startDelayMs = startDelayMs; self.endDelayMs = endDelayMs
    }

    enum CodingKeys: String, CodingKey {
        case startDelayMs = "start_delay_ms"
        case endDelayMs = "end_delay_ms"
    }

    /// Both delays finite and within ±`maximumMs`.
    public func validate(file: String = "<memory>") throws(ModelError) {
        for (name, value) in [("start_delay_ms", startDelayMs), ("end_delay_ms", endDelayMs)] {
            guard value.isFinite, abs(value) <= Self.maximumMs else {
                throw .malformedMetadata(file: file, key: "timing",
                                         reason: "\(name) is \(value); it must be a number of milliseconds within ±\(Int(Self.maximumMs))")
            }
        }
    }
}

/// One self-describing Earshot model: a safetensors file whose `__metadata__` holds the description
/// and whose tensors hold the layer parameters, optional CMVN statistics ("frontend.mean",
/// "frontend.std") and any extra tensors (e.g. optimiser state in checkpoints) that the encoder ignores.
///
/// Metadata keys: "format" = "earshot-ctc", "format_version" = "1", "architecture" (JSON of
/// `EncoderArchitecture`), "frontend" (JSON), "vocabulary" (JSON array, index 0 = blank),
/// "provenance" (JSON object), optional "decoding" (JSON), optional "timing" (JSON of `WordTiming`).
public struct ModelFile: Sendable {
    public static let formatName = "earshot-ctc"
    /// The newest format version this build reads and the one it writes.
    public static let formatVersion = 1

    public var description: ModelDescription
    public var parameters: [String: Tensor]
    /// SHA-256 of the file this model was loaded from (nil for a model built in memory).
    public var sha256: String?

    public init(description: ModelDescription, parameters: [String: Tensor]) {
        self.description = description
        self.parameters = parameters
    }

    /// Reads and fully validates a model file.
    public static func load(path: String) throws(ModelError) -> ModelFile {
        let bytes = try readSafeTensorsFile(path)
        var model = try decode(bytes, file: path)
        model.sha256 = SHA256.hex(bytes)
        return model
    }

    /// Parses and validates model file bytes; `file` names the source in errors.
    public static func decode(_ bytes: [UInt8], file: String) throws(ModelError) -> ModelFile {
        let st = try SafeTensors.decode(bytes, file: file)
        let meta = st.metadata
        guard let format = meta["format"] else {
            throw .notAModel(file: file, reason: "the safetensors metadata has no 'format' entry (expected '\(formatName)')")
        }
        guard format == formatName else {
            throw .notAModel(file: file, reason: "format is '\(format)', expected '\(formatName)'")
        }
        guard let versionText = meta["format_version"] else {
            throw .malformedMetadata(file: file, key: "format_version", reason: "missing")
        }
        guard let version = Int(versionText), version >= 1 else {
            throw .malformedMetadata(file: file, key: "format_version", reason: "'\(versionText)' is not a positive integer")
        }
        guard version <= formatVersion else {
            throw .unsupportedFormatVersion(file: file, found: versionText, supported: formatVersion)
        }

        guard let archText = meta["architecture"] else {
            throw .malformedMetadata(file: file, key: "architecture", reason: "missing")
        }
        // Found before decoding so an unknown type gets its own error rather than a decoding trace.
        let archJSON = try? JSONSerialization.jsonObject(with: Data(archText.utf8)) as? [String: Any]
        if let layers = archJSON?["layers"] as? [Any], let unknown = firstUnknownLayerType(layers) {
            throw .unknownLayerType(file: file, type: unknown)
        }
        var architecture: EncoderArchitecture = try decodeJSON(archText, key: "architecture", file: file)
        guard let frontend = meta["frontend"] else {
            throw .malformedMetadata(file: file, key: "frontend", reason: "missing")
        }
        try checkJSON(frontend, key: "frontend", file: file)
        guard let vocabText = meta["vocabulary"] else {
            throw .malformedMetadata(file: file, key: "vocabulary", reason: "missing")
        }
        let vocabulary: [String] = try decodeJSON(vocabText, key: "vocabulary", file: file)
        let provenance: [String: JSONValue] = try meta["provenance"].map { text throws(ModelError) in
            try decodeJSON(text, key: "provenance", file: file)
        } ?? [:]
        let timing: WordTiming? = try meta["timing"].map { text throws(ModelError) in
            try decodeJSON(text, key: "timing", file: file)
        }

        // A file without frame_duration_ms gets the frontend's hop rather than a guess (a present value
        // is checked against the frontend by `validate`).
        if archJSON?["frame_duration_ms"] == nil,
           let config = try? JSONDecoder().decode(FrontendConfig.self, from: Data(frontend.utf8)),
           (try? config.validate()) != nil {
            architecture.frameDurationMs = config.frameDurationMs
        }
        let model = ModelFile(
            description: ModelDescription(architecture: architecture, frontendJSON: frontend, vocabulary: vocabulary,
                                          provenance: provenance, decodingJSON: meta["decoding"], timing: timing),
            parameters: st.tensors)
        try model.validate(file: file)
        return model
    }

    /// Checks everything `load` checks: the architecture chains, every parameter it needs exists with
    /// the right shape and only finite values, CMVN statistics are sane, the frontend is valid and agrees
    /// with the architecture's frame duration, and the vocabulary is usable (see
    /// `ModelDescription.validateVocabulary`) and matches the last layer's output size.
    public func validate(file: String = "<memory>") throws(ModelError) {
        let arch = description.architecture
        try arch.validate(file: file)
        for (name, shape) in arch.parameterShapes {
            guard let t = parameters[name] else { throw .missingParameter(file: file, name: name, expectedShape: shape) }
            guard t.shape == shape else { throw .wrongShape(file: file, name: name, expected: shape, found: t.shape) }
            if let bad = t.data.firstIndex(where: { !$0.isFinite }) {
                throw .nonFiniteParameter(file: file, name: name, index: bad)
            }
        }
        _ = try description.frontendConfig(file: file)
        _ = try Encoder.normalization(parameters, dim: arch.inputDim, file: file)
        if let mean = parameters[InputNormalization.meanName], let bad = mean.data.firstIndex(where: { !$0.isFinite }) {
            throw .nonFiniteParameter(file: file, name: InputNormalization.meanName, index: bad)
        }
        try description.validateVocabulary(file: file)
        try description.validateDecoding(file: file)
        try description.timing?.validate(file: file)
    }

    /// The safetensors metadata this model is stored with (for tests and tools; `encoded` and `save`
    /// report a description that cannot be encoded as an error instead).
    public var metadata: [String: String] { try! encodedMetadata(file: "<memory>") }

    /// The metadata, or `.malformedMetadata` naming the key that JSON cannot encode: a provenance nested
    /// deeper than Foundation's writer allows (its reader takes one level more), or a non-finite number.
    func encodedMetadata(file: String) throws(ModelError) -> [String: String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func json<T: Encodable>(_ key: String, _ v: T) throws(ModelError) -> String {
            do { return String(decoding: try encoder.encode(v), as: UTF8.self) } catch {
                throw .malformedMetadata(file: file, key: key, reason: "cannot be written as JSON: \(error)")
            }
        }
        var meta: [String: String] = [
            "format": Self.formatName,
            "format_version": String(Self.formatVersion),
            "architecture": try json("architecture", description.architecture),
            "frontend": description.frontendJSON,
            "vocabulary": try json("vocabulary", description.vocabulary),
            "provenance": try json("provenance", description.provenance),
        ]
        if let d = description.decodingJSON { meta["decoding"] = d }
        if let t = description.timing { meta["timing"] = try json("timing", t) }
        return meta
    }

    /// The file's bytes (validated first, so an inconsistent model is never written).
    public func encoded(file: String = "<memory>") throws(ModelError) -> [UInt8] {
        try validate(file: file)
        return SafeTensors(tensors: parameters, metadata: try encodedMetadata(file: file)).encoded()
    }

    /// Validates, then writes atomically: a temporary file in the same directory, fsync, rename,
    /// fsync of the directory, so a crash never leaves a half-written model at `path`.
    public func save(path: String) throws(ModelError) {
        try writeFileAtomically(try encoded(file: path), to: path)
    }

    /// Scalar parameters the architecture uses (extra tensors such as optimiser state not counted).
    public var parameterCount: Int { description.architecture.parameterCount }

    /// A ready-to-run encoder for this model.
    public func makeEncoder() throws(ModelError) -> Encoder { try Encoder(model: self) }

    /// A human-readable description for `earshot model info`.
    public func summary() -> String {
        let arch = description.architecture
        var lines: [String] = []
        lines.append("Earshot CTC model (format \(Self.formatName) v\(Self.formatVersion))")
        if let sha256 { lines.append("sha256:        \(sha256)") }
        let cmvn = parameters[InputNormalization.meanName] != nil ? "global CMVN" : "no normalisation"
        lines.append("input:         \(arch.inputDim) features per \(format(arch.frameDurationMs)) ms frame, \(cmvn)")
        lines.append("frontend:      \(description.frontendJSON)")
        lines.append("layers:")
        func describe(_ layers: [LayerSpec], indent: String) {
            for layer in layers {
                switch layer {
                case .conv1d(let s):
                    let kind = s.groups == 1 ? "conv1d" : "depthwise conv1d"
                    let n = s.outChannels * (s.inChannels / max(s.groups, 1)) * s.kernel + (s.bias ? s.outChannels : 0)
                    lines.append("\(indent)\(kind) \(s.name): \(s.inChannels) -> \(s.outChannels), kernel \(s.kernel), stride \(s.stride), look-ahead \(s.rightContext)  [\(n) params]")
                case .dense(let s):
                    let n = s.outFeatures * s.inFeatures + (s.bias ? s.outFeatures : 0)
                    lines.append("\(indent)dense \(s.name): \(s.inFeatures) -> \(s.outFeatures)  [\(n) params]")
                case .layerNorm(let s):
                    lines.append("\(indent)layernorm \(s.name): \(s.dim)  [\(2 * s.dim) params]")
                case .relu:
                    lines.append("\(indent)relu")
                case .residual(let name, let body):
                    lines.append("\(indent)residual \(name):")
                    describe(body, indent: indent + "  ")
                }
            }
        }
        describe(arch.layers, indent: "  ")
        let extra = Set(parameters.keys).subtracting(arch.parameterShapes.map(\.name))
            .subtracting([InputNormalization.meanName, InputNormalization.stdName])
        lines.append("parameters:    \(parameterCount)" + (extra.isEmpty ? "" : " (+ \(extra.count) extra tensors ignored by the encoder)"))
        lines.append("subsampling:   \(arch.subsampling) (one output every \(format(Double(arch.subsampling) * arch.frameDurationMs)) ms)")
        lines.append("look-ahead:    \(arch.lookAheadFrames) frames = \(format(arch.lookAheadMs)) ms")
        lines.append("receptive field: \(arch.receptiveFieldFrames) frames = \(format(Double(arch.receptiveFieldFrames) * arch.frameDurationMs)) ms")
        if let t = description.timing {
            lines.append(String(format: "word timing:   starts emitted %.0f ms and ends %.0f ms after the audio's; reported times are corrected", t.startDelayMs, t.endDelayMs))
        } else {
            lines.append("word timing:   not calibrated (reported times are the model's emission times; earshot model calibrate)")
        }
        let shown = description.vocabulary.prefix(40).enumerated().map { $0.offset == 0 ? "<blank>" : "'\($0.element)'" }
        lines.append("vocabulary:    \(description.vocabulary.count) tokens: \(shown.joined(separator: " "))\(description.vocabulary.count > 40 ? " ..." : "")")
        if description.provenance.isEmpty {
            lines.append("provenance:    (none)")
        } else {
            lines.append("provenance:")
            for key in description.provenance.keys.sorted() { lines.append("  \(key): \(description.provenance[key]!)") }
        }
        if let decoding = description.decodingJSON { lines.append("decoding:      \(decoding.utf8.count) bytes of JSON") }
        return lines.joined(separator: "\n")
    }

    // (Int(ms) traps beyond Int's range, which a hostile file's look-ahead can reach.)
    private func format(_ ms: Double) -> String { ms == ms.rounded() && abs(ms) < 1e15 ? String(Int(ms)) : String(ms) }
}

private func decodeJSON<T: Decodable>(_ text: String, key: String, file: String) throws(ModelError) -> T {
    do {
        return try JSONDecoder().decode(T.self, from: Data(text.utf8))
    } catch let error as DecodingError {
        throw .malformedMetadata(file: file, key: key, reason: describe(error))
    } catch {
        throw .malformedMetadata(file: file, key: key, reason: "\(error)")
    }
}

private func checkJSON(_ text: String, key: String, file: String) throws(ModelError) {
    do {
        _ = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    } catch {
        throw .malformedMetadata(file: file, key: key, reason: "not valid JSON")
    }
}

private func describe(_ error: DecodingError) -> String {
    func path(_ c: [CodingKey]) -> String {
        c.isEmpty ? "top level" : c.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
    switch error {
    case .typeMismatch(let t, let c): return "at \(path(c.codingPath)): expected \(t)"
    case .valueNotFound(let t, let c): return "at \(path(c.codingPath)): missing \(t) value"
    case .keyNotFound(let k, let c): return "at \(path(c.codingPath)): missing key '\(k.stringValue)'"
    case .dataCorrupted(let c): return "at \(path(c.codingPath)): \(c.debugDescription)"
    @unknown default: return "\(error)"
    }
}

private let knownLayerTypes: Set<String> = ["conv1d", "dense", "layernorm", "relu", "residual"]

private func firstUnknownLayerType(_ layers: [Any]) -> String? {
    for case let layer as [String: Any] in layers {
        guard let type = layer["type"] as? String else { continue }
        if !knownLayerTypes.contains(type) { return type }
        if let body = layer["body"] as? [Any], let inner = firstUnknownLayerType(body) { return inner }
    }
    return nil
}
