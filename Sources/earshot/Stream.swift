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
        model rate and sent in 100 ms frames; each final result is printed on its own line as the \
        server's endpointing cuts utterances. --json prints every event as a JSON line instead (see \
        docs/protocol.md). --realtime sends no faster than the audio plays, as a live source would.

        Examples:
          earshot stream meeting.flac
          earshot stream --json --realtime call.wav
          sox -d -t wav - trim 0 10 | earshot stream -     # '-': audio on standard input
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
        // Standard input or a pipe is copied to a file first, as `transcribe` does (libsndfile seeks).
        let spooled = try Transcribe.spooledStream(file)
        defer { if let spooled { close(Int32(spooled.lastPathComponent)!) } }
        let source = spooled?.path ?? file
        // Errors name the file as the user gave it, not the spooled copy.
        let named = { (error: AudioError) in
            CLIError(spooled.map { "\(error)".replacingOccurrences(of: $0.path, with: self.file) } ?? Transcribe.explained(error, path: self.file))
        }
        // A file that cannot be read is refused before the daemon is bothered.
        do throws(AudioError) { _ = try AudioFile.info(path: source) } catch { throw named(error) }
        let (client, hello) = try socketOptions.connect()
        let path = socketOptions.path
        let audio: DecodedAudio
        do throws(AudioError) {
            audio = try AudioFile.read(path: source, targetSampleRate: hello.sampleRate)
        } catch {
            throw named(error)
        }
        let rate = audio.sampleRate
        let json = self.json

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
            defer { finished.signal() }
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

        do {
            try client.send(.start(AudioFormat(sampleRate: rate, encoding: .s16le, channels: 1), partials: json))
            let frame = rate / 10
            var bytes = [UInt8](repeating: 0, count: frame * 2)
            let start = DispatchTime.now().uptimeNanoseconds
            var offset = 0
            while offset < audio.samples.count, outcome.withLock({ $0 == nil }), !sessionDropped.withLock({ $0 }) {
                let end = min(offset + frame, audio.samples.count)
                let count = end - offset
                for i in 0..<count {
                    let v = Int16(max(-32768, min(32767, (audio.samples[offset + i] * 32768).rounded())))
                    let u = UInt16(bitPattern: v)
                    bytes[2 * i] = UInt8(u & 0xFF)
                    bytes[2 * i + 1] = UInt8(u >> 8)
                }
                try client.send(.audio(Array(bytes[0..<(2 * count)])))
                offset = end
                if realtime {
                    let due = start + UInt64(Double(offset) / Double(rate) * 1e9)
                    let now = DispatchTime.now().uptimeNanoseconds
                    if due > now { usleep(UInt32(min(1_000_000, (due - now) / 1000))) }
                }
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
    }
}
