import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Live audio from an ALSA capture device, delivered as mono Float samples at `configuration.outputRate`
/// (16 kHz by default). Owns a dedicated capture thread, the device it opens, and a bounded buffer between
/// that thread and the consumer.
///
/// The thread waits only on the device (poll on its descriptors plus a wake pipe for `stop()`), converts
/// each period to mono Float, resamples it, and appends it to the buffer. The buffer never blocks the
/// thread: when the consumer falls more than `ringCapacity` samples behind, the oldest samples are dropped
/// and counted. Overruns and suspends are recovered and counted; a device that cannot be opened or goes
/// away is retried with exponential backoff, and `status` says why. Nothing here crashes the process.
///
/// Usage: `let capture = try AudioCapture(configuration: config); capture.start()`, then from any
/// thread `capture.read(into: &samples, maxSamples: 1600, timeout: .milliseconds(200))`, and finally
/// `capture.stop()` (also done on deinit).
public final class AudioCapture: Sendable {
    public let configuration: CaptureConfiguration
    private let shared: CaptureShared
    private let makeDevice: @Sendable (CaptureConfiguration) -> any CaptureDevice

    public convenience init(configuration: CaptureConfiguration) throws(CaptureError) {
        try self.init(configuration: configuration) { ALSACaptureDevice(configuration: $0) }
    }

    /// `makeDevice` is called on the capture thread; tests pass a scripted device.
    init(
        configuration: CaptureConfiguration,
        makeDevice: @escaping @Sendable (CaptureConfiguration) -> any CaptureDevice
    ) throws(CaptureError) {
        try Self.validate(configuration)
        self.configuration = configuration
        self.makeDevice = makeDevice
        shared = try CaptureShared(ringCapacity: configuration.ringCapacity, sampleRate: configuration.outputRate)
    }

    // Bounded, as at shutdown: a device whose close hangs must not hang whoever drops the capture (the
    // thread holds only `shared`, so it finishes on its own when the device lets it).
    deinit { stop(timeout: .seconds(2)) }

    private static func validate(_ c: CaptureConfiguration) throws(CaptureError) {
        func fail(_ reason: String) -> CaptureError { .invalidConfiguration(reason: reason) }
        if c.device.isEmpty { throw fail("the device name is empty") }
        // The upper bounds keep every value inside the C types ALSA takes (unsigned int) and the frame
        // arithmetic inside Int64, so no setting can crash the capture thread.
        if c.sampleRate <= 0 || c.sampleRate > 10_000_000 { throw fail("sample rate \(c.sampleRate) Hz is not in 1 ... 10000000") }
        if c.outputRate <= 0 || c.outputRate > 10_000_000 { throw fail("output rate \(c.outputRate) Hz is not in 1 ... 10000000") }
        if c.channels <= 0 || c.channels > 1024 { throw fail("channel count \(c.channels) is not in 1 ... 1024") }
        if c.formats.isEmpty { throw fail("no sample formats to try") }
        if c.ringCapacity <= 0 { throw fail("ring capacity \(c.ringCapacity) is not positive") }
        for (size, what) in [(c.periodSize, "period"), (c.bufferSize, "buffer")] {
            switch size {
            case .frames(let n) where n <= 0 || n > Int(UInt32.max), .microseconds(let n) where n <= 0 || n > Int(UInt32.max):
                throw fail("\(what) size \(size) is not in 1 ... \(UInt32.max)")
            default: break
            }
        }
        if c.retry.initialDelay <= .zero || c.retry.maxDelay < c.retry.initialDelay {
            throw fail("retry delays must satisfy 0 < initial <= max")
        }
        if c.stallTimeout <= .zero { throw fail("stall timeout must be positive") }
        if let limit = c.stopAfter, limit <= .zero || limit > .seconds(1_000_000_000) {
            throw fail("stopAfter must be positive and at most 10^9 s")
        }
    }

