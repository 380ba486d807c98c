import Foundation
import Testing
import TestSupport
@testable import Audio

/// A device that follows a script, for the recovery paths a real device cannot be made to take on demand:
/// libasound's `null` and `file` plugins never overrun, suspend or vanish. The loop under test is the
/// production `CaptureLoop`; only the device behind the `CaptureDevice` seam is scripted.
final class ScriptedDevice: CaptureDevice, @unchecked Sendable {
    /// One step of a read script. `.audio` fills every channel of every frame with `value`.
    enum Step {
        case audio(frames: Int, value: Int16)
        case error(Int32)
    }

    private let lock = NSLock()
    private var opens: [Result<Void, CaptureError>]
    private var steps: [Step]
    private var resumeResults: [Int32]
    /// What `wait` says when the script is exhausted and nothing is pending (stall tests use .timedOut).
    private let idleWait: CaptureWait
    /// When set, `close` blocks until it is signalled, as a wedged device's close does.
    private let closeGate: DispatchSemaphore?
    let info: CaptureDeviceInfo
    private(set) var openCalls = 0
    private(set) var closeCalls = 0
    private(set) var overrunRecoveries = 0
    private(set) var resumeCalls = 0
    private(set) var prepareCalls = 0

    init(opens: [Result<Void, CaptureError>] = [], steps: [Step], resumeResults: [Int32] = [],
         channels: Int = 1, idleWait: CaptureWait = .timedOut, closeGate: DispatchSemaphore? = nil) {
        self.opens = opens
        self.closeGate = closeGate
        self.steps = steps
        self.resumeResults = resumeResults
        self.idleWait = idleWait
        info = CaptureDeviceInfo(device: "scripted", sampleRate: 16000, channels: channels, format: .s16LE,
                                 periodFrames: 160, bufferFrames: 1600)
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    var counters: (opens: Int, closes: Int, overruns: Int, resumes: Int, prepares: Int) {
        locked { (openCalls, closeCalls, overrunRecoveries, resumeCalls, prepareCalls) }
    }

    func open() throws(CaptureError) -> CaptureDeviceInfo {
        let result: Result<Void, CaptureError> = locked {
            openCalls += 1
            return opens.isEmpty ? .success(()) : opens.removeFirst()
        }
        if case .failure(let error) = result { throw error }
        return info
    }

    func read(into buffer: UnsafeMutableRawPointer, frames: Int) -> Int {
        let step: Step? = locked {
            guard !steps.isEmpty else { return nil }
            if case .audio(let available, let value) = steps[0], available > frames {
                steps[0] = .audio(frames: available - frames, value: value)
                return .audio(frames: frames, value: value)
            }
            return steps.removeFirst()
        }
        switch step {
        case nil: return -Int(EAGAIN)
        case .error(let code): return Int(code)
        case .audio(let count, let value):
            let samples = buffer.bindMemory(to: Int16.self, capacity: count * info.channels)
            for i in 0..<(count * info.channels) { samples[i] = value.littleEndian }
            return count
        }
    }

    func wait(wakeDescriptor: Int32, timeoutMilliseconds: Int32) -> CaptureWait {
        var descriptor = pollfd(fd: wakeDescriptor, events: Int16(POLLIN), revents: 0)
        let idle = locked { steps.isEmpty }
        // Pending steps: return at once. Script exhausted: sleep briefly, as a quiet device would.
        if poll(&descriptor, 1, idle ? min(timeoutMilliseconds, 5) : 0) > 0 { return .woken }
        return idle ? idleWait : .ready
    }

    func recoverFromOverrun() -> Int32 { locked { overrunRecoveries += 1; return 0 } }

    func resume() -> Int32 {
        locked {
            resumeCalls += 1
            return resumeResults.isEmpty ? 0 : resumeResults.removeFirst()
        }
    }

    func prepareAndStart() -> Int32 { locked { prepareCalls += 1; return 0 } }

    func close() {
        locked { closeCalls += 1 }
        // Once opened, the gate stays open for later closes.
        if let closeGate { closeGate.wait(); closeGate.signal() }
    }

    func describe(error: Int32) -> String { "scripted error \(error)" }
}

@Suite("AudioCapture recovery paths, through a scripted device")
struct CaptureRecoveryTests {
    static func configuration(stallTimeout: Duration = .seconds(5)) -> CaptureConfiguration {
        CaptureConfiguration(device: "scripted", ringCapacity: 16000,
                             retry: CaptureRetryPolicy(initialDelay: .milliseconds(2), maxDelay: .milliseconds(8)),
                             stallTimeout: stallTimeout)
    }

