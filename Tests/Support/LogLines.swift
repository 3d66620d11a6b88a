import Foundation
import Logging

/// A Logger whose lines a test reads back, each as "LEVEL message" (no global
/// bootstrap: make a `logger` and hand it to the code under test). Thread-safe.
public final class LogLines: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    public var logLevel: Logger.Level = .trace
    public var metadata: Logger.Metadata = [:]

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? { get { metadata[key] } set { metadata[key] = newValue } }

    public func log(event: LogEvent) { lock.withLock { lines.append("\(event.level) \(event.message)") } }

    /// Every line so far, in order.
    public var messages: [String] { lock.withLock { lines } }

    /// A Logger writing into these lines.
    public var logger: Logger { Logger(label: "test") { _ in self } }
}
