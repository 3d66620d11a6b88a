import Foundation
import InfraSightCore

/// The one loop that waits for an unavailable store: `work` is retried while it fails
/// with a retryable `StorageError` (the store is down), with `Backoff` from 0.2 s doubling
/// to 5 s; any other error is thrown at once. Blocks the calling thread (the sink's, or
/// the server's storing queue), never the cooperative pool.
public struct StoreRetry {
    /// Told of each retryable failure before the wait; `first` is true for the first
    /// of a run. Returning an error stops the retries and throws it (give up, cancelled).
    public var onUnavailable: (_ error: StorageError, _ first: Bool) -> (any Error)?
    /// Told when `work` succeeds after at least one failure.
    public var onRecovered: () -> Void

    public init(onUnavailable: @escaping (_ error: StorageError, _ first: Bool) -> (any Error)?, onRecovered: @escaping () -> Void) {
        self.onUnavailable = onUnavailable
        self.onRecovered = onRecovered
    }

    public func run<T>(_ work: () throws(StorageError) -> T) throws -> T {
        var backoff = Backoff(initial: 0.2, maximum: 5)
        var failed = false
        while true {
            do {
                let result = try work()
                if failed { onRecovered() }
                return result
            } catch {
                guard error.retryable else { throw error }
                if let stop = onUnavailable(error, !failed) { throw stop }
                failed = true
                Thread.sleep(forTimeInterval: backoff.next())
            }
        }
    }
}
