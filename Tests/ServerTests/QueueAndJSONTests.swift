import Foundation
import NIOCore
import Testing
@testable import Server

@Suite struct OutboundQueueTests {
    static func item(_ text: String, droppable: Bool) -> OutboundQueue.Item {
        .init(bytes: ByteBuffer(string: text), droppable: droppable)
    }

    static func drain(_ q: inout OutboundQueue) -> [String] {
        var out: [String] = []
        while let item = q.pop() { out.append(String(buffer: item.bytes)) }
        return out
    }

    @Test func aNewPartialEvictsTheOldestQueuedPartialWhenFull() {
        var q = OutboundQueue(maxCount: 3, maxBytes: 1000)
        #expect(q.push(Self.item("p1", droppable: true)) == .queued(dropped: 0))
        #expect(q.push(Self.item("F1", droppable: false)) == .queued(dropped: 0))
        #expect(q.push(Self.item("p2", droppable: true)) == .queued(dropped: 0))
        #expect(q.push(Self.item("p3", droppable: true)) == .queued(dropped: 1))
        #expect(Self.drain(&q) == ["F1", "p2", "p3"])
        #expect(q.isEmpty && q.byteCount == 0)
    }

    @Test func finalsEvictPartialsThenOverflow() {
        var q = OutboundQueue(maxCount: 3, maxBytes: 1000)
        _ = q.push(Self.item("p1", droppable: true))
        _ = q.push(Self.item("F1", droppable: false))
        _ = q.push(Self.item("p2", droppable: true))
        #expect(q.push(Self.item("F2", droppable: false)) == .queued(dropped: 1))
        #expect(q.push(Self.item("F3", droppable: false)) == .queued(dropped: 1))
        #expect(q.push(Self.item("p4", droppable: true)) == .dropped)
        #expect(q.push(Self.item("F4", droppable: false)) == .overflow)
        #expect(Self.drain(&q) == ["F1", "F2", "F3"])
    }

    @Test func theByteLimitCountsToo() {
        var q = OutboundQueue(maxCount: 100, maxBytes: 10)
        _ = q.push(Self.item("pppp", droppable: true))
        _ = q.push(Self.item("FFFF", droppable: false))
        #expect(q.push(Self.item("GGGG", droppable: false)) == .queued(dropped: 1))
        #expect(q.byteCount == 8)
        #expect(q.push(Self.item("HHHH", droppable: false)) == .overflow)
    }

    /// An item too big to fit even with every partial gone evicts nothing: the partials are not lost for
    /// an item that is refused anyway.
    @Test func anItemThatCannotFitEvictsNothing() {
        var q = OutboundQueue(maxCount: 100, maxBytes: 12)
        _ = q.push(Self.item("pp", droppable: true))
        _ = q.push(Self.item("FFFFFF", droppable: false))
        _ = q.push(Self.item("qq", droppable: true))
        #expect(q.push(Self.item("big-partial", droppable: true)) == .dropped)
        #expect(q.push(Self.item("BIG-FINAL", droppable: false)) == .overflow)
        #expect(q.count == 3 && q.byteCount == 10 && q.droppableCount == 2)
        // One that fits once both partials are gone evicts exactly those.
        #expect(q.push(Self.item("GGGGGG", droppable: false)) == .queued(dropped: 2))
        #expect(Self.drain(&q) == ["FFFFFF", "GGGGGG"])
        #expect(q.isEmpty && q.byteCount == 0)
        // The freed bytes were counted: the queue fills again to its limit.
        #expect(q.push(Self.item("HHHHHH", droppable: true)) == .queued(dropped: 0))
        #expect(q.push(Self.item("IIIIII", droppable: false)) == .queued(dropped: 0))
        #expect(q.push(Self.item("J", droppable: false)) == .queued(dropped: 1))
    }

    @Test func longRunsOfEvictionKeepOrderAndBoundedStorage() {
        var q = OutboundQueue(maxCount: 8, maxBytes: 1 << 20)
        var expected: [String] = []
        for i in 0..<10_000 {
            let isFinal = i % 5 == 4
            let text = (isFinal ? "F" : "p") + "\(i)"
            if case .overflow = q.push(Self.item(text, droppable: !isFinal)) { break }
            if i % 3 == 0, let item = q.pop() { expected.append(String(buffer: item.bytes)) }
        }
        let rest = Self.drain(&q)
        let finals = (expected + rest).filter { $0.hasPrefix("F") }
        // Finals come out in order and none is lost before an overflow.
        #expect(finals == finals.sorted { Int($0.dropFirst())! < Int($1.dropFirst())! })
        let all = (expected + rest).map { Int($0.dropFirst())! }
        #expect(all == all.sorted())
    }
}

@Suite struct JSONParserTests {
    /// Foundation's JSONSerialization is the independent reference for what is valid JSON.
    static func reference(_ text: String) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil
    }

    @Test(arguments: [
        #"{}"#, #"{"a":1}"#, #" { "a" : [ 1 , 2.5e3 , -0.25 , true , false , null ] } "#,
        #"{"s":"\u00e9\ud83d\ude00\n\t\"\\\/"}"#, #"{"a":01}"#, #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":+1}"#,
        #"{"a" 1}"#, #"{"a":"\x"}"#, #"{"a":"\ud800"}"#, #"{"a":tru}"#, #"{"a":1} x"#,
        #"[1,2]"#, #""str""#, "{\"a\":\"raw\ttab\"}", #"{"a":-}"#, #"{"a":1e}"#, #"{"a":[}"#,
    ])
    func acceptsExactlyWhatFoundationAccepts(text: String) {
        #expect((WireJSON.parse(Array(text.utf8)) != nil) == Self.reference(text), "\(text)")
    }

    /// RFC 8259 has no trailing commas; Foundation's parser tolerates them, this one follows the RFC.
    @Test func trailingCommasAreRefused() {
        #expect(WireJSON.parse(Array(#"{"a":1,}"#.utf8)) == nil)
        #expect(WireJSON.parse(Array(#"{"a":[1,]}"#.utf8)) == nil)
    }

    @Test func decodesEscapesAndSurrogatePairs() {
        let value = WireJSON.parse(Array(#"{"s":"a\u00e9\ud83d\ude00\n\"\\/"}"#.utf8))
        #expect(value == .object(["s": .string("aé😀\n\"\\/")]))
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(WireJSON.parse(Array(deep.utf8)) == nil)
        let ok = "{\"a\":" + String(repeating: "[", count: 50) + String(repeating: "]", count: 50) + "}"
        #expect(WireJSON.parse(Array(ok.utf8)) != nil)
    }

    @Test func invalidUTF8IsRefused() {
        #expect(WireJSON.parse([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D]) == nil)
    }
}
