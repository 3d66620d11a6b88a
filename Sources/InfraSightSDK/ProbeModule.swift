import CInfraSightEvent
import InfraSightSchema

/// What a probe plugin is: its BPF object, its tables, its options, and a decoder that
/// turns ring-buffer records into rows.
///
/// Conform a final class and export it with one line (see ``exportProbeModule(_:)``):
///
/// ```swift
/// @_cdecl("infrasight_plugin_entry")
/// public func entry() -> UnsafeRawPointer { exportProbeModule(MyProbe.self) }
/// ```
///
/// Threads: `init(options:)` and `configureBPF(_:)` run on the host's control thread
/// before tracing starts; `decode` runs on the dispatcher thread only, one record at a
/// time, and must not block. Like swift-log's handlers, the protocol grows only with
/// default implementations, so an existing plugin keeps compiling.
public protocol ProbeModule: AnyObject {
    /// Unique plugin name, `[a-z0-9_-]+` (e.g. `tracing`).
    static var name: String { get }
    /// The plugin's own version.
    static var version: String { get }
    /// One line that says what the plugin traces.
    static var summary: String { get }
    /// The compiled BPF object, usually `EmbeddedBPFObject.<stem>.bytes`; empty for none.
    static var bpfObject: [UInt8] { get }
    /// The tables this plugin writes; the order gives `is_event_header.table`.
    static var tables: [EmbeddedDDL] { get }
    /// The options this plugin accepts under `plugins.options.<name>`.
    static var options: [ProbeOption] { get }
    /// The columns of `table` (one of ``tables``) that can be computed from another of
    /// its columns, so that an agent may leave them out of what it sends and the server
    /// computes them. By default ``DerivedColumn/standard(in:)`` (the host's time
    /// columns); add your own, e.g. a code's name:
    ///
    /// ```swift
    /// public static func derivedColumns(of table: EmbeddedDDL) -> [DerivedColumn] {
    ///     DerivedColumn.standard(in: table) + [.name("request_name", of: "request", in: "ptrace_request")]
    /// }
    /// ```
    static func derivedColumns(of table: EmbeddedDDL) -> [DerivedColumn]

    /// Creates the plugin from its options (and the host's log, ``ProbeOptions/log``).
    /// Throwing refuses to start: the message is shown to the user as the plugin's error.
    init(options: ProbeOptions) throws

    /// Sets read-only BPF data before the object is loaded.
    func configureBPF(_ bpf: BPFConfigurator) throws

    /// Decodes one record (which starts with an `is_event_header`) into `row`. The host
    /// has written every column it derives from the header; write the rest.
    func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult

    /// Called once when the host stops tracing, after the last ``decode(_:into:)``, on the
    /// same thread: end any background work of your own (threads, sockets) here.
    func stop()
}

extension ProbeModule {
    public static var options: [ProbeOption] { [] }
    public static func derivedColumns(of table: EmbeddedDDL) -> [DerivedColumn] { DerivedColumn.standard(in: table) }
    public func configureBPF(_ bpf: BPFConfigurator) throws {}
    public func stop() {}
}

/// One option a plugin accepts.
public struct ProbeOption: Sendable {
    /// `.int`, `.string`, `.bool`, `.intList`, `.stringList`.
    public typealias Kind = OptionKind
    public let name: String
    public let kind: Kind
    public let description: String
    public let defaultValue: String?

    public init(_ name: String, _ kind: Kind, _ description: String, default defaultValue: String? = nil) {
        self.name = name
        self.kind = kind
        self.description = description
        self.defaultValue = defaultValue
    }
}

/// The outcome of decoding one record.
public enum DecodeResult: Sendable {
    /// The row is complete.
    case row
    /// A well-formed record that produces no row.
    case skip
    /// A malformed record; the host counts it as a decode error.
    case malformed
}

/// Why a plugin refused its options or its BPF configuration.
public struct ProbeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Column indices of one table, looked up by name once, at init.
public struct ColumnIndex: Sendable {
    public let schema: TableSchema

    public init(_ ddl: EmbeddedDDL) throws {
        do {
            schema = try TableSchema(ddl: ddl.text)
        } catch {
            throw ProbeError("\(ddl.name): \(error)")
        }
    }

    /// The index of `name`; throws when the table has no such column.
    public func callAsFunction(_ name: String) throws -> UInt32 {
        guard let i = schema.index(of: name) else { throw ProbeError("table \(schema.qualifiedName) has no column \(name)") }
        return UInt32(i)
    }
}
