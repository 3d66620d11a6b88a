import CInfraSightABI
import Foundation
import InfraSightSchema
import Logging

/// A plugin that passed every loader check: what its C descriptor says, read by the
/// loader as the ABI header prescribes (every struct by its `struct_size`).
public final class LoadedPlugin: @unchecked Sendable {
    public let path: String
    public let sha256: String
    /// The descriptor in this host's layout: a copy of the plugin's, with the members its
    /// `struct_size` does not cover zeroed (absent). The functions and the memory they
    /// point to are the plugin image's, which is never unloaded.
    let descriptor: is_plugin_descriptor
    public let name: String
    public let version: String
    public let summary: String
    public let abi: String
    public let tables: [TableSchema]
    public let options: [PluginOptionInfo]
    /// Per table (qualified name): the columns the plugin declares derivable from another
    /// column of the same row (`is_table_descriptor.derived_columns`), or, for a plugin
    /// built before ABI 1.1, the host's `DerivedColumn.standard(in:)`. Every table has an
    /// entry, possibly empty.
    public let derivedColumns: [String: [DerivedColumn]]

    init(path: String, sha256: String, descriptor: is_plugin_descriptor, tables: [TableSchema],
         derivedColumns: [String: [DerivedColumn]], options: [PluginOptionInfo]) {
        self.path = path
        self.sha256 = sha256
        self.descriptor = descriptor
        name = String(cString: descriptor.name)
        version = descriptor.version.map { String(cString: $0) } ?? ""
        summary = descriptor.description.map { String(cString: $0) } ?? ""
        abi = "\(descriptor.abi_major).\(descriptor.abi_minor)"
        self.tables = tables
        self.derivedColumns = derivedColumns
        self.options = options
    }

    /// Creates a plugin instance with its resolved options: through `create_with_input`
    /// when the plugin has it (it then logs through `logger`, see `PluginLog`), else
    /// through `create`. Instances are never destroyed (the ABI has no destroy).
    public func createInstance(options: PluginOptions, logger: Logger = Logger(label: "infrasight")) throws(RuntimeError) -> OpaquePointer {
        var error: UnsafePointer<CChar>?
        let instance = options.pluginJSON.withCString { json -> OpaquePointer? in
            guard let create = descriptor.create_with_input else { return descriptor.create!(json, &error) }
            // The owner lives as long as the process: the plugin may log until it exits.
            let owner = Unmanaged.passRetained(PluginLog(plugin: name, logger: logger)).toOpaque()
            var input = is_create_input(
                struct_size: UInt32(MemoryLayout<is_create_input>.stride), options_json: json, owner: owner,
                log: { owner, level, message in
                    guard let owner else { return }
                    Unmanaged<PluginLog>.fromOpaque(owner).takeUnretainedValue().log(level: level, message)
                })
            return create(&input, &error)
        }
        guard let instance else {
            throw RuntimeError("refused its options: \(error.map { String(cString: $0) } ?? "unknown error")")
        }
        return instance
    }

    /// The embedded BPF object, empty when the plugin has none.
    public var bpfObject: UnsafeRawBufferPointer {
        guard let bytes = descriptor.bpf_object, descriptor.bpf_object_size > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: bytes, count: descriptor.bpf_object_size)
    }
}

/// The host side of `is_create_input.log`: one plugin's lines, through swift-log, as
/// `plugin NAME: message`. Thread-safe (swift-log handlers are).
final class PluginLog: Sendable {
    let plugin: String
    let logger: Logger
    /// The most bytes of one message kept, as the header promises.
    static let maxBytes = 1024

    init(plugin: String, logger: Logger) {
        self.plugin = plugin
        self.logger = logger
    }

    func log(level: UInt32, _ message: UnsafePointer<CChar>?) {
        logger.log(level: Self.level(level), "plugin \(plugin): \(Self.line(message))")
    }

    static func level(_ level: UInt32) -> Logger.Level {
        switch level {
        case IS_LOG_DEBUG: .debug
        case IS_LOG_INFO: .info
        case IS_LOG_NOTICE: .notice
        case IS_LOG_WARNING: .warning
        default: .error
        }
    }

    /// One line: at most `maxBytes` bytes of the message (invalid UTF-8 and a character
    /// cut at the limit repaired), control characters as spaces.
    static func line(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "" }
        let length = strnlen(message, maxBytes)
        let bytes = UnsafeRawBufferPointer(start: message, count: length)
        return oneLogLine(String(decoding: bytes, as: UTF8.self))
    }
}

/// One option a plugin declares, or one the host applies to every plugin.
public struct PluginOptionInfo: Equatable, Sendable {
    public let name: String
    public let type: String
    public let description: String
    public let defaultValue: String?
}