    /// Starts the capture thread. Calling it again, or after `stop()`, does nothing: a capture runs once.
    public func start() {
        guard shared.claimStart() else { return }
        let configuration = configuration
        let shared = shared
        let makeDevice = makeDevice
        let thread = Thread {
            // The loop (its device, resampler and buffers) is created on, used on, and dies with this
            // thread; only `shared` crosses threads.
            let loop = CaptureLoop(configuration: configuration, shared: shared,
                                   device: makeDevice(configuration))
            loop.run()
        }
        thread.name = "earshot-capture"
        thread.start()
    }

    /// Stops capturing and waits for the thread to close the device. Samples already captured stay
    /// readable; the counters in `status` are final once this returns. Safe to call more than once and from
    /// any thread other than the capture thread.
    public func stop() {
        shared.requestStop()
        shared.waitUntilFinished()
    }

    /// As `stop()`, but waits at most `timeout` for the thread to close the device: a device whose close
    /// hangs (a wedged USB interface, a sound server that does not answer) must not hold up a shutdown.
    /// Returns whether the capture has stopped; if not, it still stops when the device lets it, and
    /// the samples captured so far stay readable.
    @discardableResult
    public func stop(timeout: Duration) -> Bool {
        shared.requestStop()
        return shared.waitUntilFinished(timeout: timeout)
    }

    /// A snapshot of the state and counters.
    public var status: CaptureStatus { shared.snapshot() }

    /// Samples waiting to be read.
    public var availableSamples: Int { shared.availableSamples }

    /// Appends up to `maxSamples` captured samples to `output`, waiting up to `timeout` for the first one.
    /// Returns how many were appended: 0 when the timeout passed with nothing captured, or when the capture
    /// has stopped and everything has been read. Reuse `output` (removeAll(keepingCapacity:)) to avoid
    /// allocating per call.
    @discardableResult
    public func read(into output: inout [Float], maxSamples: Int, timeout: Duration) -> Int {
        shared.read(into: &output, maxSamples: maxSamples, timeout: timeout)
    }

    /// As `read`, but stopping at a break in the audio: `.gap` when the next sample does not follow the
    /// last one read (the device was lost and reopened, an overrun or a system suspend lost audio, or
    /// the ring was full and its oldest samples were dropped), with about how many seconds passed that
    /// the samples do not show (0 where unknown: an overrun's loss); `.samples(n)` otherwise, n samples
    /// appended, all from one side of any break. A consumer that recognises speech ends the utterance
    /// at a gap instead of splicing the audio before it to the audio after.
    public func readSegment(into output: inout [Float], maxSamples: Int, timeout: Duration) -> CaptureChunk {
        shared.readSegment(into: &output, maxSamples: maxSamples, timeout: timeout)
    }

    /// The next up to `maxSamples` samples, waiting up to `timeout` for the first: an empty array on
    /// timeout, nil once the capture has stopped and everything has been read. Allocates per call.
    public func nextChunk(maxSamples: Int, timeout: Duration) -> [Float]? {
        var chunk: [Float] = []
        chunk.reserveCapacity(min(maxSamples, configuration.ringCapacity))
        if read(into: &chunk, maxSamples: maxSamples, timeout: timeout) == 0, shared.isDrained {
            return nil
        }
        return chunk
    }
}

/// What `AudioCapture.readSegment` found.
public enum CaptureChunk: Sendable, Equatable {
    /// This many samples were appended (0: the timeout passed, or the capture has ended and all is read).
    case samples(Int)
    /// Audio is missing before the next sample; about `seconds` passed that no sample shows.
    case gap(seconds: Double)
}

/// The state both threads touch: the ring of captured samples, the status, the stop flag, and the wake
/// pipe that interrupts the capture thread's poll.
///
/// `@unchecked Sendable` because every mutable field is read and written only with `condition` locked
/// (the compiler cannot see a lock's coverage). The lock is held for a ring copy or a few counter updates,
/// never across a device call, so the capture thread waits on it for microseconds at most.
final class CaptureShared: @unchecked Sendable {
    private let condition = NSCondition()
    private var ring: CaptureRingBuffer
    private var status = CaptureStatus()
    private var stopRequested = false
    private var started = false
    private var finished = false
    private let sampleRate: Double
    /// Stream positions: samples ever written into the ring, and ever taken out of it (read, or dropped
    /// as the oldest when it was full), so that breaks can be placed between two samples.
    private var written: Int64 = 0
    private var consumed: Int64 = 0
    /// Breaks in the audio, in position order: before sample `position` audio is missing, and about
    /// `seconds` passed that the samples do not show.
    private var gaps: [(position: Int64, seconds: Double)] = []
    /// Read end polled by the capture thread, write end written once by `requestStop`. Both non-blocking.
    let wakeReadDescriptor: Int32
    private let wakeWriteDescriptor: Int32