    static func start(_ device: ScriptedDevice, _ configuration: CaptureConfiguration = configuration()) throws -> AudioCapture {
        let capture = try AudioCapture(configuration: configuration) { _ in device }
        capture.start()
        return capture
    }

    @Test("an overrun is recovered in place, counted, and capture goes on")
    func overrunIsRecoveredAndCounted() throws {
        let device = ScriptedDevice(steps: [
            .audio(frames: 320, value: 1000), .error(-EPIPE), .audio(frames: 160, value: 2000),
            .error(-EPIPE), .audio(frames: 160, value: 3000),
        ])
        let capture = try Self.start(device)
        let status = waitForStatus(capture) { $0.framesCaptured == 640 }
        capture.stop()
        #expect(status.overruns == 2)
        #expect(status.reopenCount == 0 && status.state == .running)
        #expect(device.counters.overruns == 2 && device.counters.opens == 1)
        let samples = readToEnd(capture)
        #expect(samples.count == 640)
        #expect(samples.last == Float(3000) / 32768)
    }

    @Test("stop(timeout:) returns when the time is up while the device's close hangs; the samples stay readable and the capture stops once the close returns")
    func stopWithATimeoutDoesNotWaitForAHangingClose() throws {
        let gate = DispatchSemaphore(value: 0)
        let device = ScriptedDevice(steps: [.audio(frames: 320, value: 1000)], closeGate: gate)
        let capture = try Self.start(device)
        _ = waitForStatus(capture) { $0.framesCaptured == 320 }
        let start = ContinuousClock.now
        #expect(!capture.stop(timeout: .milliseconds(200)))
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(200) && waited < .seconds(10), "\(waited)")
        #expect(device.counters.closes == 1)
        var samples: [Float] = []
        #expect(capture.read(into: &samples, maxSamples: 1000, timeout: .seconds(1)) == 320)
        gate.signal()
        #expect(capture.stop(timeout: .seconds(10)))
        #expect(capture.status.state == .stopped)
    }

    @Test("a suspended device is resumed, waiting while it says not yet, and the suspend is counted")
    func suspendIsResumed() throws {
        let device = ScriptedDevice(steps: [.audio(frames: 160, value: 1), .error(-ESTRPIPE),
                                            .audio(frames: 160, value: 2)],
                                    resumeResults: [-EAGAIN, -EAGAIN, 0])
        let capture = try Self.start(device)
        let status = waitForStatus(capture) { $0.framesCaptured == 320 }
        capture.stop()
        #expect(status.suspends == 1)
        #expect(device.counters.resumes == 3)
        #expect(device.counters.prepares == 0)
    }

    @Test("a device that cannot resume is prepared and restarted")
    func unresumableDeviceIsRestarted() throws {
        let device = ScriptedDevice(steps: [.error(-ESTRPIPE), .audio(frames: 160, value: 1)],
                                    resumeResults: [-ENOSYS])
        let capture = try Self.start(device)
        let status = waitForStatus(capture) { $0.framesCaptured == 160 }
        capture.stop()
        #expect(status.suspends == 1)
        #expect(device.counters.prepares == 1)
        #expect(status.reopenCount == 0)
    }

    @Test("a device that disappears is closed, reported, reopened after a backoff, and capture resumes")
    func lostDeviceIsReopened() throws {
        let device = ScriptedDevice(
            opens: [.success(()), .failure(.openFailed(device: "scripted", alsa: "No such device")),
                    .success(())],
            steps: [.audio(frames: 160, value: 1), .error(-ENODEV), .audio(frames: 160, value: 2)])
        let capture = try Self.start(device)
        let status = waitForStatus(capture) { $0.framesCaptured == 320 && $0.state == .running }
        capture.stop()
        #expect(status.reopenCount == 1)
        #expect(status.lastError == .openFailed(device: "scripted", alsa: "No such device"))
        let counters = device.counters
        #expect(counters.opens == 3)
        // Once after the loss, once after the failed open, once at stop.
        #expect(counters.closes >= 3)
        let samples = readToEnd(capture)
        #expect(samples.count == 320)
        #expect(samples.first == Float(1) / 32768 && samples.last == Float(2) / 32768)
    }

