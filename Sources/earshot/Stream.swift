import ArgumentParser
import Audio
import Dispatch
import Foundation
import Tensors
import Server
import Training

struct StreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream",
        abstract: "Send an audio file to earshotd as a live stream and print its transcript.",
        discussion: """
        The file (any format and rate libsndfile reads) is converted to mono 16-bit PCM at the server's \
        model rate and sent in 100 ms frames as it is decoded; each final result is printed on its own \
        line as the server's endpointing cuts utterances. --json prints every event as a JSON line \
        instead (see docs/protocol.md). --realtime sends no faster than the audio plays, as a live \
        source would.

        '-' (standard input) or a named pipe in WAV or AU (PCM, float, µ-law, A-law) or Ogg Vorbis or \
        Opus is sent as it arrives, so a recorder's output is transcribed live until it stops; a pipe in \
        another format (FLAC, AIFF, MP3, ADPCM) is read to its end first. Ctrl-C ends the audio, and the \
        transcript of what was sent still prints.

        Examples:
          earshot stream meeting.flac
          earshot stream --json --realtime call.wav
          sox -d -t wav - | earshot stream -   # a microphone through sox, live
        """)

    @OptionGroup var socketOptions: SocketOptions

    @Argument(help: "Audio file to stream ('-' for standard input).")
    var file: String

    @Flag(help: "Print the server's events as JSON lines (partials included).")
    var json = false

    @Flag(help: "Pace sending at real time.")
    var realtime = false

    func run() throws {
        if file == "-" && isatty(STDIN_FILENO) == 1 {
            throw CLIError("'-' reads audio from standard input, which is a terminal here: pipe the audio in (cat talk.wav | earshot stream -)")
        }
        let source = try StreamSource.open(file)
        defer { if case .file(_, let spooled?) = source { close(Int32(spooled.lastPathComponent)!) } }
        // Errors name the file as the user gave it, not the spooled copy.
        let named = { (error: AudioError) in
            guard case .file(_, let spooled?) = source else { return CLIError(Transcribe.explained(error, path: self.file)) }
            return CLIError("\(error)".replacingOccurrences(of: spooled.path, with: self.file))
        }
        // A file that cannot be read is refused before the daemon is bothered (a pipe is opened once the
        // daemon has said its rate).
        if case .file(let path, _) = source {
            do throws(AudioError) { _ = try AudioFile.info(path: path) } catch { throw named(error) }
        }
        let (client, hello) = try socketOptions.connect()
        let path = socketOptions.path
        // Decoded as it is sent: memory stays bounded however long the recording, and a pipe's audio goes
        // out as it arrives.
        let decoder: AudioStreamReader
        do throws(AudioError) {
            switch source {
            case .file(let file, _): decoder = try AudioStreamReader(path: file, targetSampleRate: hello.sampleRate)
            case .live(let relay): decoder = try AudioStreamReader(descriptor: relay.descriptor, name: file, targetSampleRate: hello.sampleRate)
            }
        } catch {
            throw named(error)
        }
        let rate = decoder.sampleRate
        let json = self.json
        // Stopped when the audio must end early: a pipe that has gone quiet would keep the sender waiting
        // in its read.
        let relay: PipeRelay? = if case .live(let relay) = source { relay } else { nil }

        // Ctrl-C ends the audio, not the transcript: sending stops, and the finals for what was sent still
        // print (a recorder in the same pipeline, e.g. sox, gets the same Ctrl-C and closes the pipe). A
        // second Ctrl-C leaves at once.
        let interrupted = Locked(false)
        signal(SIGINT, SIG_IGN)
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        interrupt.setEventHandler {
            if interrupted.withLock({ let was = $0; $0 = true; return was }) { Glibc.exit(130) }
            // A pipe with nothing coming would keep the decoder waiting.
            relay?.stop()
        }
        interrupt.resume()

        // Events are read on their own thread while audio is sent: a client that only reads after sending
        // a long file would fall behind and be disconnected as too slow.
        let outcome = Locked<Result<Void, CLIError>?>(nil)
        // Only the answer to our own `stop` (it carries this id) ends the stream well: a daemon shutting
        // down flushes the session with a `stopped` of its own, then says why it closes.
        let stopID = RequestID.string("earshot-stream-stop")
        // Set by the reader when the session is gone: the rest of the audio would only be answered with
        // errors, so the sender stops and asks for the stop's answer at once.
        let sessionDropped = Locked(false)
        let finished = DispatchSemaphore(value: 0)
        let reader = Thread {
            defer {
                relay?.stop()
                finished.signal()
            }
            // An error that leaves the connection open (the session refused or dropped: the audio after it
            // went nowhere) makes the transcript incomplete, so the command fails once the stream ends.
            var sessionError: String?
            do {
                while let line = try client.receiveLine() {
                    guard let reply = try? MessageCodec.decodeServer(line: line) else {
                        writeErr("\(path) sent an unreadable message; ignored")
                        continue
                    }
                    if json { writeOut(String(decoding: line, as: UTF8.self) + "\n") }
                    switch reply.message {
                    case .final(_, _, let transcript, _, _) where !json:
                        if !transcript.text.isEmpty { writeOut(transcript.text + "\n") }
                    case .stopped:
                        guard reply.id == stopID else { continue }  // the reason follows, or the connection closes
                        outcome.withLock {
                            $0 = sessionError.map { .failure(CLIError("\(path) did not transcribe the whole stream: \($0)")) } ?? .success(())
                        }
                        return
                    case .error(let code, let message):
                        // A closing error is reported once, as the command's failure, below.
                        if code.closesConnection {
                            outcome.withLock { $0 = .failure(CLIError("\(path) closed the stream: \(message)")) }
                            return
                        }
                        // Our stop answered with an error: no `stopped` will come (the session was gone).
                        if reply.id == stopID {
                            outcome.withLock { $0 = .failure(CLIError("\(path) did not transcribe the whole stream: \(sessionError ?? message)")) }
                            return
                        }
                        // Reported once: a dropped session answers every later audio frame with an error.
                        if sessionError == nil {
                            sessionError = message
                            if !json { writeErr("\(path): \(message)") }
                            sessionDropped.withLock { $0 = true }
                            relay?.stop()
                        }
                    default:
                        break
                    }
                }
                outcome.withLock { $0 = .failure(CLIError("\(path) closed the connection before the stream was finished")) }
            } catch {
                outcome.withLock { $0 = .failure(CLIError("\(error)")) }
            }
        }
        reader.start()

        // Audio that could not be read to its end (a truncated file, a pipe that failed): what was sent is
        // still transcribed and printed, then the command fails with the reason.
        var audioFailure: CLIError?
        var sent = 0
        do {
            try client.send(.start(AudioFormat(sampleRate: rate, encoding: .s16le, channels: 1), partials: json))
            let frame = rate / 10
            var bytes = [UInt8](repeating: 0, count: frame * 2)
            let start = DispatchTime.now().uptimeNanoseconds
            var pending: [Float] = []
            var more = true
            let sessionOver = { outcome.withLock({ $0 != nil }) || sessionDropped.withLock({ $0 }) }
            sending: while more, !sessionOver() {
                // After Ctrl-C, the audio already decoded still goes, then the stop.
                if interrupted.withLock({ $0 }) {
                    more = false
                } else {
                    do throws(AudioError) { more = try decoder.read(appendingTo: &pending) } catch {
                        audioFailure = named(error)
                        more = false
                    }
                }
                if !more, let failure = relay?.failure {
                    audioFailure = CLIError("cannot read '\(file)': \(failure)")
                }
                // Whole 100 ms frames as they fill; the last, shorter one at the end.
                var offset = 0
                while pending.count - offset >= frame || (!more && offset < pending.count) {
                    let count = min(frame, pending.count - offset)
                    for i in 0..<count {
                        let v = Int16(max(-32768, min(32767, (pending[offset + i] * 32768).rounded())))
                        let u = UInt16(bitPattern: v)
                        bytes[2 * i] = UInt8(u & 0xFF)
                        bytes[2 * i + 1] = UInt8(u >> 8)
                    }
                    try client.send(.audio(Array(bytes[0..<(2 * count)])))
                    offset += count
                    sent += count
                    if realtime {
                        let due = start + UInt64(Double(sent) / Double(rate) * 1e9)
                        let now = DispatchTime.now().uptimeNanoseconds
                        if due > now { usleep(UInt32(min(1_000_000, (due - now) / 1000))) }
                    }
                    if sessionOver() { break sending }
                }
                pending.removeFirst(offset)
            }
            if outcome.withLock({ $0 == nil }) { try client.send(ClientRequest(.stop, id: stopID)) }
        } catch {
            // The reader usually knows better why the server went away.
            finished.wait()
            if case .failure(let failure)? = outcome.withLock({ $0 }) { throw failure }
            throw CLIError(error.description)
        }
        finished.wait()
        if case .failure(let failure)? = outcome.withLock({ $0 }) { throw failure }
        // Cut short on purpose: the transcript of what was sent is complete, the input's rest is not a
        // fault; the status says it was interrupted, as a shell expects of Ctrl-C.
        if interrupted.withLock({ $0 }) {
            writeErr(String(format: "earshot stream: interrupted; the transcript covers the first %.1f s", Double(sent) / Double(rate)))
            throw ExitCode(130)
        }
        if let audioFailure { throw audioFailure }
    }
}