    init(ringCapacity: Int, sampleRate: Int) throws(CaptureError) {
        ring = CaptureRingBuffer(capacity: ringCapacity)
        self.sampleRate = Double(sampleRate)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw .invalidConfiguration(reason: "cannot create the capture thread's wake pipe: "
                                        + String(cString: strerror(errno)))
        }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        wakeReadDescriptor = fds[0]
        wakeWriteDescriptor = fds[1]
    }

    deinit {
        Glibc.close(wakeReadDescriptor)
        Glibc.close(wakeWriteDescriptor)
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }

    /// True the first time only, and only if stop() has not come first.
    func claimStart() -> Bool {
        locked {
            guard !started, !stopRequested else { return false }
            started = true
            return true
        }
    }

    func requestStop() {
        let shouldWake: Bool = locked {
            guard !stopRequested else { return false }
            stopRequested = true
            if !started {
                // Never ran: nothing to wait for.
                finished = true
                status.state = .stopped
                condition.broadcast()
            }
            return started
        }
        if shouldWake {
            var byte: UInt8 = 1
            _ = Glibc.write(wakeWriteDescriptor, &byte, 1)
        }
    }

    func waitUntilFinished() {
        locked { while !finished { condition.wait() } }
    }

    /// Whether the capture finished within `timeout`.
    func waitUntilFinished(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let deadline = Date().addingTimeInterval(Double(seconds) + Double(attoseconds) / 1e18)
        return locked {
            while !finished { if !condition.wait(until: deadline) { return finished } }
            return true
        }
    }

    var isStopRequested: Bool { locked { stopRequested } }

    func snapshot() -> CaptureStatus { locked { status } }

    var availableSamples: Int { locked { ring.count } }

    var isDrained: Bool { locked { finished && ring.count == 0 } }

    func update(_ body: (inout CaptureStatus) -> Void) {
        locked { body(&status) }
    }

    /// Hands converted samples to the consumer and adds `frames` device frames to the count; returns
    /// whether stop() has been requested, so the loop needs one lock per period, not two.
    func deliver(_ samples: UnsafeBufferPointer<Float>, frames: Int) -> Bool {
        locked {
            if !samples.isEmpty {
                var dropped = ring.write(samples)
                // Recognition has fallen a whole ring behind: drop down to half of it at once, so that
                // one overload is one break in the audio, not a break at every period from now on.
                if dropped > 0 { dropped += ring.discardOldest(ring.count - ring.capacity / 2) }
                written += Int64(samples.count)
                status.droppedSamples += Int64(dropped)
                status.samplesProduced += Int64(samples.count)
                if dropped > 0 {
                    // The oldest samples went unread: the reader goes on after them, across a break that
                    // also absorbs any break among them.
                    consumed += Int64(dropped)
                    var seconds = Double(dropped) / sampleRate
                    while let first = gaps.first, first.position <= consumed {
                        seconds += first.seconds
                        gaps.removeFirst()
                    }
                    gaps.insert((consumed, seconds), at: 0)
                }
                condition.broadcast()
            }
            status.framesCaptured += Int64(frames)
            return stopRequested
        }
    }

    func finish() {
        locked {
            finished = true
            status.state = .stopped
            condition.broadcast()
        }
    }

    /// Marks a break in the audio before the next sample written, `seconds` long (added to a break
    /// already there).
    func markGap(seconds: Double) {
        locked {
            if let last = gaps.last, last.position == written {
                gaps[gaps.count - 1].seconds += seconds
            } else {
                gaps.append((written, seconds))
            }
            condition.broadcast()
        }
    }

    /// Reads across breaks (for readers that do not care where the audio was cut).
    func read(into output: inout [Float], maxSamples: Int, timeout: Duration) -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            switch readSegment(into: &output, maxSamples: maxSamples, timeout: max(.zero, deadline - .now)) {
            case .samples(let n): return n
            case .gap: continue
            }
        }
    }

    func readSegment(into output: inout [Float], maxSamples: Int, timeout: Duration) -> CaptureChunk {
        guard maxSamples > 0 else { return .samples(0) }
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        func gapAhead() -> Bool { gaps.first.map { $0.position <= consumed } ?? false }
        while ring.count == 0 && !finished && !gapAhead() {
            if !condition.wait(until: deadline) { break }
        }
        if gapAhead() { return .gap(seconds: gaps.removeFirst().seconds) }
        var limit = maxSamples
        if let next = gaps.first { limit = min(limit, Int(next.position - consumed)) }
        let n = ring.read(appendingTo: &output, maxCount: limit)
        consumed += Int64(n)
        return .samples(n)
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }

    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// The capture thread's work: open, read, convert, resample, deliver, recover, retry. Owns the device,
