import Dispatch
import NIOCore
import Recognizer

/// One client connection, on its channel's event loop: cuts the byte stream into frames, answers
/// requests, hands audio to its `SessionRunner`, and writes everything outbound through a bounded
/// `OutboundQueue` so a client that stops reading costs bounded memory and never blocks anyone else.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: EarshotServer
    private let id: Int
    private var context: ChannelHandlerContext?
    private var decoder: FrameDecoder
    private var outbound: OutboundQueue
    private var needsFlush = false
    /// Set once the connection is being closed; everything after is ignored.
    private var closing = false
    private var registered = false

    private var subscribed = false
    private var subscribedPartials = true

    /// The running session, if any; `runner` outlives sessions so they stay in order on one queue.
    private var runner: SessionRunner?
    private var session: (id: Int, format: AudioFormat, partials: Bool)?
    /// Audio bytes handed to the runner and not yet processed; above the backlog limit reading pauses.
    private var backlogBytes = 0
    /// What a queued audio frame costs beyond its payload (closure, array, dispatch block), counted
    /// against `sessionBacklogBytes`.
    static let queuedFrameOverhead = 256
    /// The running session's audio frames cut out of one read, not yet handed to the runner: they go as
    /// one job, with one answer back to the event loop, so a client sending tiny frames costs the loop
    /// (shared by every client) a job per read, not per frame. Handed over at the end of the read, and
    /// before any other request, so everything stays in order.
    private var pendingAudio: [[UInt8]] = []
    private var pendingAudioCost = 0
    private var readingPaused = false
    /// Sessions whose `stop` is being processed (their `stopped` not yet sent).
    private var stopsInFlight = 0
    /// A shutdown skipped a session's queued audio (its flush deadline, or a shutdown without flushing).
    private var flushCut = false
    /// `reload` requests being processed (their reply not yet sent).
    private var reloadsInFlight = 0
    private var shutdownPromise: EventLoopPromise<Void>?
    /// The connection's closing message (an error that ends it) has been written: nothing may follow.
    private var lastWritten = false
    /// The client has shut down its sending side (`printf ... | socat`, a pipe): the connection closes
    /// once the `stop`s it sent are answered.
    private var inputClosed = false
    /// When bytes last arrived while a message was unfinished, and the timer that closes the connection
    /// once none has come for `frameStallSeconds` (armed only while the decoder holds part of a message).
    private var lastInput = NIODeadline.now()
    private var stallTimer: Scheduled<Void>?

    init(server: EarshotServer) {
        self.server = server
        self.id = server.nextConnectionID()
        self.decoder = FrameDecoder(maxLineBytes: server.configuration.maxLineBytes,
                                    maxFrameBytes: server.configuration.maxFrameBytes)
        self.outbound = OutboundQueue(maxCount: server.configuration.clientQueueEvents,
                                      maxBytes: server.configuration.clientQueueBytes)
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        let ref = ConnectionRef(id: id, eventLoop: context.eventLoop,
                                handler: NIOLoopBound(self, eventLoop: context.eventLoop))
        switch server.register(ref) {
        case .admitted:
            break
        case .shuttingDown:
            sendFinal(.error(code: .shuttingDown, message: "the server is shutting down"))
            return
        case .full:
            server.countRefusedClient()
            sendFinal(.error(code: .tooManyClients, message: "the server already serves its maximum of \(server.configuration.maxClients) client\(server.configuration.maxClients == 1 ? "" : "s") (max_clients); try again when one has left"))
            return
        }
        registered = true
        send(.hello(server.hello()))
        flushIfNeeded()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        if registered { server.unregister(id) }
        registered = false
        dropSession(closingRunner: true)
        outbound.removeAll()
        stallTimer?.cancel()
        stallTimer = nil
        shutdownPromise?.succeed(())
        shutdownPromise = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // Every frame sent before the half-close has been handled, but for a last line without its newline:
        // that is the request (`printf '{"type":"status"}' | socat`), not nothing.
        if !closing, let last = decoder.endOfInput() {
            handle(last)
        } else if !closing, let cut = decoder.unfinishedAudio {
            send(.error(code: .badFraming, message: "the connection ended inside an audio frame (\(cut.received) of its \(cut.declared) bytes came); the frame was ignored"))
        }
        // A session without `stop` is dropped, as on a close (docs/protocol.md); the answers to a `stop`
        // or `reload` received still go out.
        inputClosed = true
        dropSession(closingRunner: false)
        // The subscription goes too: only the answers to what was asked still come.
        if subscribed {
            subscribed = false
            server.setSubscription(id, subscribed: false)
        }
        closeAfterInputIfDone()
    }

    /// Ends the running session without results: its audio still queued on the runner is skipped rather
    /// than recognised, since nobody will read the results (a client that sent a burst and vanished would
    /// otherwise cost up to the backlog limit of CPU). `closingRunner`: the connection is gone, so the
    /// work of a `stop` in flight is skipped too; otherwise that `stop` is still answered.
    private func dropSession(closingRunner: Bool) {
        if let session {
            self.session = nil
            server.sessionEnded()
            runner?.abandon(session: session.id)
        }
        if closingRunner, let runner {
            runner.close()
            runner.queue.async { runner.cancel() }
        }
    }

    /// After a half-close, once no `stop` or `reload` is pending: writes what is queued, then closes.
    private func closeAfterInputIfDone() {
        guard inputClosed, stopsInFlight == 0, reloadsInFlight == 0, shutdownPromise == nil, !closing else { return }
        closeAfterWriting(ByteBuffer())
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        while !closing {
            let frame: Frame?
            do {
                frame = try decoder.next()
            } catch {
                server.logger.debug("framing error", metadata: ["connection": "\(id)", "error": "\(error)"])
                sendFinal(.error(code: error.code, message: error.description))
                break
            }
            guard let frame else { break }
            handle(frame)
        }
        dispatchPendingAudio()
        if !closing && decoder.bufferedCount > 0 {
            lastInput = .now()
            armStallTimer()
        }
        flushIfNeeded()
    }

    /// Closes the connection with `frame_timeout` once a message has been left unfinished with no byte
    /// arriving for `frameStallSeconds`; one timer per connection, re-armed when it finds later input.
    private func armStallTimer() {
        guard stallTimer == nil, let context else { return }
        let limit = TimeAmount.nanoseconds(Int64(server.configuration.frameStallSeconds * 1e9))
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        stallTimer = context.eventLoop.scheduleTask(deadline: lastInput + limit) { me.value.stallTimerFired() }
    }

    private func stallTimerFired() {
        stallTimer = nil
        guard !closing, !inputClosed, decoder.bufferedCount > 0 else { return }
        // While reading is paused the missing bytes may be waiting in the socket: the server's delay,
        // not the client's.
        if readingPaused { lastInput = .now() }
        let limit = server.configuration.frameStallSeconds
        if NIODeadline.now() < lastInput + .nanoseconds(Int64(limit * 1e9)) {
            armStallTimer()
            return
        }
        let what: String
        if let cut = decoder.unfinishedAudio {
            what = "an audio frame, \(cut.received) of its \(cut.declared) bytes received"
        } else {
            what = "a JSON line without its newline, \(decoder.bufferedCount) bytes received"
        }
        server.logger.info("closing a client that stalled inside a message", metadata: ["connection": "\(id)"])
        sendFinal(.error(code: .frameTimeout, message: "no byte came for \(Self.seconds(limit)) in the middle of a message (\(what)); closing the connection"))
    }

    private static func seconds(_ s: Double) -> String {
        s == s.rounded() && s < 1e9 ? "\(Int(s)) s" : "\((s * 1000).rounded() / 1000) s"
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        drain()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Socket errors (a reset from a client that vanished mid-frame) end only this connection.
        server.logger.debug("connection error", metadata: ["connection": "\(id)", "error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: requests

    private func handle(_ frame: Frame) {
        if case .line = frame { dispatchPendingAudio() }
        let request: ClientRequest
        do {
            request = try MessageCodec.decodeClient(frame)
        } catch {
            send(.error(code: error.code, message: error.message), id: error.id)
            return
        }
        let id = request.id
        switch request.message {
        case .ping:
            send(.pong, id: id)
        case .subscribe(let partials):
            subscribed = true
            subscribedPartials = partials
            server.setSubscription(self.id, subscribed: true)
            send(.subscribed(partials: partials), id: id)
        case .unsubscribe:
            subscribed = false
            server.setSubscription(self.id, subscribed: false)
            send(.unsubscribed, id: id)
        case .status:
            send(.status(server.status()), id: id)
        case .reload(let path):
            reload(path: path, id: id)
        case .start(let format, let partials):
            start(format: format, partials: partials, id: id)
        case .audio(let payload):
            audio(payload)
        case .stop:
            stop(id: id)
        }
    }

    private func start(format: AudioFormat, partials: Bool, id: RequestID?) {
        guard session == nil else {
            send(.error(code: .sessionActive, message: "a session is already running on this connection; send stop first"), id: id)
            return
        }
        let runner = self.runner ?? SessionRunner(label: "earshot.session.\(self.id)")
        self.runner = runner
        let sessionID = server.sessionStarted()
        session = (sessionID, format, partials)
        let (engine, generation) = server.engineSnapshot
        let loop = context!.eventLoop
        let me = NIOLoopBound(self, eventLoop: loop)
        let server = self.server
        server.pendingWork.enter()
        runner.queue.async {
            defer { server.pendingWork.leave() }
            if let problem = runner.begin(session: sessionID, engine: engine, generation: generation, format: format) {
                loop.execute { me.value.sessionFailed(sessionID, problem) }
            }
        }
        send(.started(session: sessionID, format: format), id: id)
    }

    private func audio(_ payload: [UInt8]) {
        guard let session, runner != nil else {
            send(.error(code: .noSession, message: "audio frame without a session: send start first"))
            return
        }
        guard payload.count % session.format.bytesPerFrame == 0 else {
            send(.error(code: .misalignedAudio, message: "an audio frame of \(payload.count) bytes is not a whole number of \(session.format.bytesPerFrame)-byte sample frames (\(session.format.encoding.rawValue), \(session.format.channels) channel(s)); the frame was ignored"))
            return
        }
        guard !payload.isEmpty else { return }
        // Each queued frame also costs its closure and buffers: a stream of 2-byte frames must not
        // queue millions of them under the byte limit. And a frame counts at least as much as the same
        // length of 16 kHz 16-bit mono audio: 1 MiB at 1000 Hz is 9 minutes of recognition, not 33 s.
        let frames = payload.count / session.format.bytesPerFrame
        let cost = max(payload.count, frames * 32000 / session.format.sampleRate) + Self.queuedFrameOverhead
        backlogBytes += cost
        if backlogBytes > server.configuration.sessionBacklogBytes && !readingPaused {
            readingPaused = true
            server.countReadPause()
            context?.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        pendingAudio.append(payload)
        pendingAudioCost += cost
    }

    /// Hands the frames of `pendingAudio` to the runner as one job (see there).
    private func dispatchPendingAudio() {
        guard !pendingAudio.isEmpty else { return }
        let payloads = pendingAudio, cost = pendingAudioCost
        pendingAudio = []
        pendingAudioCost = 0
        // The frames were taken for a session and a runner that both exist; a close since then abandons
        // the session, and the runner skips its work.
        guard let session, let runner, let loop = context?.eventLoop else {
            backlogBytes -= cost
            return
        }
        let me = NIOLoopBound(self, eventLoop: loop)
        let server = self.server
        let partials = session.partials
        let sessionID = session.id
        let connection = self.id
        server.pendingWork.enter()
        runner.queue.async {
            defer { server.pendingWork.leave() }
            var merged = SessionRunner.Step()
            for payload in payloads {
                let step = runner.accept(payload, session: sessionID, server: server)
                server.countFrame(skipped: step.skipped, bytes: payload.count)
                if step.switchedModel {
                    server.logger.info("session switches to the reloaded model at its next utterance boundary",
                                       metadata: ["connection": "\(connection)"])
                }
                server.addProcessing(audioSeconds: step.audioSeconds, cpuSeconds: step.cpuSeconds)
                merged.events += step.events
                merged.error = merged.error ?? step.error
            }
            loop.execute { me.value.sessionStep(merged, partials: partials, consumed: cost) }
        }
    }

    private func stop(id: RequestID?) {
        guard let session, let runner else {
            send(.error(code: .noSession, message: "stop without a session: send start first"), id: id)
            return
        }
        self.session = nil
        stopsInFlight += 1
        let loop = context!.eventLoop
        let me = NIOLoopBound(self, eventLoop: loop)
        let server = self.server
        server.pendingWork.enter()
        runner.queue.async {
            defer { server.pendingWork.leave() }
            let (step, total) = runner.finish()
            server.addProcessing(audioSeconds: step.audioSeconds, cpuSeconds: step.cpuSeconds)
            loop.execute { me.value.sessionStopped(session.id, session.partials, step, total: total, id: id) }
        }
    }

    private func reload(path: String?, id: RequestID?) {
        guard server.hooks.reload != nil else {
            send(.error(code: .reloadUnavailable, message: ReloadError.unavailable.description), id: id)
            return
        }
        // One at a time per connection: each load takes seconds of CPU from the sessions, and a client
        // that wrote thousands of reload lines would otherwise queue thousands of loads (and a shutdown
        // would wait for all of them).
        guard reloadsInFlight == 0 else {
            send(.error(code: .reloadFailed, message: "a reload this connection asked for is still in progress; wait for its answer"), id: id)
            return
        }
        let loop = context!.eventLoop
        let me = NIOLoopBound(self, eventLoop: loop)
        let server = self.server
        // Loading a model takes seconds: off the event loop.
        reloadsInFlight += 1
        server.pendingWork.enter()
        DispatchQueue.global(qos: .utility).async {
            defer { server.pendingWork.leave() }
            let reply: ServerMessage
            do throws(ReloadError) {
                reply = .reloaded(try server.reload(modelPath: path).summary)
            } catch {
                switch error {
                case .unavailable: reply = .error(code: .reloadUnavailable, message: error.description)
                case .failed: reply = .error(code: .reloadFailed, message: error.description)
                }
            }
            loop.execute { me.value.reloadAnswered(reply, id: id) }
        }
    }

    // MARK: results from the session queue (on the event loop)

    private func sessionFailed(_ sessionID: Int, _ problem: String) {
        guard !closing, session?.id == sessionID else { return }
        session = nil
        server.sessionEnded()
        send(.error(code: .unsupportedSampleRate, message: "cannot convert this audio: \(problem)"))
        flushIfNeeded()
    }

    private func sessionStep(_ step: SessionRunner.Step, partials: Bool, consumed: Int) {
        backlogBytes -= consumed
        if readingPaused && backlogBytes <= server.configuration.sessionBacklogBytes / 2 {
            readingPaused = false
            lastInput = .now()
            context?.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            context?.read()
        }
        // While a shutdown waits for a `stop`, the audio queued ahead of it is that session's: its results
        // go out before `stopped`, as they would for the client's own `stop`. (Once no stop is in flight,
        // the shutdown's error has been sent, and nothing may follow it.)
        guard !closing || (shutdownPromise != nil && stopsInFlight > 0) else { return }
        if let error = step.error {
            send(.error(code: .internalError, message: "audio conversion failed: \(error)"))
        }
        sendSessionEvents(step.events, partials: partials)
        flushIfNeeded()
    }

    private func sessionStopped(_ sessionID: Int, _ partials: Bool, _ step: SessionRunner.Step, total: Double,
                                id: RequestID?) {
        stopsInFlight -= 1
        server.sessionEnded()
        guard !closing || shutdownPromise != nil else { return }
        // Skipped by the shutdown (its flush deadline, or no flush): no `stopped`, whose figures would
        // claim the audio recognised; the closing error says what happened.
        if step.skipped && shutdownPromise != nil {
            flushCut = true
            if stopsInFlight == 0 { finishShutdown() }
            return
        }
        sendSessionEvents(step.events, partials: partials)
        send(.stopped(session: sessionID, audioSeconds: total), id: id)
        flushIfNeeded()
        if shutdownPromise != nil && stopsInFlight == 0 { finishShutdown() }
        closeAfterInputIfDone()
    }

    private func sendSessionEvents(_ events: [RecognitionEvent], partials: Bool) {
        for event in events {
            if case .partial = event {
                guard partials else { continue }
                enqueue(ByteBuffer(string: MessageCodec.encodeLine(ServerReply(EventSource.session.message(for: event)))),
                        droppable: true)
            } else {
                send(EventSource.session.message(for: event))
            }
        }
    }

    private func sendNow(_ message: ServerMessage, id: RequestID?) {
        send(message, id: id)
        flushIfNeeded()
    }

    private func reloadAnswered(_ reply: ServerMessage, id: RequestID?) {
        reloadsInFlight -= 1
        sendNow(reply, id: id)
        closeAfterInputIfDone()
    }

    // MARK: microphone events (on the event loop)

    func deliverBroadcast(_ events: [EncodedEvent]) {
        guard subscribed, !closing else { return }
        for event in events {
            if event.isPartial && !subscribedPartials { continue }
            enqueue(event.bytes, droppable: event.isPartial)
            if closing { return }
        }
        flushIfNeeded()
    }

    // MARK: shutdown (on the event loop)

    func shutdown(flushing: Bool) -> EventLoopFuture<Void> {
        guard let context else { return server.group.next().makeSucceededVoidFuture() }
        let promise = context.eventLoop.makePromise(of: Void.self)
        if closing && !context.channel.isActive { promise.succeed(()); return promise.futureResult }
        shutdownPromise = promise
        subscribed = false
        if flushing && session != nil { stop(id: nil) }
        else if session != nil { dropSession(closingRunner: true) }
        closing = true
        if stopsInFlight == 0 {
            finishShutdown()
        } else {
            // A bound on the flush: closing the runner skips the audio still queued, and the stop then
            // comes back at once, without results (see `sessionStopped`). A stop whose work had already
            // begun comes back whole.
            let me = NIOLoopBound(self, eventLoop: context.eventLoop)
            let deadline = TimeAmount.nanoseconds(Int64(server.configuration.shutdownFlushSeconds * 1e9))
            context.eventLoop.scheduleTask(in: deadline) {
                let connection = me.value
                guard connection.stopsInFlight > 0, let runner = connection.runner else { return }
                runner.close()
            }
        }
        return promise.futureResult
    }

    private func finishShutdown() {
        sendFinal(.error(code: .shuttingDown, message: flushCut
            ? "the server is shutting down; the audio of this connection's session that was still waiting to be recognised was not, in the time a shutdown gives it"
            : "the server is shutting down"))
    }

    // MARK: output

    private func send(_ message: ServerMessage, id: RequestID? = nil) {
        enqueue(ByteBuffer(string: MessageCodec.encodeLine(ServerReply(message, id: id))), droppable: false)
    }

    private func enqueue(_ bytes: ByteBuffer, droppable: Bool) {
        guard let context, !lastWritten, !closing || shutdownPromise != nil else { return }
        if outbound.isEmpty && context.channel.isWritable {
            context.write(wrapOutboundOut(bytes), promise: nil)
            needsFlush = true
            return
        }
        switch outbound.push(.init(bytes: bytes, droppable: droppable)) {
        case .queued(let dropped):
            if dropped > 0 { server.countDropped(dropped) }
        case .dropped:
            server.countDropped(1)
        case .overflow where closing:
            // A shutdown flushing a session: it ends within the grace period whatever the client
            // does, so what its queue cannot hold goes to the socket's buffer instead of being lost.
            writeQueuedIgnoringWritability()
            context.write(wrapOutboundOut(bytes), promise: nil)
            needsFlush = true
        case .overflow:
            disconnectTooSlow(overflowing: bytes)
        }
    }

    private func drain() {
        guard let context else { return }
        while context.channel.isWritable, let item = outbound.pop() {
            context.write(wrapOutboundOut(item.bytes), promise: nil)
            needsFlush = true
        }
        flushIfNeeded()
    }

    private func flushIfNeeded() {
        guard needsFlush, let context else { return }
        needsFlush = false
        context.flush()
    }

    private func writeQueuedIgnoringWritability() {
        guard let context else { return }
        while let item = outbound.pop() {
            context.write(wrapOutboundOut(item.bytes), promise: nil)
        }
    }

    /// The queue is full of finals: what is queued and the event that did not fit still go out, then the
    /// error (docs/protocol.md, "Slow clients"); a client that reads within the grace period loses nothing.
    private func disconnectTooSlow(overflowing: ByteBuffer) {
        guard !closing, let context else { return }
        server.countSlowDisconnect()
        writeQueuedIgnoringWritability()
        context.write(wrapOutboundOut(overflowing), promise: nil)
        server.logger.info("disconnecting a client too slow to read its events", metadata: ["connection": "\(id)"])
        sendFinal(.error(code: .clientTooSlow,
                         message: "client too slow: more than \(server.configuration.clientQueueEvents) events or \(server.configuration.clientQueueBytes) bytes waiting"))
    }

    /// Writes whatever is queued, then `message`, and closes once that is written, or after the grace
    /// period if the client does not read.
    private func sendFinal(_ message: ServerMessage) {
        closeAfterWriting(ByteBuffer(string: MessageCodec.encodeLine(ServerReply(message))))
    }

    /// Writes everything queued, then `last`, then closes (at most `closeGraceSeconds` later for a client
    /// that does not read). Writes complete in order, so when `last` has, everything before it is out.
    private func closeAfterWriting(_ last: ByteBuffer) {
        guard let context, !lastWritten else { return }
        closing = true
        // Nothing more can reach this client: a session still running (a client too slow, a framing
        // error, a half-close without stop) stops using the runner now, not when the socket closes.
        dropSession(closingRunner: true)
        writeQueuedIgnoringWritability()
        // The closing error is the last message: a reload answered later, or a second closing error,
        // must not follow it (the protocol promises nothing comes after).
        lastWritten = true
        if registered { server.unregister(id); registered = false }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(last)).whenComplete { _ in channel.close(promise: nil) }
        let grace = TimeAmount.nanoseconds(Int64(server.configuration.closeGraceSeconds * 1e9))
        context.eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
    }
}
