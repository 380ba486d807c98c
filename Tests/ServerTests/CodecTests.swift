import Decoding
import Server
import Testing

@Suite struct CodecTests {
    static let model = ModelSummary(name: "base", path: "/m/base.safetensors", sampleRate: 16000, parameters: 1234,
                                    vocabularySize: 29, sha256: "ab12")

    static let clientMessages: [ClientRequest] = [
        ClientRequest(.subscribe(partials: false), id: .int(7)),
        ClientRequest(.unsubscribe),
        ClientRequest(.start(AudioFormat(sampleRate: 44100, encoding: .f32le, channels: 2), partials: true), id: .string("a\"b")),
        ClientRequest(.audio([1, 2, 3, 0, 10, 123])),
        ClientRequest(.audio([])),
        ClientRequest(.stop, id: .int(-3)),
        ClientRequest(.status),
        ClientRequest(.reload(modelPath: "/x/y z.safetensors")),
        ClientRequest(.reload(modelPath: nil)),
        ClientRequest(.ping, id: .string("")),
    ]

    static let serverMessages: [ServerReply] = [
        ServerReply(.hello(Hello(server: "earshotd", capabilities: ["subscribe", "session"], sampleRate: 16000,
                                 maxLineBytes: 65536, maxFrameBytes: 1 << 20, model: model))),
        ServerReply(.subscribed(partials: true), id: .int(1)),
        ServerReply(.unsubscribed),
        ServerReply(.started(session: 4, format: AudioFormat(sampleRate: 8000, encoding: .s16le, channels: 1))),
        ServerReply(.stopped(session: 4, audioSeconds: 12.345678)),
        ServerReply(.partial(source: .microphone, utterance: 2, text: "héllo \"wörld\"\n\t\u{1}", start: 0.1)),
        ServerReply(.final(source: .session, utterance: 3,
                           transcript: Transcript(words: [Word(text: "hi", start: 1.04, end: 1.3, confidence: 0.987654321),
                                                          Word(text: "there", start: 1.4, end: 2, confidence: 1)]),
                           start: 1, end: 2.0000001)),
        ServerReply(.final(source: .microphone, utterance: 0, transcript: .empty, start: 0, end: 0)),
        ServerReply(.endpoint(source: .session, utterance: 3, reason: "silence", at: 2.6)),
        ServerReply(.error(code: .misalignedAudio, message: "odd"), id: .string("q")),
        ServerReply(.status(StatusReport(uptime: 3.5, audioSeconds: 100.25, realTimeFactor: 0.0123, sessions: 1,
                                         sessionsTotal: 9, subscribers: 2, clients: 4, droppedEvents: 17,
                                         slowClientsDisconnected: 1,
                                         capture: CaptureSummary(state: "running", device: "default", overruns: 2,
                                                                 droppedSamples: 160, suspends: 0, reopenCount: 1,
                                                                 lastError: "device gone"),
                                         model: model))),
        ServerReply(.status(StatusReport(uptime: 0, audioSeconds: 0, realTimeFactor: 0, sessions: 0, sessionsTotal: 0,
                                         subscribers: 0, clients: 1, droppedEvents: 0, slowClientsDisconnected: 0,
                                         capture: nil, model: ModelSummary(name: "m", sampleRate: 8000)))),
        ServerReply(.reloaded(model)),
        ServerReply(.pong, id: .int(99)),
    ]

    /// At the end of input a last JSON line without its newline is a frame; an audio frame cut off is not,
    /// and says how much of it came; nothing else is left over.
    @Test func endOfInputGivesALastLineWithoutItsNewline() throws {
        var d = FrameDecoder()
        d.append(Array("{\"type\":\"ping\"}\n{\"type\":\"status\"}  ".utf8))
        #expect(try d.next() == .line(Array("{\"type\":\"ping\"}".utf8)))
        #expect(try d.next() == nil)
        #expect(d.endOfInput() == .line(Array("{\"type\":\"status\"}".utf8)))
        #expect(d.endOfInput() == nil && d.bufferedCount == 0)
        var audio = FrameDecoder()
        audio.append([0, 0, 0, 0, 8, 1, 2, 3])
        #expect(try audio.next() == nil)
        #expect(audio.endOfInput() == nil)
        #expect(audio.unfinishedAudio.map { [$0.received, $0.declared] } == [3, 8])
    }

    @Test func clientMessagesRoundTripThroughTheWireFormat() throws {
        for request in Self.clientMessages {
            var decoder = FrameDecoder()
            decoder.append(MessageCodec.encode(request))
            let frame = try #require(try decoder.next())
            #expect(try MessageCodec.decodeClient(frame) == request)
            #expect(try decoder.next() == nil)
        }
    }

    @Test func serverMessagesRoundTripAndAreSingleLines() throws {
        for reply in Self.serverMessages {
            let bytes = MessageCodec.encode(reply)
            #expect(bytes.first == UInt8(ascii: "{"))
            #expect(bytes.last == UInt8(ascii: "\n"))
            #expect(bytes.dropLast().contains(UInt8(ascii: "\n")) == false)
            #expect(try MessageCodec.decodeServer(line: Array(bytes.dropLast())) == reply)
        }
    }

