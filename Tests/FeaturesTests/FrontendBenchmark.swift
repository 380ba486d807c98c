import Foundation
import Testing
import Features

/// Throughput figures, not a test: runs only with EARSHOT_BENCH set, prints real-time factors, asserts
/// nothing about time. Meant for a release build on one core:
///   swift build -c release --product EarshotPackageTests
///   EARSHOT_BENCH=1 taskset -c 0 swift test -c release --skip-build --filter FrontendBenchmark
@Suite struct FrontendBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["EARSHOT_BENCH"] != nil, "set EARSHOT_BENCH=1 to run"))
    func realTimeFactor() throws {
        let seconds = 60.0
        let signal = testSignal(seconds: seconds)
        let configs: [(String, FrontendConfig)] = [
            ("base", FrontendConfig()),
            ("nemo (centred, perFeature)", .nemo()),
            ("kaldi (dc, frame preemph, povey)", .kaldi()),
        ]
        for (name, config) in configs {
            let frontend = try LogMelFrontend(config: config, mode: .offline)
            _ = frontend.compute(Array(signal.prefix(16000)))
            var bestOffline = Double.infinity, bestStreaming = Double.infinity
            var frames = 0
            for _ in 0..<5 {
                let start = ContinuousClock.now
                frames = frontend.compute(signal).rows
                bestOffline = min(bestOffline, (ContinuousClock.now - start).seconds)
            }
            if config.normalization != .perFeature {
                for _ in 0..<5 {
                    frontend.reset()
                    let start = ContinuousClock.now
                    signal.withUnsafeBufferPointer { all in
                        var i = 0
                        while i < all.count {  // 10 ms chunks, pulling after each, as a live stream would
                            let end = min(all.count, i + 160)
                            frontend.accept(UnsafeBufferPointer(rebasing: all[i..<end]))
                            _ = frontend.pullFrames()
                            i = end
                        }
                    }
                    frontend.finish()
                    _ = frontend.pullFrames()
                    bestStreaming = min(bestStreaming, (ContinuousClock.now - start).seconds)
                }
            }
            let perFrame = bestOffline / Double(frames) * 1e6
            print(String(format: "frontend %@: %.0fx real time offline (%.2f us/frame), %@ streaming in 10 ms chunks",
                         name, seconds / bestOffline, perFrame,
                         bestStreaming.isFinite ? String(format: "%.0fx", seconds / bestStreaming) : "n/a"))
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
