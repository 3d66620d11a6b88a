import CInfraSightABI

/// The host's log, for a plugin: each call writes one line, `plugin NAME: message`, to
/// the host's log (through swift-log, at the level given). Get it from
/// ``ProbeOptions/log`` in `init(options:)` and keep it:
///
/// ```swift
/// public init(options: ProbeOptions) throws {
///     log = options.log
///     if try options.bool("verbose") == true { log.notice("verbose: every record is kept") }
/// }
/// ```
///
/// Thread-safe and usable from any method, `decode` included, but each line is written
/// at once and may block: never log once per record. A message is cut at 1024 bytes and
/// its control characters (newlines too) are shown as spaces, so one call is one line.
/// Outside a host (a decoder under test, say) it logs nothing.
///
/// Unchecked Sendable: it holds the host's C log function and its owner pointer, which
/// the ABI says live as long as the process and may be called from any thread.
public struct ProbeLog: @unchecked Sendable {
    public enum Level: UInt32, Sendable {
        case debug, info, notice, warning, error

        var raw: UInt32 {
            switch self {
            case .debug: IS_LOG_DEBUG
            case .info: IS_LOG_INFO
            case .notice: IS_LOG_NOTICE
            case .warning: IS_LOG_WARNING
            case .error: IS_LOG_ERROR
            }
        }
    }

    /// The host's owner pointer and log function (both live as long as the process).
    let owner: UnsafeMutableRawPointer?
    let function: (@convention(c) (UnsafeMutableRawPointer?, UInt32, UnsafePointer<CChar>?) -> Void)?

    init(owner: UnsafeMutableRawPointer?, function: (@convention(c) (UnsafeMutableRawPointer?, UInt32, UnsafePointer<CChar>?) -> Void)?) {
        self.owner = owner
        self.function = function
    }

    /// A log that drops every line (no host).
    public static let none = ProbeLog(owner: nil, function: nil)

    /// Writes `message` at `level`; the message is not even built when there is no host.
    public func log(_ level: Level, _ message: @autoclosure () -> String) {
        guard let function else { return }
        message().withCString { function(owner, level.raw, $0) }
    }

    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func notice(_ message: @autoclosure () -> String) { log(.notice, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
}
