import Decoding
import Foundation
import Model
import Tensors
import Testing
import TestSupport
@testable import Recognizer

/// CPU figures, not a test: runs only with EARSHOT_BENCH set.
///   swift build -c release --build-tests && EARSHOT_BENCH=1 swift test -c release --skip-build --filter SessionBenchmark
///
/// The base architecture with random weights (recognition quality is irrelevant to cost) over 60 s of
/// -40 dBFS noise: a plain `RecognitionStream` fed 100 ms chunks against a `StreamingSession` fed the
/// same chunks (40 ms blocks inside, restarts, re-fed look-ahead), and the session on 60 s of zeros.
@Suite struct SessionBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["EARSHOT_BENCH"] != nil, "set EARSHOT_BENCH=1 to run"))
    func sessionCostAgainstAPlainStream() throws {
        let architecture = BaseArchitecture.architecture()
        var rng = SeededGenerator(state: 1)
        var parameters: [String: Tensor] = [:]
        for (name, shape) in architecture.parameterShapes {
            let fanIn = Float(shape.dropFirst().reduce(1, *))
            parameters[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in
                shape.count == 1 ? (name.hasSuffix(".weight") ? 1 : 0) : Float.random(in: -1...1, using: &rng) / fanIn.squareRoot()
            })
        }
        let model = ModelFile(description: ModelDescription(architecture: architecture, frontend: .init(),
                                                            vocabulary: Vocabulary.earshot.tokens), parameters: parameters)
        BLASThreads.set(1)
        let noise = (0..<(60 * 16000)).map { _ in 0.01 * rng.gaussian() }
        let zeros = [Float](repeating: 0, count: noise.count)
        let chunk = 1600
        for (name, options) in [("greedy", DecodingOptions.greedy),
                                ("beam 8", DecodingOptions(beam: BeamSearchConfiguration(beamWidth: 8), languageModel: nil))] {
            let recognizer = try Recognizer(model: model, options: options)
            let stream = recognizer.makeStream()
            for at in stride(from: 0, to: noise.count, by: chunk) { stream.accept(Array(noise[at..<min(at + chunk, noise.count)])) }
            _ = stream.finish()
            let session = StreamingSession(recognizer: recognizer, config: EndpointConfig(silenceLevel: -140))
            var events = 0
            for at in stride(from: 0, to: noise.count, by: chunk) { events += session.accept(Array(noise[at..<min(at + chunk, noise.count)])).count }
            events += session.finish().count
            let quiet = StreamingSession(recognizer: recognizer)
            for at in stride(from: 0, to: zeros.count, by: chunk) { _ = quiet.accept(Array(zeros[at..<min(at + chunk, zeros.count)])) }
            func row(_ t: StageTimings) -> String {
                String(format: "frontend %.3f s, encoder %.3f s, decoder %.3f s: RTF %.4f", t.frontend, t.encoder, t.decoder, t.total / 60)
            }
            print("""
            base architecture, \(name), 60 s, 100 ms chunks, 1 BLAS thread:
              RecognitionStream        \(row(stream.timings))
              StreamingSession (noise) \(row(session.timings)) (\(events) events)
              StreamingSession (zeros) \(row(quiet.timings))
            """)
        }
    }
}