    @Test("the loss itself is what status reports while waiting to reopen")
    func lossIsReportedWhileRetrying() throws {
        let device = ScriptedDevice(opens: [.success(()), .failure(.openFailed(device: "scripted", alsa: "gone"))],
                                    steps: [.audio(frames: 160, value: 1), .error(-EIO)])
        var configuration = Self.configuration()
        configuration.retry = CaptureRetryPolicy(initialDelay: .seconds(30), maxDelay: .seconds(30))
        let capture = try Self.start(device, configuration)
        let status = waitForStatus(capture) { $0.state.isRetrying }
        #expect(status.state.retryReason == .deviceLost(device: "scripted", alsa: "scripted error \(-EIO)"))
        #expect(status.state.retryAttempt == 1)
        capture.stop()
    }

    @Test("consecutive open failures back off exponentially up to the maximum, and count attempts")
    func openFailuresBackOff() throws {
        let failure = CaptureError.openFailed(device: "scripted", alsa: "Device or resource busy")
        // Running once audio flows: the fifth open delivers some.
        let device = ScriptedDevice(opens: Array(repeating: .failure(failure), count: 4), steps: [.audio(frames: 160, value: 1)])
        let capture = try Self.start(device)
        var attempts: [Int] = []
        waitForStatus(capture) { status in
            let attempt = status.state.retryAttempt
            if attempt > 0 && attempts.last != attempt { attempts.append(attempt) }
            return status.state == .running
        }
        capture.stop()
        #expect(device.counters.opens == 5)
        #expect(capture.status.lastError == failure && capture.status.reopenCount == 0)
        // Polling may miss a short state, but never sees attempts out of order.
        #expect(attempts == attempts.sorted() && (attempts.last ?? 0) <= 4)
    }