/// A column of a plugin's table that can be computed from another column (`source`) of
/// the same row, as the plugin that owns the table declares it (`is_derived_column`):
/// an agent may leave it out of its batches, and the server computes it. The host and
/// the server know the kinds of derivation; which column derives from which, in which
/// table, is the plugin's word.
public struct DerivedColumn: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Float64 milliseconds from integer nanoseconds (`IS_DERIVE_MILLISECONDS_FROM_NANOSECONDS`).
        case millisecondsFromNanoseconds
        /// DateTime/DateTime64 from integer Unix epoch milliseconds (`IS_DERIVE_TIME_FROM_MILLISECONDS`).
        case timeFromMilliseconds
        /// The String name of an integer code in a named code table (`IS_DERIVE_CODE_NAME`).
        case codeName(table: String)
    }

    public let column: String
    public let source: String
    public let kind: Kind

    public init(column: String, source: String, kind: Kind) {
        self.column = column
        self.source = source
        self.kind = kind
    }

    /// The kind's name on the wire (pipeline.proto `DerivedColumn.kind`).
    public var kindName: String {
        switch kind {
        case .millisecondsFromNanoseconds: "milliseconds_from_nanoseconds"
        case .timeFromMilliseconds: "time_from_milliseconds"
        case .codeName: "code_name"
        }
    }

    /// The code table of a `.codeName` derivation, else nil.
    public var codeTable: String? {
        if case .codeName(let table) = kind { return table }
        return nil
    }

    /// A declaration from its wire form; nil for an unknown kind, or a code name without
    /// a code table.
    public init?(column: String, source: String, kindName: String, codeTable: String) {
        switch kindName {
        case "milliseconds_from_nanoseconds": kind = .millisecondsFromNanoseconds
        case "time_from_milliseconds": kind = .timeFromMilliseconds
        case "code_name" where !codeTable.isEmpty: kind = .codeName(table: codeTable)
        default: return nil
        }
        self.column = column
        self.source = source
    }

    /// e.g. `request_name = code_name(request, ptrace_request)`.
    public var description: String { "\(column) = \(kindName)(\(source)\(codeTable.map { ", \($0)" } ?? ""))" }

    /// Why `derived` cannot be the derived columns of `table`, or nil: each names two
    /// columns of the table, derives a column only once, from a column that is neither
    /// itself nor derived, with types that fit its kind (integer source; Float64 for
    /// milliseconds, DateTime or DateTime64 for time, String for a code name, each
    /// possibly Nullable). Code tables are not checked here: the store side knows them.
    public static func problem(_ derived: [DerivedColumn], in table: TableSchema) -> String? {
        let targets = Set(derived.map(\.column))
        var seen: Set<String> = []
        for d in derived {
            guard let column = table.columns.first(where: { $0.name == d.column }) else { return "\(d.column): \(table.qualifiedName) has no such column" }
            guard let source = table.columns.first(where: { $0.name == d.source }) else { return "\(d.column): \(table.qualifiedName) has no column \(d.source)" }
            guard seen.insert(d.column).inserted else { return "\(d.column) is declared twice" }
            guard !targets.contains(d.source) else { return "\(d.column): its source \(d.source) is itself derived" }
            guard isInteger(source.type) else { return "\(d.column): its source \(d.source) is \(source.type), not an integer type" }
            let fits: Bool
            switch (d.kind, column.type.base) {
            case (.millisecondsFromNanoseconds, .float64), (.timeFromMilliseconds, .dateTime), (.timeFromMilliseconds, .dateTime64): fits = true
            case (.codeName(let codes), .string): fits = !codes.isEmpty
            default: fits = false
            }
            guard fits else { return "\(d.column) is \(column.type), which \(d.kindName) cannot fill" }
        }
        return nil
    }

    /// What the host takes as derived for a table of a plugin built before ABI 1.1 (and
    /// what the SDK declares by default): latency_ms from latency_ns and wall_time_dt from
    /// wall_time_ms, the columns the host itself fills from the record's timestamps, for
    /// the pairs `table` has with fitting types.
    public static func standard(in table: TableSchema) -> [DerivedColumn] {
        [
            DerivedColumn(column: HostField.latencyMs.rawValue, source: HostField.latencyNs.rawValue, kind: .millisecondsFromNanoseconds),
            DerivedColumn(column: HostField.wallTimeDt.rawValue, source: HostField.wallTimeMs.rawValue, kind: .timeFromMilliseconds),
        ].filter { problem([$0], in: table) == nil }
    }

    /// Whether a derivation's source may have `type` (a plain integer type).
    public static func isInteger(_ type: ColumnType) -> Bool {
        switch type { case .uint8, .uint16, .uint32, .uint64, .int8, .int16, .int32, .int64: true; default: false }
    }
}
