import Foundation

/// A value behind a lock: owns the value and the `NSLock` guarding it, for state that worker threads
/// share (result slots, counters, flags). Every access goes through `withLock`, so the compiler sees
/// no unguarded path.
/// Hold the lock only to read or update, never across I/O or recognition.
///
/// It lives in Tensors, the module below every other, so that the trainer, the server, the daemon and
/// the CLI share one definition. `Synchronization.Mutex` would do, but needs macOS 15 and the package
/// declares macOS 13.
public final class Locked<Value>: @unchecked Sendable {
    // `value` is only touched with `lock` held.
    private var value: Value
    private let lock = NSLock()

    public init(_ value: Value) { self.value = value }

    /// Runs `body` with exclusive access to the value.
    public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

extension Locked {
    /// Fixed result slots (one per work item), filled from several threads.
    public convenience init<Element>(slots count: Int) where Value == [Element?] {
        self.init([Element?](repeating: nil, count: count))
    }

    /// Sets slot `index` of a slot array.
    public func set<Element>(_ index: Int, _ element: Element) where Value == [Element?] {
        withLock { $0[index] = element }
    }

    /// A copy of the current value.
    public var current: Value { withLock { $0 } }
}
