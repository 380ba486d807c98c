import NIOCore

/// The events waiting for one client while its socket is not writable, bounded by count and bytes.
///
/// Policy when full (docs/protocol.md, "Slow clients"): partials are dropped first - an incoming partial
/// evicts the oldest queued partial (the newest hypothesis is the one worth showing) or, if none is queued,
/// is itself dropped; an incoming final or other event evicts queued partials, oldest first, until it
/// fits. If it still does not fit, the client is too slow to follow even the finals: `.overflow`, and the
/// connection is closed. Every evicted or refused partial counts as one dropped event.
struct OutboundQueue {
    struct Item {
        var bytes: ByteBuffer
        var droppable: Bool
    }

    enum Outcome: Equatable {
        /// Queued; `dropped` partials were evicted to make room (or the item itself was dropped).
        case queued(dropped: Int)
        case dropped
        case overflow
    }

    let maxCount: Int
    let maxBytes: Int
    private(set) var items = CircularBuffer<Item>()
    private(set) var byteCount = 0
    private var droppableCount = 0

    init(maxCount: Int, maxBytes: Int) {
        self.maxCount = maxCount
        self.maxBytes = maxBytes
    }

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }

    mutating func push(_ item: Item) -> Outcome {
        let size = item.bytes.readableBytes
        var dropped = 0
        while !fits(size) {
            if droppableCount == 0 {
                if item.droppable { return .dropped }
                return .overflow
            }
            evictOldestDroppable()
            dropped += 1
        }
        items.append(item)
        byteCount += size
        if item.droppable { droppableCount += 1 }
        return .queued(dropped: dropped)
    }

    mutating func pop() -> Item? {
        guard let item = items.popFirst() else { return nil }
        byteCount -= item.bytes.readableBytes
        if item.droppable { droppableCount -= 1 }
        return item
    }

    mutating func removeAll() {
        items.removeAll()
        byteCount = 0
        droppableCount = 0
    }

    private func fits(_ size: Int) -> Bool {
        items.count + 1 <= maxCount && byteCount + size <= maxBytes
    }

    private mutating func evictOldestDroppable() {
        guard let index = items.firstIndex(where: { $0.droppable }) else { return }
        let item = items.remove(at: index)
        byteCount -= item.bytes.readableBytes
        droppableCount -= 1
    }
}
