import Decoding
import Model

/// A model file's domain decoding (its "decoding" metadata entry, `ModelDescription.decodingJSON`).
/// Here rather than in Model because the type belongs to Decoding, which Model does not import; Model
/// checks only that the entry is a JSON object within the size limit, and everything that decodes with a
/// model (`DecodingSettings.makeOptions(for:)`, `earshot model info`) reads it through here, which checks
/// the rest (format, settings, the ARPA text).
extension ModelFile {
    /// The embedded domain decoding, nil when the model has none. A damaged one is
    /// `ModelError.malformedMetadata` naming `file` and the "decoding" key.
    public func domainDecoding(file: String = "<memory>") throws(ModelError) -> DomainDecoding? {
        guard let json = description.decodingJSON else { return nil }
        do { return try DomainDecoding(json: json) } catch {
            throw .malformedMetadata(file: file, key: "decoding", reason: error.description)
        }
    }

    /// This model with `decoding` as its domain decoding (replacing any), checked as a saved model
    /// would be; `nil` removes it. Refused when the JSON exceeds the model file's limit.
    public func withDomainDecoding(_ decoding: DomainDecoding?) throws(ModelError) -> ModelFile {
        var out = self
        out.description.decodingJSON = decoding?.json()
        out.sha256 = nil
        if let decoding {
            do { try decoding.validate() } catch {
                throw .malformedMetadata(file: "<memory>", key: "decoding", reason: error.description)
            }
        }
        try out.description.validateDecoding()
        return out
    }

    /// `summary()` with the domain decoding described line by line instead of as raw JSON (its ARPA text
    /// can run to megabytes). A damaged entry is reported on its line, not thrown: `model info` is how a
    /// user finds out what is wrong with a file.
    public func summaryWithDecoding(file: String = "<memory>") -> String {
        var lines = summary().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeAll { $0.hasPrefix("decoding:") }
        do {
            if let decoding = try domainDecoding(file: file) {
                lines.append("decoding:      domain decoding (earshot adapt --text), used unless --lm or --no-model-lm")
                lines += decoding.summary().map { "  " + $0 }
            } else {
                lines.append("decoding:      (none: the general English LM when installed, else greedy; --lm replaces it)")
            }
        } catch {
            lines.append("decoding:      unusable: \(error.description)")
        }
        return lines.joined(separator: "\n")
    }
}
