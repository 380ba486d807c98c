import Dispatch
import Foundation
import Tensors
import Recognizer

/// A connection's recognition work, run on its own serial queue so the event loop never recognises. Owns
/// the current session (engine session + audio converter) and the sample buffer; all of it is touched
/// only on `queue`, which also keeps one connection's successive sessions in order. `closed` is the one
/// field other threads touch (behind its lock): once the connection is gone, work still queued for it
/// returns at once instead of recognising audio nobody will read.
final class SessionRunner: @unchecked Sendable {
    let queue: DispatchQueue
    private let closed = Locked(false)
    /// Sessions the connection dropped while work for them was still queued (a half-close while an
    /// earlier session's `stop` is in flight): their work is skipped, the other sessions' is not.
    private let abandoned = Locked<Set<Int>>([])
    private var session: (any TranscriptionSession)?
    /// The server's engine generation this session last saw; a newer one is offered to the session,
    /// which switches at its next utterance boundary.
    private var engineGeneration = 0
    private var converter: AudioConverter?
    /// Converted samples for the frame in hand; reused across frames.
    private var samples: [Float] = []
    /// Samples given to the session (at the engine's rate); seconds derive from it so they do not drift.
    private var sampleCount = 0
    private var outputRate = 16000

    init(label: String) {
        queue = DispatchQueue(label: label, qos: .userInitiated)
    }

    /// Result of one step: the events produced and the counters to add to the server's statistics.
    struct Step {
        var events: [RecognitionEvent] = []
        var audioSeconds = 0.0
        var cpuSeconds = 0.0
        var error: String?
        /// The connection was closed before this work ran; nothing was recognised.
        var skipped = false
        /// The session was offered a newer model and will use it from its next utterance boundary.
        var switchedModel = false
    }

    /// Marks the connection gone (any thread): queued work for it is skipped from now on.
    func close() { closed.withLock { $0 = true } }

    var isClosed: Bool { closed.withLock { $0 } }

    /// Marks one session dropped (any thread): its queued work is skipped from now on.
    func abandon(session: Int) { abandoned.withLock { _ = $0.insert(session) } }

    private func skips(_ session: Int) -> Bool {
        isClosed || abandoned.withLock { $0.contains(session) }
    }

    // The methods below run on `queue`.

    func begin(session id: Int, engine: any TranscriptionEngine, generation: Int, format: AudioFormat) -> String? {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !skips(id) else { return nil }
        engineGeneration = generation
        do {
            converter = try AudioConverter(format: format, outputRate: engine.sampleRate)
        } catch {
            return "\(error)"
        }
        session = engine.makeSession()
        outputRate = engine.sampleRate
        sampleCount = 0
        return nil
    }

    /// Recognises one frame. A model `server` reloaded since the session started is offered to the
    /// session here, between frames.
    func accept(_ payload: [UInt8], session id: Int, server: EarshotServer) -> Step {
        dispatchPrecondition(condition: .onQueue(queue))
        var step = Step()
        guard !skips(id) else {
            step.skipped = true
            cancel()
            return step
        }
        guard let session, let converter else { return Step() }
        let (engine, generation) = server.engineSnapshot
        if generation != engineGeneration {
            engineGeneration = generation
            step.switchedModel = engine.sampleRate == outputRate && session.adopt(engine)
        }
        let t0 = threadCPUSeconds()
        samples.removeAll(keepingCapacity: true)
        do {
            try converter.convert(payload, into: &samples)
        } catch {
            step.error = "\(error)"
            return step
        }
        // In slices of a quarter second, so a long frame (a 1 MiB frame at 1000 Hz is 9 minutes of
        // audio) is cut short by a disconnect or a shutdown's deadline instead of running to its end.
        let slice = max(1, outputRate / 4)
        // A live frame (10-100 ms) is one slice: no copy on the common path.
        if samples.count <= slice { step.events = session.accept(samples) }
        var done = samples.count <= slice ? samples.count : 0
        while done < samples.count {
            if done > 0 && skips(id) {
                step.skipped = true
                step.events = []
                cancel()
                return step
            }
            let end = min(done + slice, samples.count)
            step.events += session.accept(Array(samples[done..<end]))
            done = end
        }
        step.audioSeconds = Double(samples.count) / Double(outputRate)
        step.cpuSeconds = threadCPUSeconds() - t0
        sampleCount += samples.count
        return step
    }

    /// Flushes the converter and the session; returns the last events and the session's audio length.
    func finish() -> (Step, Double) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !isClosed else {
            cancel()
            return (Step(skipped: true), 0)
        }
        guard let session, let converter else { return (Step(), 0) }
        let t0 = threadCPUSeconds()
        samples.removeAll(keepingCapacity: true)
        var step = Step()
        do {
            try converter.finish(into: &samples)
        } catch {
            step.error = "\(error)"
        }
        if !samples.isEmpty { step.events = session.accept(samples) }
        step.events += session.finish()
        step.audioSeconds = Double(samples.count) / Double(outputRate)
        step.cpuSeconds = threadCPUSeconds() - t0
        sampleCount += samples.count
        let total = Double(sampleCount) / Double(outputRate)
        cancel()
        return (step, total)
    }

    /// Drops the session without finishing it (the client went away).
    func cancel() {
        session = nil
        converter = nil
        samples = []
    }
}

/// CPU time of the calling thread: recognition cost independent of other load on the machine.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
