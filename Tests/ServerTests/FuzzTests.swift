import Server
import Testing
import TestSupport

/// The codec must survive anything a socket can deliver, and cutting must not depend on how reads split.
@Suite struct FuzzTests {
    /// Feeds bytes to a decoder in the given pieces and returns the frames and the error (if any) it ends
    /// with; every frame is also run through the message parser, which must throw or return, never crash.
    static func run(_ pieces: [[UInt8]], maxLine: Int = 512, maxFrame: Int = 4096) -> ([Frame], FrameError?, [String]) {
        var decoder = FrameDecoder(maxLineBytes: maxLine, maxFrameBytes: maxFrame)
        var frames: [Frame] = []
        var parsed: [String] = []
        for piece in pieces {
            decoder.append(piece)
            while true {
                do {
                    guard let frame = try decoder.next() else { break }
                    frames.append(frame)
                    do {
                        parsed.append("\(try MessageCodec.decodeClient(frame))")
                    } catch {
                        parsed.append("error \(error.code)")
                    }
                    if case .line(let line) = frame { _ = try? MessageCodec.decodeServer(line: line) }
                } catch {
                    return (frames, error, parsed)
                }
            }
        }
        return (frames, nil, parsed)
    }

    static func split<G: RandomNumberGenerator>(_ bytes: [UInt8], using rng: inout G) -> [[UInt8]] {
        var pieces: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            // Mostly tiny pieces (1-3 bytes cut headers and UTF-8 sequences) with some large ones.
            let n = Bool.random(using: &rng) ? Int.random(in: 1...3, using: &rng) : Int.random(in: 1...200, using: &rng)
            pieces.append(Array(bytes[i..<min(i + n, bytes.count)]))
            i += n
        }
        return pieces
    }

    /// A valid client stream: random messages, some with odd but legal content.
    static func validStream<G: RandomNumberGenerator>(using rng: inout G) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<Int.random(in: 1...30, using: &rng) {
            switch Int.random(in: 0..<8, using: &rng) {
            case 0: bytes += MessageCodec.encode(ClientRequest(.ping, id: .int(Int.random(in: -5...5, using: &rng))))
            case 1: bytes += MessageCodec.encode(ClientRequest(.subscribe(partials: Bool.random(using: &rng))))
            case 2: bytes += MessageCodec.encode(ClientRequest(.start(AudioFormat(sampleRate: 8000 * Int.random(in: 1...6, using: &rng)), partials: true)))
            case 3:
                let payload = (0..<Int.random(in: 0...600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                bytes += MessageCodec.encode(ClientRequest(.audio(payload)))
            case 4: bytes += MessageCodec.encode(ClientRequest(.reload(modelPath: "/tmp/ü \u{1F600}\\\"")))
            case 5: bytes += Array("\r\n  \n".utf8)
            case 6: bytes += Array(#"{"type":"unknown","x":[{"y":null}]}"#.utf8) + [10]
            default: bytes += Array(#"{"type":"stop"}"#.utf8) + [13, 10]
            }
        }
        return bytes
    }

    @Test func randomByteStreamsNeverCrashTheDecoderOrParser() {
        var rng = SeededGenerator(seed: 0xEA25_0001)
        var errors = 0, frames = 0
        for _ in 0..<3000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...300, using: &rng) {
                // Bias towards the bytes that matter to the framing and to JSON.
                switch Int.random(in: 0..<6, using: &rng) {
                case 0: bytes.append([0x00, 0x7B, 0x7D, 0x0A, 0x22, 0x3A, 0x5B, 0x5D][Int.random(in: 0..<8, using: &rng)])
                case 1: bytes += Array(#"{"type":"start","sample_rate":"#.utf8)
                default: bytes.append(UInt8.random(in: 0...255, using: &rng))
                }
            }
            let (f, error, _) = Self.run(Self.split(bytes, using: &rng))
            frames += f.count
            if error != nil { errors += 1 }
        }
        // Both paths were exercised (not a vacuous loop).
        #expect(errors > 100)
        #expect(frames > 100)
    }

    @Test func validStreamsParseIdenticallyHoweverSplit() throws {
        var rng = SeededGenerator(seed: 0xEA25_0002)
        for _ in 0..<2000 {
            let stream = Self.validStream(using: &rng)
            let whole = Self.run([stream])
            #expect(whole.1 == nil)
            let bytewise = Self.run(stream.map { [$0] })
            let random = Self.run(Self.split(stream, using: &rng))
            #expect(bytewise.0 == whole.0)
            #expect(random.0 == whole.0)
            #expect(random.2 == whole.2)
            #expect(random.1 == nil)
        }
    }

    @Test func truncatedValidStreamsYieldAPrefixAndNoError() {
        var rng = SeededGenerator(seed: 0xEA25_0003)
        for _ in 0..<1000 {
            let stream = Self.validStream(using: &rng)
            let whole = Self.run([stream]).0
            let cut = Int.random(in: 0...stream.count, using: &rng)
            let (frames, error, _) = Self.run(Self.split(Array(stream[0..<cut]), using: &rng))
            #expect(error == nil)
            #expect(Array(whole.prefix(frames.count)) == frames)
        }
    }
}
