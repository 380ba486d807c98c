import Features
import Foundation

extension FrontendConfig {
    /// Milliseconds between frames: `1000 * hopLength / sampleRate`.
    var frameDurationMs: Double { 1000 * Double(hopLength) / Double(sampleRate) }
}

extension ModelDescription {
    /// A description whose frontend is Features' typed configuration (stored as JSON in the file).
    /// The architecture's `frameDurationMs` is set from the frontend's hop, so the two always agree.
    public init(architecture: EncoderArchitecture, frontend: FrontendConfig, vocabulary: [String],
                provenance: [String: JSONValue] = [:], decodingJSON: String? = nil) {
        var architecture = architecture
        architecture.frameDurationMs = frontend.frameDurationMs
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding a plain configuration struct cannot fail.
        let json = String(decoding: try! encoder.encode(frontend), as: UTF8.self)
        self.init(architecture: architecture, frontendJSON: json, vocabulary: vocabulary,
                  provenance: provenance, decodingJSON: decodingJSON)
    }

    /// The frontend configuration, checked: it must decode, be valid, and produce as many mel bins as
    /// the encoder takes. Global CMVN statistics are not part of it: they are the tensors
    /// "frontend.mean"/"frontend.std", applied by the `Encoder`.
    public func frontendConfig(file: String = "<memory>") throws(ModelError) -> FrontendConfig {
        let config: FrontendConfig
        do {
            config = try JSONDecoder().decode(FrontendConfig.self, from: Data(frontendJSON.utf8))
        } catch let error as FrontendConfigError {
            throw .malformedMetadata(file: file, key: "frontend", reason: error.description)
        } catch {
            throw .malformedMetadata(file: file, key: "frontend", reason: "not a frontend configuration (\(error))")
        }
        do {
            try config.validate()
        } catch {
            throw .malformedMetadata(file: file, key: "frontend", reason: error.description)
        }
        guard config.melBins == architecture.inputDim else {
            throw .malformedMetadata(file: file, key: "frontend",
                reason: "the frontend makes \(config.melBins) mel bins but the encoder takes \(architecture.inputDim) features per frame")
        }
        // Stored twice (the architecture's copy times outputs for readers without the frontend), so a
        // disagreement would make `model info` report wrong look-ahead and subsampling milliseconds.
        // Half a microsecond of slack admits a hand-written value rounded to three decimals (7.256 for 160 samples at
        // 22050 Hz); anything further off is a different frame rate.
        guard abs(architecture.frameDurationMs - config.frameDurationMs) <= 5e-4 else {
            throw .malformedMetadata(file: file, key: "architecture",
                reason: "frame_duration_ms is \(architecture.frameDurationMs) but the frontend's hop is \(config.hopLength) samples at \(config.sampleRate) Hz = \(config.frameDurationMs) ms")
        }
        return config
    }
}
