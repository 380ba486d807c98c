/// A fixed-capacity FIFO of samples that never blocks and never grows: a write that does not fit drops the
/// oldest samples to make room and says how many. Owns its storage, allocated once.
///
/// Not thread-safe: `AudioCapture` guards it with its lock.
struct CaptureRingBuffer {
    let capacity: Int
    private var storage: [Float]
    /// Index of the oldest sample.
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        storage = [Float](repeating: 0, count: capacity)
    }

    /// Appends `samples`; returns how many old samples (or, if `samples` alone exceed the capacity, leading
    /// new ones) were discarded so that the newest `capacity` samples are kept.
    @discardableResult
    mutating func write(_ samples: UnsafeBufferPointer<Float>) -> Int {
        var source = samples
        var dropped = 0
        if source.count > capacity {
            dropped += source.count - capacity
            source = UnsafeBufferPointer(rebasing: source[(source.count - capacity)...])
        }
        let overflow = count + source.count - capacity
        if overflow > 0 {
            head = (head + overflow) % capacity
            count -= overflow
            dropped += overflow
        }
        let capacity = self.capacity
        var tail = (head + count) % capacity
        storage.withUnsafeMutableBufferPointer { store in
            var offset = 0
            while offset < source.count {
                let run = min(source.count - offset, capacity - tail)
                (store.baseAddress! + tail).update(from: source.baseAddress! + offset, count: run)
                offset += run
                tail = (tail + run) % capacity
            }
        }
        count += source.count
        return dropped
    }

    /// Drops up to `count` of the oldest samples; returns how many.
    @discardableResult
    mutating func discardOldest(_ count: Int) -> Int {
        let n = min(max(0, count), self.count)
        head = (head + n) % capacity
        self.count -= n
        return n
    }

    /// Moves up to `maxCount` of the oldest samples to the end of `output`; returns how many.
    mutating func read(appendingTo output: inout [Float], maxCount: Int) -> Int {
        let n = min(maxCount, count)
        guard n > 0 else { return 0 }
        let first = min(n, capacity - head)
        output.append(contentsOf: storage[head..<(head + first)])
        if first < n { output.append(contentsOf: storage[0..<(n - first)]) }
        head = (head + n) % capacity
        count -= n
        return n
    }

    /// Moves up to `destination.count` of the oldest samples into `destination`; returns how many.
    mutating func read(into destination: UnsafeMutableBufferPointer<Float>) -> Int {
        let n = min(destination.count, count)
        guard n > 0, let target = destination.baseAddress else { return 0 }
        let first = min(n, capacity - head)
        storage.withUnsafeBufferPointer { store in
            target.update(from: store.baseAddress! + head, count: first)
            if first < n { (target + first).update(from: store.baseAddress!, count: n - first) }
        }
        head = (head + n) % capacity
        count -= n
        return n
    }

    mutating func removeAll() {
        head = 0
        count = 0
    }
}
