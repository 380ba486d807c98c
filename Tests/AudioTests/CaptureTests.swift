import Foundation
import Testing
@testable import Audio

/// The capture loop against real libasound, with ALSA's `file` plugin standing in for a microphone.
@Suite("AudioCapture through libasound's file plugin")
struct CaptureTests {
    /// Left and right carry different tones so a channel dropped or swapped changes the mono result.
    static let left = Tones(components: [(440, 0.5)])
    static let right = Tones(components: [(1000, 0.25)])

    static func stereoInput(rate: Int, frames: Int, channels: Int) -> [Float] {
        var interleaved: [Float] = []
        interleaved.reserveCapacity(frames * channels)
        for i in 0..<frames {
            let t = Double(i) / Double(rate)
            let l = Float(left.value(at: t)), r = Float(right.value(at: t))
            if channels == 1 { interleaved.append((l + r) / 2) } else { interleaved += [l, r] }
        }
        return interleaved
    }

    @Test("captured audio is the file's audio, downmixed and resampled to 16 kHz",
          arguments: [
              (CaptureSampleFormat.s16LE, 44100, 2),
              (CaptureSampleFormat.s32LE, 48000, 1),
              (CaptureSampleFormat.float32LE, 22050, 2),
              (CaptureSampleFormat.s16LE, 16000, 1),
          ])
    func capturedAudioMatchesTheFile(format: CaptureSampleFormat, rate: Int, channels: Int) throws {
        let directory = try TemporaryDirectory()
        let pcm = try FileBackedPCM(directory: directory)
        let frames = rate // one second
        let input = Self.stereoInput(rate: rate, frames: frames, channels: channels)
        try pcm.writeInput(input, format: format)

        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: FileBackedPCM.name, alsaConfigFile: pcm.configFile, sampleRate: rate, channels: channels,
            formats: [format], periodSize: .frames(441), bufferSize: .frames(4096),
            ringCapacity: 32000, stopAfter: .seconds(1)))
        capture.start()
        let captured = readToEnd(capture)
        capture.stop()
        let status = capture.status

        #expect(status.state == .stopped)
        #expect(status.device == CaptureDeviceInfo(device: FileBackedPCM.name, sampleRate: rate, channels: channels,
                                                   format: format, periodFrames: 441, bufferFrames: 4096))
        #expect(status.framesCaptured == Int64(frames))
        #expect(status.overruns == 0 && status.droppedSamples == 0 && status.reopenCount == 0)

        // Reference: the same device values decoded and averaged in Double, then the one-shot resampler.
        // The streaming resampler equals the one-shot one for any chunking (ResamplerTests), so the only
        // difference allowed is float rounding: converting S32 to Float rounds to 24 bits (2^-24 relative)
        // and averaging in Float instead of Double can differ by an ulp; 1e-6 is ~17 ulps at full scale.
        // (Measured: bit-identical for all four cases.)
        let reference = try Resampler.resample(decodedMono(input, channels: channels, format: format),
                                               from: rate, to: 16000)
        try #require(captured.count == reference.count,
                     "captured \(captured.count) samples, expected \(reference.count)")
        let worst = zip(captured, reference).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-6, "largest difference from the reference: \(worst)")

        // Independent of the resampler: the tones themselves at 16 kHz, away from the edges where the
        // filter sees the silence around the file. 16-bit quantisation alone allows 2^-16 = 1.5e-5; the
        // medium converter's passband error at 440 and 1000 Hz measured 1.6e-7 (S32 at 48 kHz), so 1e-4
        // leaves room for both and still fails on a channel dropped, swapped or misscaled (errors ~0.1).
        let mono = Tones(components: [(440, 0.25), (1000, 0.125)])
        let error = maxError(captured, rate: 16000, against: mono, over: 400..<(captured.count - 400))
        #expect(error < 1e-4, "largest deviation from the exact tones: \(error)")
    }

    /// A float device that delivers a NaN or an infinity (a faulty DSP stage upstream) must not poison
    /// the stream (one NaN spread through the resampler's filter and every later frame): such samples
    /// count as silence, as in the audio of the daemon's clients.
    @Test func nonFiniteFloatSamplesAreCapturedAsSilence() throws {
        let directory = try TemporaryDirectory()
        let pcm = try FileBackedPCM(directory: directory)
        let rate = 22050
        var input = Self.stereoInput(rate: rate, frames: rate, channels: 2)
        for (frame, bad) in [(1001, Float.nan), (5000, .infinity), (9999, -.infinity)] { input[2 * frame + 1] = bad }
        try pcm.writeInput(input, format: .float32LE)
        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: FileBackedPCM.name, alsaConfigFile: pcm.configFile, sampleRate: rate, channels: 2,
            formats: [.float32LE], periodSize: .frames(441), bufferSize: .frames(4096),
            ringCapacity: 32000, stopAfter: .seconds(1)))
        capture.start()
        let captured = readToEnd(capture)
        capture.stop()
        #expect(!captured.isEmpty && captured.allSatisfy(\.isFinite), "\(captured.filter { !$0.isFinite }.count) samples not finite")
        let clean = input.map { $0.isFinite ? $0 : 0 }
        let reference = try Resampler.resample(decodedMono(clean, channels: 2, format: .float32LE), from: rate, to: 16000)
        try #require(captured.count == reference.count)
        let worst = zip(captured, reference).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-6, "largest difference from the audio with silence for the bad samples: \(worst)")
    }

    @Test("a consumer that falls behind loses the oldest samples, down to half the ring at once, and they are counted")
    func slowConsumerLosesOldestSamples() throws {
        let directory = try TemporaryDirectory()
        let pcm = try FileBackedPCM(directory: directory)
        let input = (0..<16000).map { Float(sin(Double($0) * 0.01) * 0.5) }
        try pcm.writeInput(input, format: .s16LE)
        let capacity = 4000
        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: FileBackedPCM.name, alsaConfigFile: pcm.configFile, sampleRate: 16000, channels: 1,
            periodSize: .frames(160), bufferSize: .frames(1600), ringCapacity: capacity, stopAfter: .seconds(1)))
        capture.start()
        // Read nothing until the capture has finished.
        let status = waitForStatus(capture) { $0.state == .stopped }
        #expect(status.samplesProduced == 16000)
        // Each overflow leaves half the ring (with periods of 160: 3440 at the end), the rest counted.
        let available = capture.availableSamples
        #expect(available >= capacity / 2 && available <= capacity, "\(available)")
        #expect(status.droppedSamples == Int64(16000 - available))

        let kept = readToEnd(capture)
        // At 16 kHz no resampling happens: the kept samples are exactly the last input samples.
        let expected = decodedMono(Array(input.suffix(available)), channels: 1, format: .s16LE)
        #expect(kept == expected)
    }

    @Test("an unknown PCM name is retried with backoff, reported with ALSA's reason, and stop is prompt")
    func unknownDeviceIsRetried() throws {
        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: "earshot_no_such_pcm",
            retry: CaptureRetryPolicy(initialDelay: .milliseconds(5), maxDelay: .milliseconds(20))))
        let started = Date()
        capture.start()
        let status = waitForStatus(capture) { $0.state.retryAttempt >= 3 }
        guard case .retrying(let reason, let attempt, let nextRetry) = status.state else {
            Issue.record("expected retrying, got \(status.state)")
            return
        }
        #expect(attempt >= 3)
        #expect(nextRetry > started)
        guard case .openFailed(let device, let alsa) = reason else {
            Issue.record("expected openFailed, got \(reason)")
            return
        }
        #expect(device == "earshot_no_such_pcm")
        // The message ALSA logged, caught by the thread's local handler instead of going to stderr.
        #expect(alsa.contains("Unknown PCM earshot_no_such_pcm"), "reason: \(alsa)")
        #expect(reason.description.contains("'earshot_no_such_pcm'"))
        #expect(status.device == nil && status.framesCaptured == 0)
        capture.stop()
        #expect(capture.status.state == .stopped)
    }

    @Test("a card that does not exist is retried; stop during a long backoff returns at once")
    func missingCardIsRetriedAndStopInterruptsBackoff() throws {
        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: "hw:99,0", retry: CaptureRetryPolicy(initialDelay: .seconds(30), maxDelay: .seconds(60))))
        capture.start()
        let status = waitForStatus(capture) { $0.state.isRetrying }
        #expect(status.state.retryAttempt == 1)
        #expect(status.state.retryReason?.description.contains("'hw:99,0'") == true)
        // A hang detector, not a timing: waiting out the backoff would take 30 s.
        let stopTime = ContinuousClock().measure { capture.stop() }
        #expect(stopTime < .seconds(5), "stop took \(stopTime) during a 30 s backoff")
        #expect(capture.status.state == .stopped)
    }

    @Test("a device that cannot be opened yet is opened by a later retry and then delivers audio")
    func deviceThatAppearsLaterIsPickedUp() throws {
        let directory = try TemporaryDirectory()
        let pcm = try FileBackedPCM(directory: directory)
        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: FileBackedPCM.name, alsaConfigFile: pcm.configFile, sampleRate: 16000, channels: 1,
            periodSize: .frames(160), bufferSize: .frames(1600), ringCapacity: 16000,
            retry: CaptureRetryPolicy(initialDelay: .milliseconds(5), maxDelay: .milliseconds(20)),
            stopAfter: .milliseconds(250)))
        capture.start()
        // The plugin fails to open while its input file is missing.
        let failing = waitForStatus(capture) { $0.state.isRetrying }
        let reason = failing.state.retryReason?.description ?? ""
        #expect(reason.contains(pcm.inputPath), "reason: \(reason)")

        let input = (0..<4000).map { Float(($0 % 100) - 50) / 64 }
        try pcm.writeInput(input, format: .s16LE)
        let captured = readToEnd(capture)
        let status = capture.status
        #expect(status.state == .stopped)
        #expect(status.reopenCount == 0, "the first successful opening is not a reopening")
        #expect(status.lastError != nil)
        #expect(captured == decodedMono(input, channels: 1, format: .s16LE))
    }

    @Test("stop ends an open-ended capture and freezes the counters, which account for every sample")
    func stopEndsAnEndlessCapture() throws {
        let directory = try TemporaryDirectory()
        let pcm = try FileBackedPCM(directory: directory)
        try pcm.writeInput([Float](repeating: 0.25, count: 1600), format: .s16LE)
        // Past the end of its input the plugin keeps delivering silence as fast as it is read (its `null`
        // slave has no clock), so this capture would never end by itself and outruns any reader: the
        // sample values are checked by the tests with `stopAfter`, this one checks stop and the counters.
        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: FileBackedPCM.name, alsaConfigFile: pcm.configFile, sampleRate: 16000, channels: 1,
            periodSize: .frames(160), bufferSize: .frames(1600), ringCapacity: 16000))
        capture.start()
        waitForStatus(capture) { $0.framesCaptured >= 1600 }
        // A stop that did not reach the thread would hang here (the test runner's time limit catches it).
        capture.stop()
        let final = capture.status
        #expect(final.state == .stopped)
        #expect(final.framesCaptured >= 1600)
        // 16 kHz in, 16 kHz out: one sample per frame; nothing read, so each is either kept or dropped.
        #expect(final.samplesProduced == final.framesCaptured)
        #expect(Int64(capture.availableSamples) + final.droppedSamples == final.samplesProduced)
        Thread.sleep(forTimeInterval: 0.02)
        #expect(capture.status == final)
        capture.stop()
        #expect(capture.status == final)
    }

    @Test("an undefined extra configuration file is reported as such")
    func missingConfigFileIsReported() throws {
        let capture = try AudioCapture(configuration: CaptureConfiguration(
            device: "earshot_test", alsaConfigFile: "/nonexistent/asoundrc",
            retry: CaptureRetryPolicy(initialDelay: .seconds(10), maxDelay: .seconds(10))))
        capture.start()
        let status = waitForStatus(capture) { $0.state.isRetrying }
        guard case .configFileFailed(let path, _)? = status.state.retryReason else {
            Issue.record("expected configFileFailed, got \(status.state)")
            return
        }
        #expect(path == "/nonexistent/asoundrc")
        capture.stop()
    }

    @Test("invalid configurations are rejected before any thread starts")
    func invalidConfigurationsAreRejected() {
        let bad: [CaptureConfiguration] = [
            CaptureConfiguration(device: ""),
            CaptureConfiguration(sampleRate: 0),
            CaptureConfiguration(channels: 0),
            CaptureConfiguration(formats: []),
            CaptureConfiguration(periodSize: .frames(0)),
            CaptureConfiguration(bufferSize: .microseconds(-1)),
            CaptureConfiguration(ringCapacity: 0),
            CaptureConfiguration(retry: CaptureRetryPolicy(initialDelay: .seconds(2), maxDelay: .seconds(1))),
            CaptureConfiguration(stopAfter: .zero),
            // Beyond what ALSA's unsigned ints or the frame arithmetic hold: these trapped on the capture thread.
            CaptureConfiguration(sampleRate: 5_000_000_000),
            CaptureConfiguration(periodSize: .microseconds(5_000_000_000)),
            CaptureConfiguration(bufferSize: .frames(Int(UInt32.max) + 1)),
            CaptureConfiguration(channels: 100_000),
            CaptureConfiguration(stopAfter: .seconds(Int64.max / 1000)),
        ]
        for configuration in bad {
            #expect(throws: CaptureError.self) { try AudioCapture(configuration: configuration) }
        }
        #expect(throws: Never.self) { try AudioCapture(configuration: CaptureConfiguration()) }
    }

    @Test("a capture never started stops at once and reports stopped")
    func stopWithoutStart() throws {
        let capture = try AudioCapture(configuration: CaptureConfiguration(device: "hw:99,0"))
        capture.stop()
        #expect(capture.status.state == .stopped)
        capture.start() // ignored after stop
        #expect(capture.nextChunk(maxSamples: 10, timeout: .seconds(1)) == nil)
    }
}