/// the resampler and every buffer; created and used on the capture thread only.
final class CaptureLoop {
    private let configuration: CaptureConfiguration
    private let shared: CaptureShared
    private let device: any CaptureDevice

    private var resampler: StreamingResampler?
    /// One period as the device delivers it (interleaved, device format); sized at each opening.
    private var raw = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// The same period downmixed to mono Float at the device rate.
    private var mono: [Float] = []
    /// Resampled output waiting to go into the ring; keeps its capacity between periods.
    private var output: [Float] = []
    /// Device frames still to capture when `stopAfter` is set (fixed at the first opening's rate).
    private var framesLeft: Int64?
    /// When the device last delivered audio.
    private var lastAudio = ContinuousClock.now

    /// How `pump` ended.
    private enum Outcome {
        case stopRequested, limitReached
        case failed(CaptureError)
    }

    init(configuration: CaptureConfiguration, shared: CaptureShared, device: any CaptureDevice) {
        self.configuration = configuration
        self.shared = shared
        self.device = device
    }

    deinit { raw.deallocate() }

    func run() {
        var attempt = 0
        var openedBefore = false
        /// When the last audio came before the device was lost; nil while it delivers.
        var lostAt: ContinuousClock.Instant?
        loop: while !shared.isStopRequested {
            let info: CaptureDeviceInfo
            do {
                info = try device.open()
                try prepareBuffers(for: info)
            } catch {
                device.close()
                attempt += 1
                if !waitBeforeRetry(after: error, attempt: attempt) { break loop }
                continue
            }
            let reopened = openedBefore
            shared.update { $0.device = info }
            // Running once audio flows, not at the open: a device that opens and delivers nothing would
            // otherwise show running (and count a reopen, and reset the back-off) at every retry.
            let outcome = pump(info, delivered: {
                attempt = 0
                if reopened, let lost = lostAt {
                    // The time the device was away, which no sample shows.
                    shared.markGap(seconds: (ContinuousClock.now - lost).seconds)
                    lostAt = nil
                }
                shared.update {
                    $0.state = .running
                    if reopened { $0.reopenCount += 1 }
                }
                openedBefore = true
            })
            flushResampler()
            device.close()
            switch outcome {
            case .stopRequested, .limitReached:
                break loop
            case .failed(let error):
                // The utterance in flight ends here, not when (if ever) the device comes back.
                if openedBefore && lostAt == nil {
                    shared.markGap(seconds: 0)
                    lostAt = lastAudio
                }
                attempt += 1
                if !waitBeforeRetry(after: error, attempt: attempt) { break loop }
            }
        }
        device.close()
        shared.finish()
    }

