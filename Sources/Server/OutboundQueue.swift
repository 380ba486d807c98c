import NIOCore

/// The events waiting for one client while its socket is not writable, bounded by count and bytes.
///
/// Policy when full (docs/protocol.md, "Slow clients"): partials are dropped first - an incoming partial
/// evicts the oldest queued partial (the newest hypothesis is the one worth showing) or, if none is queued,
/// is itself dropped; an incoming final or other event evicts queued partials, oldest first, until it
/// fits. If it would not fit even with every queued partial gone, nothing is evicted: an incoming partial
/// is dropped, and anything else is `.overflow` (the client is too slow to follow even the finals, and the
/// connection is closed). Every evicted or refused partial counts as one dropped event.
///
/// Every operation is O(1) amortised: an evicted partial leaves a tombstone in place (so order is kept
/// without shifting elements) and the tombstones are swept out once they outnumber the live items.
struct OutboundQueue {
    struct Item {
        var bytes: ByteBuffer
        var droppable: Bool
    }

    enum Outcome: Equatable {
        /// Queued; `dropped` partials were evicted to make room.
        case queued(dropped: Int)
        /// The incoming partial was dropped.
        case dropped
        case overflow
    }

    let maxCount: Int
    let maxBytes: Int
    /// Items in order; nil marks an evicted partial.
    private var slots = CircularBuffer<Item?>()
    /// Sequence numbers of the live droppable items, oldest first (a slot's sequence number is
    /// `headSequence` plus its offset in `slots`).
    private var droppable = CircularBuffer<Int>()
    private var headSequence = 0
    private(set) var count = 0
    private(set) var byteCount = 0
    /// Bytes of the live droppable items: what evicting all of them would free.
    private var droppableBytes = 0

    init(maxCount: Int, maxBytes: Int) {
        self.maxCount = maxCount
        self.maxBytes = maxBytes
    }

    var isEmpty: Bool { count == 0 }
    var droppableCount: Int { droppable.count }

    mutating func push(_ item: Item) -> Outcome {
        let size = item.bytes.readableBytes
        // Evict only when that makes room: partials evicted for an item that is then refused anyway
        // would be lost for nothing.
        guard count - droppable.count + 1 <= maxCount && byteCount - droppableBytes + size <= maxBytes else {
            return item.droppable ? .dropped : .overflow
        }
        var dropped = 0
        while count + 1 > maxCount || byteCount + size > maxBytes {
            let sequence = droppable.popFirst()!
            let index = slots.index(slots.startIndex, offsetBy: sequence - headSequence)
            let evicted = slots[index]!.bytes.readableBytes
            byteCount -= evicted
            droppableBytes -= evicted
            slots[index] = nil
            count -= 1
            dropped += 1
        }
        if slots.count > 2 * maxCount + 16 { sweep() }
        if item.droppable { droppable.append(headSequence + slots.count); droppableBytes += size }
        slots.append(item)
        count += 1
        byteCount += size
        return .queued(dropped: dropped)
    }

    mutating func pop() -> Item? {
        while let slot = slots.popFirst() {
            headSequence += 1
            guard let item = slot else { continue }
            count -= 1
            byteCount -= item.bytes.readableBytes
            // The oldest live droppable item is necessarily this one.
            if item.droppable { droppable.removeFirst(); droppableBytes -= item.bytes.readableBytes }
            return item
        }
        return nil
    }

    mutating func removeAll() {
        headSequence += slots.count
        slots.removeAll()
        droppable.removeAll()
        count = 0
        byteCount = 0
        droppableBytes = 0
    }

    /// Drops the tombstones, renumbering the live items.
    private mutating func sweep() {
        var live = CircularBuffer<Item?>(initialCapacity: count)
        droppable.removeAll()
        headSequence = 0
        for case let item? in slots {
            if item.droppable { droppable.append(live.count) }
            live.append(item)
        }
        slots = live
    }
}