    @Test("retry delays double from the initial delay and stop at the maximum")
    func retryDelaysDouble() {
        let policy = CaptureRetryPolicy(initialDelay: .milliseconds(250), maxDelay: .seconds(2))
        #expect((1...6).map { policy.delay(forAttempt: $0) } == [
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(2), .seconds(2),
        ])
        #expect(policy.delay(forAttempt: 1000) == .seconds(2))
    }

    /// And a device that opens again but still delivers nothing is not running: it stays retrying, and
    /// is not counted as reopened, until audio flows (it showed running, and reset its back-off, at
    /// every open).
    @Test("a device that goes quiet without an error is treated as lost after the stall timeout")
    func stalledDeviceIsReopened() throws {
        let device = ScriptedDevice(steps: [.audio(frames: 160, value: 1)], idleWait: .timedOut)
        let capture = try Self.start(device, Self.configuration(stallTimeout: .milliseconds(30)))
        let status = waitForStatus(capture) { $0.state.isRetrying && device.counters.opens >= 3 }
        capture.stop()
        #expect(status.lastError == .stalled(device: "scripted", seconds: Duration.milliseconds(30).seconds))
        #expect(status.reopenCount == 0)
    }

    /// Everything `readSegment` returns until the capture has ended, consecutive sample counts summed.
    static func segments(_ capture: AudioCapture) -> [CaptureChunk] {
        var out: [CaptureChunk] = []
        var buffer: [Float] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            buffer.removeAll()
            let chunk = capture.readSegment(into: &buffer, maxSamples: 4096, timeout: .milliseconds(100))
            switch (chunk, out.last) {
            case (.samples(0), _):
                if capture.status.state == .stopped && capture.availableSamples == 0 { return out }
            case (.samples(let n), .samples(let m)?):
                out[out.count - 1] = .samples(m + n)
            default:
                out.append(chunk)
            }
        }
        return out
    }

    @Test("reads stop at a lost device: the audio before and after are two segments, with the time it was away between")
    func aLostDeviceIsABreakInTheAudio() throws {
        let device = ScriptedDevice(
            opens: [.success(()), .failure(.openFailed(device: "scripted", alsa: "No such device")), .success(())],
            steps: [.audio(frames: 160, value: 1), .error(-ENODEV), .audio(frames: 160, value: 2)])
        var configuration = Self.configuration()
        configuration.retry = CaptureRetryPolicy(initialDelay: .milliseconds(40), maxDelay: .milliseconds(40))
        let capture = try Self.start(device, configuration)
        _ = waitForStatus(capture) { $0.framesCaptured == 320 && $0.state == .running }
        capture.stop()
        let segments = Self.segments(capture)
        try #require(segments.count == 3, "\(segments)")
        #expect(segments[0] == .samples(160) && segments[2] == .samples(160))
        // Two retry delays of 40 ms at least passed between the last sample and the next.
        guard case .gap(let seconds) = segments[1] else { Issue.record("\(segments)"); return }
        #expect(seconds >= 0.08 && seconds < 5, "\(seconds)")
    }

    @Test("an overrun is a break of unknown length; a full ring's dropped samples are a break as long as they were")
    func overrunsAndDropsAreBreaks() throws {
        let device = ScriptedDevice(steps: [.audio(frames: 320, value: 1000), .error(-EPIPE), .audio(frames: 160, value: 2000)])
        let capture = try Self.start(device)
        _ = waitForStatus(capture) { $0.framesCaptured == 480 }
        capture.stop()
        #expect(Self.segments(capture) == [.samples(320), .gap(seconds: 0), .samples(160)])

        // A ring of 400 samples, filled with 480 before anyone reads: it overflows, and drops down to
        // half its size at once (280 samples), so the reader starts after a break of 280 samples; the
        // overrun's break, at 320, is still ahead of it.
        var small = Self.configuration()
        small.ringCapacity = 400
        let device2 = ScriptedDevice(steps: [.audio(frames: 320, value: 1000), .error(-EPIPE), .audio(frames: 160, value: 2000)])
        let capture2 = try Self.start(device2, small)
        _ = waitForStatus(capture2) { $0.framesCaptured == 480 }
        capture2.stop()
        #expect(Self.segments(capture2) == [.gap(seconds: 280.0 / 16000), .samples(40), .gap(seconds: 0), .samples(160)])
        #expect(capture2.status.droppedSamples == 280)
    }

    @Test("stereo frames are averaged to mono")
    func stereoIsAveraged() throws {
        let device = ScriptedDevice(steps: [.audio(frames: 160, value: 16384)], channels: 2)
        let capture = try Self.start(device)
        waitForStatus(capture) { $0.framesCaptured == 160 }
        capture.stop()
        #expect(readToEnd(capture) == [Float](repeating: 0.5, count: 160))
    }
}

@Suite("CaptureRingBuffer")
struct CaptureRingBufferTests {
    @Test("reads return samples in order across the wrap-around, whatever the chunking")
    func wrapsAroundInOrder() {
        var ring = CaptureRingBuffer(capacity: 7)
        var generator = SeededGenerator(seed: 3)
        var next: Float = 0
        var expected: Float = 0
        for _ in 0..<200 {
            let n = Int.random(in: 0...5, using: &generator)
            let chunk = (0..<n).map { Float($0) + next }
            next += Float(n)
            let dropped = chunk.withUnsafeBufferPointer { ring.write($0) }
            expected += Float(dropped)
            var out: [Float] = []
            _ = ring.read(appendingTo: &out, maxCount: Int.random(in: 0...6, using: &generator))
            for value in out {
                #expect(value == expected)
                expected += 1
            }
        }
    }

    @Test("a write larger than the capacity keeps its newest samples and counts the rest")
    func oversizedWriteKeepsNewest() {
        var ring = CaptureRingBuffer(capacity: 4)
        _ = [Float](arrayLiteral: 1, 2).withUnsafeBufferPointer { ring.write($0) }
        let dropped = (10..<20).map(Float.init).withUnsafeBufferPointer { ring.write($0) }
        #expect(dropped == 2 + 6)
        var out = [Float](repeating: 0, count: 8)
        let n = out.withUnsafeMutableBufferPointer { ring.read(into: $0) }
        #expect(n == 4 && Array(out[0..<4]) == [16, 17, 18, 19])
    }
}