/// Where `earshot stream` reads its audio: a file by path; standard input or a pipe that libsndfile
/// decodes in order (`decodesInOrder`), relayed as its bytes arrive, so that
/// `sox -d -t wav - | earshot stream -` is transcribed while it records; any other pipe (FLAC, AIFF,
/// MP3 need to seek) copied to its end first, as `transcribe` does.
enum StreamSource {
    /// `spooled`: the open, unlinked copy of a pipe (/proc/self/fd/N; the caller closes N).
    case file(path: String, spooled: URL?)
    case live(PipeRelay)

    static func open(_ file: String) throws -> StreamSource {
        guard let input = try Transcribe.pipedInput(file) else { return .file(path: file, spooled: nil) }
        // The container's signature and its first chunk or packet: enough to tell which streams decode in order.
        var head: [UInt8] = []
        var byte = [UInt8](repeating: 0, count: headBytes)
        while head.count < headBytes {
            let n = byte.withUnsafeMutableBytes { read(input, $0.baseAddress, headBytes - head.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError("cannot read '\(file)': \(String(cString: strerror(errno)))")
            }
            head += byte[0..<n]
        }
        if decodesInOrder(head) {
            return .live(try PipeRelay(input: input, head: head, name: file))
        }
        defer { if input != STDIN_FILENO { close(input) } }
        let spooled = try Transcribe.spool(input, head: head, name: file)
        return .file(path: spooled.path, spooled: spooled)
    }

    /// Bytes read before deciding: a WAV header up to its extensible format's sub-format.
    static let headBytes = 64

    /// Whether libsndfile reads this stream from a pipe to its end without seeking, given its first
    /// bytes: WAV (little-endian, "fmt " first) and AU in PCM, float, µ-law or A-law, with a streaming
    /// writer's "length unknown" header too (sox, arecord, ffmpeg), and Ogg Vorbis or Opus. Not on a
    /// pipe: FLAC (native or in Ogg), ADPCM and GSM in WAV (libsndfile refuses them there), and AIFF,
    /// whose streaming placeholder reads as a length that is not there; nor WAV forms this does not
    /// parse (RF64, RIFX, another chunk before "fmt "), which go the safe way, to a file.
    static func decodesInOrder(_ head: [UInt8]) -> Bool {
        func text(_ range: Range<Int>) -> String { head.count >= range.upperBound ? String(decoding: head[range], as: UTF8.self) : "" }
        func le16(_ at: Int) -> Int { head.count >= at + 2 ? Int(head[at]) | Int(head[at + 1]) << 8 : -1 }
        switch text(0..<4) {
        case "RIFF":
            guard text(8..<12) == "WAVE", text(12..<16) == "fmt " else { return false }
            // WAVE_FORMAT_PCM, _IEEE_FLOAT, _ALAW, _MULAW; _EXTENSIBLE names its own in the sub-format GUID.
            let format = le16(20) == 0xFFFE ? le16(44) : le16(20)
            return [1, 3, 6, 7].contains(format)
        case ".snd":
            guard head.count >= 16 else { return false }
            let encoding = head[12..<16].reduce(0) { $0 << 8 | Int($1) }
            // µ-law, 8-32-bit PCM, float, double, A-law.
            return [1, 2, 3, 4, 5, 6, 7, 27].contains(encoding)
        case "OggS":
            // The first page's first packet names the codec; it starts after the segment table.
            guard head.count > 26 else { return false }
            let packet = 27 + Int(head[26])
            return text(packet..<(packet + 7)) == "\u{01}vorbis" || text(packet..<(packet + 8)) == "OpusHead"
        default:
            return false
        }
    }
}

/// Copies a pipe into a pipe of our own, after the signature bytes `StreamSource` already read from it,
/// so that libsndfile sees the whole stream from its first byte as it arrives.
final class PipeRelay: @unchecked Sendable {
    /// The read end libsndfile decodes; left open until the process ends, so that the copying thread
    /// never writes into a closed pipe.
    let descriptor: Int32
    /// The write end, which only the copying thread writes and closes.
    private let output: Int32
    /// Whether `output` is still open: `stop` must not touch the number once the thread has closed it.
    private let outputOpen = Locked(true)
    private let error = Locked<String?>(nil)