    @Test func eventLinesLookLikeTheDocumentedExamples() {
        let line = MessageCodec.encodeLine(ServerReply(.partial(source: .microphone, utterance: 3, text: "hello wor", start: 12.4)))
        #expect(line == #"{"type":"partial","source":"microphone","utterance":3,"text":"hello wor","start":12.4}"# + "\n")
    }

    @Test(arguments: [
        (#"{"type":"nope"}"#, ErrorCode.unknownType),
        (#"{"kind":"ping"}"#, .unknownType),
        (#"{"type":5}"#, .unknownType),
        (#"{"type":"ping""#, .malformedJSON),
        (#"[1,2]"#, .malformedJSON),
        (#"{"type":"start"}"#, .badRequest),
        (#"{"type":"start","sample_rate":12.5}"#, .unsupportedSampleRate),
        (#"{"type":"start","sample_rate":0}"#, .unsupportedSampleRate),
        (#"{"type":"start","sample_rate":16000,"encoding":"mulaw"}"#, .unsupportedEncoding),
        (#"{"type":"start","sample_rate":16000,"channels":9}"#, .unsupportedChannels),
        (#"{"type":"subscribe","partials":"yes"}"#, .badRequest),
        (#"{"type":"reload","model":3}"#, .badRequest),
    ])
    func invalidClientLinesGiveTheDocumentedErrorCode(line: String, code: ErrorCode) {
        #expect(throws: ProtocolError.self) { try MessageCodec.decodeClient(line: Array(line.utf8)) }
        do {
            _ = try MessageCodec.decodeClient(line: Array(line.utf8))
        } catch {
            #expect(error.code == code, "\(line)")
        }
    }

    @Test func requestIDIsEchoedInDecodeErrors() {
        do {
            _ = try MessageCodec.decodeClient(line: Array(#"{"type":"start","id":"s1"}"#.utf8))
            Issue.record("expected an error")
        } catch {
            #expect(error.id == .string("s1"))
        }
    }

    @Test func unknownFieldsAreIgnoredForForwardCompatibility() throws {
        let request = try MessageCodec.decodeClient(line: Array(#"{"type":"ping","future":{"x":[1,2]}}"#.utf8))
        #expect(request.message == .ping)
    }

    @Test func decoderSkipsWhitespaceAndAcceptsCRLF() throws {
        var decoder = FrameDecoder()
        decoder.append(Array("\n \r\n{\"type\":\"ping\"}\r\n\t".utf8) + FrameEncoder.audio([9, 8]) + Array("{}\n".utf8))
        #expect(try decoder.next() == .line(Array(#"{"type":"ping"}"#.utf8)))
        #expect(try decoder.next() == .audio([9, 8]))
        #expect(try decoder.next() == .line(Array("{}".utf8)))
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 0)
    }

    @Test func lineLimitCountsTheNewlineAndHoldsForUnterminatedLines() throws {
        var ok = FrameDecoder(maxLineBytes: 8)
        ok.append(Array("{123456}\n".utf8.prefix(7)) + [UInt8(ascii: "\n")])  // 8 bytes with newline
        #expect(try ok.next() == .line(Array("{123456".utf8)))

        var long = FrameDecoder(maxLineBytes: 8)
        long.append(Array("{1234567\n".utf8))  // 9 bytes
        #expect(throws: FrameError.lineTooLong(limit: 8)) { try long.next() }
        // The error is sticky: the stream cannot be resynchronised.
        #expect(throws: FrameError.lineTooLong(limit: 8)) { try long.next() }

        var unterminated = FrameDecoder(maxLineBytes: 8)
        unterminated.append(Array("{123".utf8))
        #expect(try unterminated.next() == nil)
        unterminated.append(Array("4567".utf8))
        #expect(throws: FrameError.lineTooLong(limit: 8)) { try unterminated.next() }
    }

    @Test func oversizedFrameIsRejectedFromItsHeaderAlone() throws {
        var decoder = FrameDecoder(maxFrameBytes: 100)
        decoder.append([0, 0, 0, 0, 101])
        #expect(throws: FrameError.frameTooLarge(size: 101, limit: 100)) { try decoder.next() }
        var exact = FrameDecoder(maxFrameBytes: 100)
        exact.append(FrameEncoder.audio([UInt8](repeating: 7, count: 100)))
        #expect(try exact.next() == .audio([UInt8](repeating: 7, count: 100)))
    }

    @Test func aLeadByteThatIsNeitherJSONNorAudioIsAFramingError() {
        var decoder = FrameDecoder()
        decoder.append(Array("hello\n".utf8))
        #expect(throws: FrameError.badFraming(byte: UInt8(ascii: "h"))) { try decoder.next() }
    }
}
