import Synchronization

/// Lets whoever asked a read-only query stop it when its asker goes away (the console's
/// connection closes, the query socket's client hangs up): the store registers how to
/// stop the running statement, and `cancel` does that. A query cancelled before it starts
/// is refused. Thread-safe.
public final class QueryCancellation: Sendable {
    private struct State {
        var cancelled = false
        var stop: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    public init() {}

    /// Stops the running statement, if any, and every later one.
    public func cancel() {
        let stop = state.withLock { s -> (@Sendable () -> Void)? in
            guard !s.cancelled else { return nil }
            s.cancelled = true
            return s.stop
        }
        stop?()
    }

    /// Registers how to stop the statement about to run (replacing the last); throws when
    /// already cancelled, so the statement does not start.
    func whileRunning<T>(stop: @escaping @Sendable () -> Void, _ body: () throws(StorageError) -> T) throws(StorageError) -> T {
        let cancelled = state.withLock { s -> Bool in
            if !s.cancelled { s.stop = stop }
            return s.cancelled
        }
        guard !cancelled else { throw StorageError("cancelled: the asker went away") }
        defer { state.withLock { $0.stop = nil } }
        return try body()
    }
}