    /// Why the input could not be read to its end, once the relay has stopped.
    var failure: String? { error.withLock { $0 } }

    init(input: Int32, head: [UInt8], name: String) throws {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw CLIError("cannot read '\(name)': no pipe: \(String(cString: strerror(errno)))") }
        // Not inherited by anything this process starts (Glibc's module lacks pipe2).
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        descriptor = ends[0]
        output = ends[1]
        let output = ends[1], error = self.error, outputOpen = self.outputOpen
        Thread {
            defer {
                outputOpen.withLock { close(output); $0 = false }
                if input != STDIN_FILENO { close(input) }
            }
            var buffer = head + [UInt8](repeating: 0, count: 65536)
            var count = head.count
            while true {
                var written = 0
                while written < count {
                    let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, count - written) }
                    if w < 0 && errno == EINTR { continue }
                    guard w > 0 else { return }
                    written += w
                }
                count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                if count == 0 { return }
                if count < 0 {
                    if errno == EINTR { count = 0; continue }
                    let reason = String(cString: strerror(errno))
                    error.withLock { $0 = reason }
                    return
                }
            }
        }.start()
    }

    /// Ends the relayed stream now: the decoder sees its end at once, even while the input is silent.
    /// The write end's number is pointed at /dev/null rather than closed, so the copying thread's later
    /// writes and close go there instead of to whatever file might reuse the number.
    func stop() {
        outputOpen.withLock { open in
            guard open else { return }
            let null = Glibc.open("/dev/null", O_WRONLY | O_CLOEXEC)
            guard null >= 0 else { return }
            dup2(null, output)
            close(null)
        }
    }
}
