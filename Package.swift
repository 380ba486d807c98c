// swift-tools-version:6.0
import PackageDescription

// One module per pipeline stage (see docs/architecture.md):
// Audio -> Features -> Model -> Decoding -> Recognizer, with Training and the CLI on top.
let package = Package(
    name: "Earshot",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "earshot", targets: ["earshot"]),
        .executable(name: "earshotd", targets: ["earshotd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.70.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        // C libraries, each behind a module map and pkg-config; nothing else lives here.
        .systemLibrary(name: "CSndFile", pkgConfig: "sndfile", providers: [.apt(["libsndfile1-dev"])]),
        .systemLibrary(name: "CFFTW", pkgConfig: "fftw3f", providers: [.apt(["libfftw3-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CALSA", pkgConfig: "alsa", providers: [.apt(["libasound2-dev"])]),
        .systemLibrary(name: "CSampleRate", pkgConfig: "samplerate", providers: [.apt(["libsamplerate0-dev"])]),
        .systemLibrary(name: "CStdio", path: "Sources/CStdio"),

        .target(name: "Tensors", dependencies: []),
        .target(name: "Audio", dependencies: ["CSndFile", "CSampleRate", "CALSA"]),
        .target(name: "Features", dependencies: ["CFFTW", "Tensors"]),
        .target(name: "Model", dependencies: ["CBLAS", "Features", "Tensors"]),
        .target(name: "Decoding", dependencies: ["Tensors", "Scoring"]),
        .target(name: "Scoring", dependencies: []),
        .target(name: "Recognizer", dependencies: ["Tensors", "Audio", "Features", "Model", "Decoding"]),
        .target(name: "Training", dependencies: ["Tensors", "Audio", "Features", "Model", "Decoding", "Scoring", "CBLAS"]),
        // Transfer learning on a user's recordings (earshot adapt): a frozen encoder, cached activations,
        // fine-tuned top layers.
        .target(name: "Adaptation", dependencies: [
            "Tensors", "Audio", "Features", "Model", "Decoding", "Scoring", "Recognizer", "Training", "CBLAS",
        ]),
        .target(name: "Server", dependencies: [
            "Tensors", "Audio", "Model", "Recognizer", "Decoding",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "earshotd", dependencies: [
            "Server", "Audio", "Recognizer", "Model", "Tensors",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .executableTarget(name: "earshot", dependencies: [
            "Tensors", "Audio", "Features", "Model", "Decoding", "Scoring", "Recognizer", "Training", "Server",
            "Adaptation", "CStdio",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),

        // Helpers shared by the test targets (temporary folders, espeak-ng synthesis, running the built
        // executables, the in-process tiny model). A plain target so test targets can import it; nothing
        // that ships depends on it.
        .target(name: "TestSupport", dependencies: ["Tensors", "Audio", "Model", "Training", "Decoding", "Recognizer", "Server"], path: "Tests/TestSupport"),

        .testTarget(name: "TensorsTests", dependencies: ["Tensors"]),
        .testTarget(name: "AudioTests", dependencies: ["TestSupport", "Audio", "CSndFile"]),
        .testTarget(name: "FeaturesTests", dependencies: ["Features"]),
        .testTarget(name: "ModelTests", dependencies: ["TestSupport", "Model", "Features", "Tensors"]),
        .testTarget(name: "DecodingTests", dependencies: ["TestSupport", "Decoding", "Tensors"]),
        .testTarget(name: "ScoringTests", dependencies: ["TestSupport", "Scoring"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Model", "Features", "Decoding", "Tensors"]),
        .testTarget(name: "RecognizerTests", dependencies: ["TestSupport", "Recognizer", "Training", "Audio", "Model", "Decoding", "Tensors", "Features"]),
        .testTarget(name: "ServerTests", dependencies: [
            "TestSupport",
            "Server", "Recognizer", "Audio", "Model", "Tensors", "Decoding",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "DaemonTests", dependencies: ["TestSupport", "Server", "Audio", "Recognizer", "Training", "Model", "Tensors"]),
        .testTarget(name: "AdaptationTests", dependencies: [
            "TestSupport", "Adaptation", "Training", "Recognizer", "Audio", "Model", "Scoring", "Decoding", "Tensors", "Features",
        ]),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport", "Recognizer", "Training", "Audio", "Model", "Scoring", "Decoding", "Tensors"]),
    ]
)