    /// Sizes the buffers and the resampler for what the device agreed to; allocates only when that
    /// differs from the previous opening.
    private func prepareBuffers(for info: CaptureDeviceInfo) throws(CaptureError) {
        let bytes = info.periodFrames * info.channels * info.format.bytesPerSample
        if raw.count != bytes {
            raw.deallocate()
            raw = .allocate(byteCount: bytes, alignment: 16)
        }
        if mono.count != info.periodFrames {
            mono = [Float](repeating: 0, count: info.periodFrames)
        }
        if resampler?.inputRate != info.sampleRate {
            do {
                resampler = try StreamingResampler(from: info.sampleRate, to: configuration.outputRate,
                                                   quality: configuration.resamplingQuality)
            } catch {
                throw .resamplingFailed(device: configuration.device, reason: error.description)
            }
        }
        if framesLeft == nil, let limit = configuration.stopAfter {
            let (seconds, attoseconds) = limit.components
            let fraction = (Double(attoseconds) * Double(info.sampleRate) / 1e18).rounded()
            framesLeft = seconds * Int64(info.sampleRate) + Int64(fraction)
        }
    }

    /// Reads until stop, the frame limit, or an error the device cannot recover from in place.
    private func pump(_ info: CaptureDeviceInfo, delivered: () -> Void) -> Outcome {
        let clock = ContinuousClock()
        lastAudio = clock.now
        var firstDelivery = true
        let name = configuration.device
        while true {
            var want = info.periodFrames
            if let left = framesLeft {
                if left <= 0 { return .limitReached }
                want = Int(min(Int64(want), left))
            }
            // A plugin may report frames without writing them (the file plugin over `null` past the end of
            // its input): zeroing first makes that read as silence rather than the previous period again.
            let bytes = want * info.channels * info.format.bytesPerSample
            raw.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            let result = device.read(into: raw.baseAddress!, frames: want)

            if result > 0 {
                lastAudio = clock.now
                if firstDelivery {
                    firstDelivery = false
                    delivered()
                }
                if let left = framesLeft { framesLeft = left - Int64(result) }
                switch convertAndDeliver(frames: result, info: info) {
                case .success(let stop): if stop { return .stopRequested }
                case .failure(let error): return .failed(error)
                }
                continue
            }

            switch Int32(truncatingIfNeeded: result) {
            case 0, -EAGAIN:
                let waited = clock.now - lastAudio
                if waited >= configuration.stallTimeout {
                    return .failed(.stalled(device: name, seconds: configuration.stallTimeout.seconds))
                }
                let timeout = Int32(clamping: max((configuration.stallTimeout - waited).milliseconds, 1))
                if device.wait(wakeDescriptor: shared.wakeReadDescriptor, timeoutMilliseconds: timeout) == .woken {
                    return .stopRequested
                }
            case -EPIPE:
                shared.update { $0.overruns += 1 }
                let status = device.recoverFromOverrun()
                if status < 0 { return .failed(.deviceLost(device: name, alsa: device.describe(error: status))) }
                // Audio was lost, how much ALSA does not say: a break, of unknown length.
                shared.markGap(seconds: 0)
                lastAudio = clock.now
            case -ESTRPIPE:
                shared.update { $0.suspends += 1 }
                let suspended = lastAudio
                if let outcome = resumeAfterSuspend(clock: clock) { return outcome }
                // The system slept: a break as long as the sleep (this clock counts suspended time).
                shared.markGap(seconds: (clock.now - suspended).seconds)
                lastAudio = clock.now
            default:
                return .failed(.deviceLost(device: name, alsa: device.describe(error: Int32(truncatingIfNeeded: result))))
            }
        }
    }

    /// Waits (interruptibly) for the device to come back from a system suspend; if it cannot resume
    /// within the stall timeout, restarts it. nil when capturing can go on.
    private func resumeAfterSuspend(clock: ContinuousClock) -> Outcome? {
        let name = configuration.device
        let deadline = clock.now + configuration.stallTimeout
        var status = device.resume()
        while status == -EAGAIN && clock.now < deadline {
            if !sleep(.milliseconds(100)) { return .stopRequested }
            status = device.resume()
        }
        if status < 0 {
            // Resume unsupported (-ENOSYS) or given up: start the stream afresh, as snd_pcm_recover does.
            status = device.prepareAndStart()
            if status < 0 { return .failed(.deviceLost(device: name, alsa: device.describe(error: status))) }
        }
        return nil
    }

