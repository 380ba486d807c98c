import Foundation
import Testing
import Features

@Suite struct ConfigTests {
    @Test func defaultsAreTheBaseModel() {
        let c = FrontendConfig()
        #expect(c.sampleRate == 16000 && c.windowLength == 400 && c.hopLength == 160 && c.fftSize == 512)
        #expect(c.melBins == 80 && c.fMin == 0 && c.fMax == nil && c.effectiveFMax == 8000)
        #expect(c.preemphasis == 0.97 && c.logGuard == 0x1p-24 && c.logGuardKind == .add)
        #expect(c.dither == 0 && !c.center && c.normalization == .none)
    }

    @Test func jsonRoundTripsAndMissingKeysTakeDefaults() throws {
        let kaldi = FrontendConfig.kaldi()
        let data = try JSONEncoder().encode(kaldi)
        #expect(try JSONDecoder().decode(FrontendConfig.self, from: data) == kaldi)

        let partial = #"{"melBins": 64, "preemphasis": null, "window": "povey", "fMax": 7600}"#
        let decoded = try JSONDecoder().decode(FrontendConfig.self, from: Data(partial.utf8))
        var expected = FrontendConfig()
        expected.melBins = 64; expected.preemphasis = nil; expected.window = .povey; expected.fMax = 7600
        #expect(decoded == expected)
        #expect(try JSONDecoder().decode(FrontendConfig.self, from: Data("{}".utf8)) == FrontendConfig())
    }

    @Test func unknownKeysAndValuesAreRejected() {
        let typo = #"{"melbins": 64}"#
        #expect(throws: FrontendConfigError.unknownField("melbins")) {
            try JSONDecoder().decode(FrontendConfig.self, from: Data(typo.utf8))
        }
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(FrontendConfig.self, from: Data(#"{"window": "gaussian"}"#.utf8))
        }
    }

    static let invalid: [(String, @Sendable (inout FrontendConfig) -> Void)] = [
        ("sampleRate", { $0.sampleRate = 0 }),
        ("windowLength", { $0.windowLength = 0 }),
        ("hopLength", { $0.hopLength = 0 }),
        ("fftSize", { $0.fftSize = 256 }),
        ("melBins", { $0.melBins = 0 }),
        ("fMin", { $0.fMin = -1 }),
        ("fMin", { $0.fMin = 8000 }),
        ("fMax", { $0.fMax = 8001 }),
        ("fMax", { $0.fMax = 0 }),
        ("fMin", { $0.fMin = 3000; $0.fMax = 2000 }),
        // Too narrow a range for the filters: with HTK's scale at 1e-14 Hz every corner rounds to 0 Hz
        // and the slaney normalisation made every feature NaN.
        ("fMax", { $0.melScale = .htk; $0.fMax = 1e-14 }),
        ("fMax", { $0.fMin = 100; $0.fMax = 150 }),
        ("preemphasis", { $0.preemphasis = 1.5 }),
        ("power", { $0.power = 0 }),
        ("logGuard", { $0.logGuard = 0 }),
        ("dither", { $0.dither = -1 }),
        ("sampleScale", { $0.sampleScale = .nan }),
        // Upper bounds: sizes a corrupt model file could carry, refused before the FFT plan's Int32
        // conversion or a huge allocation.
        ("sampleRate", { $0.sampleRate = 384_001 }),
        ("fftSize", { $0.fftSize = 1 << 33 }),
        ("fftSize", { $0.fftSize = 65_537 }),
        ("windowLength", { $0.windowLength = 1 << 40 }),
        ("hopLength", { $0.hopLength = 1 << 40 }),
        ("melBins", { $0.melBins = 1025 }),
    ]

    @Test(arguments: 0..<invalid.count)
    func validationNamesTheBadField(index: Int) {
        let (field, mutate) = Self.invalid[index]
        var config = FrontendConfig()
        mutate(&config)
        let error = #expect(throws: FrontendConfigError.self) { try LogMelFrontend(config: config) }
        #expect(error?.field == field, "\(error.map { "\($0)" } ?? "no error")")
        #expect(error?.description.contains("'\(field)'") == true)
    }

    @Test func perFeatureNormalisationIsRefusedForStreaming() throws {
        let config = FrontendConfig.nemo(normalization: .perFeature)
        let error = #expect(throws: FrontendConfigError.self) { try LogMelFrontend(config: config, mode: .streaming) }
        #expect(error?.field == "normalization")
        _ = try LogMelFrontend(config: config, mode: .offline)
    }

    @Test func normalisationStatisticsMustFitTheConfig() throws {
        var global = FrontendConfig()
        global.normalization = .global
        let good = FeatureNormalization(mean: .init(repeating: 0, count: 80), std: .init(repeating: 1, count: 80))
        _ = try LogMelFrontend(config: global, normalization: good)
        let cases: [(FrontendConfig, FeatureNormalization?)] = [
            (global, nil),
            (global, FeatureNormalization(mean: .init(repeating: 0, count: 79), std: .init(repeating: 1, count: 80))),
            (global, FeatureNormalization(mean: .init(repeating: 0, count: 80), std: .init(repeating: 0, count: 80))),
            (global, FeatureNormalization(mean: .init(repeating: .nan, count: 80), std: .init(repeating: 1, count: 80))),
            (FrontendConfig(), good),
        ]
        for (config, stats) in cases {
            let error = #expect(throws: FrontendConfigError.self) { try LogMelFrontend(config: config, normalization: stats) }
            #expect(error?.field == "normalization")
        }
    }

    @Test func globalNormalisationAppliesMeanAndStd() throws {
        let signal = testSignal(seconds: 0.7)
        let plain = try LogMelFrontend(config: FrontendConfig()).compute(signal)
        var config = FrontendConfig()
        config.normalization = .global
        let stats = FeatureNormalization(mean: (0..<80).map { -10 + Float($0) * 0.1 }, std: (0..<80).map { 0.5 + Float($0) * 0.05 })
        let normalised = try LogMelFrontend(config: config, normalization: stats).compute(signal)
        try #require(normalised.rows == plain.rows && normalised.rows > 0)
        var worst: Float = 0
        for t in 0..<plain.rows {
            for m in 0..<80 {
                worst = max(worst, abs(normalised[t, m] - (plain[t, m] - stats.mean[m]) / stats.std[m]))
            }
        }
        // Same float operations on both sides: anything above a couple of ulps is a bug.
        #expect(worst <= 1e-6)
    }

    @Test func presetsValidate() throws {
        try FrontendConfig().validate(streaming: true)
        try FrontendConfig.kaldi().validate(streaming: true)
        try FrontendConfig.nemo(normalization: .none).validate(streaming: true)
        try FrontendConfig.nemo().validate(streaming: false)
    }
}