    private enum Delivery {
        case success(stopRequested: Bool)
        case failure(CaptureError)
    }

    private func convertAndDeliver(frames: Int, info: CaptureDeviceInfo) -> Delivery {
        mono.withUnsafeMutableBufferPointer { mono in
            CaptureConversion.downmix(UnsafeRawPointer(raw.baseAddress!), frames: frames, channels: info.channels,
                                      format: info.format, into: mono.baseAddress!)
        }
        guard let resampler else { return .success(stopRequested: shared.isStopRequested) }
        do {
            try mono.withUnsafeBufferPointer { (buffer) throws(AudioError) in
                try resampler.push(UnsafeBufferPointer(rebasing: buffer[0..<frames]))
            }
        } catch {
            return .failure(.resamplingFailed(device: configuration.device, reason: error.description))
        }
        output.removeAll(keepingCapacity: true)
        resampler.pull(into: &output)
        let stop = output.withUnsafeBufferPointer { shared.deliver($0, frames: frames) }
        return .success(stopRequested: stop)
    }

    /// Delivers the resampler's last few milliseconds (its filter delay) when the stream ends or breaks,
    /// and readies it for the next stream.
    private func flushResampler() {
        guard let resampler else { return }
        do {
            try resampler.finish()
        } catch {
            // Only the filter's tail is lost; report it, keep going.
            shared.update { $0.lastError = .resamplingFailed(device: configuration.device, reason: error.description) }
        }
        output.removeAll(keepingCapacity: true)
        resampler.pull(into: &output)
        _ = output.withUnsafeBufferPointer { shared.deliver($0, frames: 0) }
        resampler.reset()
    }

    /// Reports the failure and waits out the backoff delay; false when stop() was called meanwhile.
    private func waitBeforeRetry(after error: CaptureError, attempt: Int) -> Bool {
        let delay = configuration.retry.delay(forAttempt: attempt)
        shared.update {
            $0.state = .retrying(reason: error, attempt: attempt,
                                 nextRetry: Date(timeIntervalSinceNow: delay.seconds))
            $0.lastError = error
        }
        return sleep(delay)
    }

    /// Sleeps for `duration` unless stop() is called; false if it was.
    private func sleep(_ duration: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + duration
        var descriptor = pollfd(fd: shared.wakeReadDescriptor, events: Int16(POLLIN), revents: 0)
        while true {
            if shared.isStopRequested { return false }
            let left = clock.now.duration(to: deadline)
            if left <= .zero { return true }
            descriptor.revents = 0
            // Round up so a sub-millisecond remainder does not spin.
            let result = poll(&descriptor, 1, Int32(clamping: left.milliseconds + 1))
            if result > 0 { return false }
        }
    }
}

/// Device samples to mono Float. Little-endian formats only, read on little-endian hosts (x86-64, arm64).
enum CaptureConversion {
    /// Averages the `channels` interleaved channels of `frames` frames at `source` into `target`, scaling
    /// integers to [-1, 1) (divide by 2^15 or 2^31, as libsndfile does, so full scale is the same).
    static func downmix(_ source: UnsafeRawPointer, frames: Int, channels: Int, format: CaptureSampleFormat,
                        into target: UnsafeMutablePointer<Float>) {
        switch format {
        case .s16LE:
            let samples = source.bindMemory(to: Int16.self, capacity: frames * channels)
            Audio.downmix(samples, frames: frames, channels: channels, scale: 1 / 32768, into: target) { Float(Int16(littleEndian: $0)) }
        case .s32LE:
            let samples = source.bindMemory(to: Int32.self, capacity: frames * channels)
            Audio.downmix(samples, frames: frames, channels: channels, scale: 1 / 2_147_483_648, into: target) { Float(Int32(littleEndian: $0)) }
        case .float32LE:
            let samples = source.bindMemory(to: Float.self, capacity: frames * channels)
            // A NaN or infinity from a faulty source would poison the resampler's and the encoder's state
            // for good (files with one are refused; the daemon's clients' audio is cleaned the same way).
            Audio.downmix(samples, frames: frames, channels: channels, into: target) { $0.isFinite ? $0 : 0 }
        }
    }
}
