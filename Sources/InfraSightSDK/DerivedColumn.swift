import CInfraSightABI
import InfraSightSchema

/// A column of one of the plugin's tables that can be computed from another column of
/// the same row: the agent may leave it out of what it sends, and the server computes it
/// (`is_derived_column` in the ABI). The plugin still writes the column (or the host
/// does, for its time columns): local stores take it from the row.
///
/// Declare them per table in ``ProbeModule/derivedColumns(of:)``; the host refuses the
/// plugin when a declaration does not fit its table (a missing column, a column derived
/// twice or from a derived column, a type the kind cannot fill).
public struct DerivedColumn: Sendable, Equatable {
    public let column: String
    public let source: String
    /// The IS_DERIVE_* value.
    let kind: UInt32
    /// For a code name: the code table.
    let codeTable: String?

    /// `column` (Float64) holds `source`'s nanoseconds as milliseconds.
    public static func milliseconds(_ column: String, fromNanoseconds source: String) -> DerivedColumn {
        DerivedColumn(column: column, source: source, kind: IS_DERIVE_MILLISECONDS_FROM_NANOSECONDS, codeTable: nil)
    }

    /// `column` (DateTime or DateTime64) holds the time `source` gives in Unix epoch
    /// milliseconds.
    public static func time(_ column: String, fromEpochMilliseconds source: String) -> DerivedColumn {
        DerivedColumn(column: column, source: source, kind: IS_DERIVE_TIME_FROM_MILLISECONDS, codeTable: nil)
    }

    /// `column` (String) holds the name of `source`'s value in the code table `codeTable`,
    /// one the host and the server know (InfraSightCodes' `CodeTable`, e.g. `ptrace_request`).
    public static func name(_ column: String, of source: String, in codeTable: String) -> DerivedColumn {
        DerivedColumn(column: column, source: source, kind: IS_DERIVE_CODE_NAME, codeTable: codeTable)
    }

    /// latency_ms from latency_ns and wall_time_dt from wall_time_ms, for each pair `table`
    /// has with fitting types (the columns the host fills from every record's timestamps):
    /// what a table declares unless its plugin says otherwise, and what the host assumes
    /// for plugins built before derived columns were declared.
    public static func standard(in table: EmbeddedDDL) -> [DerivedColumn] {
        guard let schema = try? TableSchema(ddl: table.text) else { return [] }
        let types = Dictionary(schema.columns.map { ($0.name, $0.type) }, uniquingKeysWith: { a, _ in a })
        let integers: [ColumnType] = [.uint8, .uint16, .uint32, .uint64, .int8, .int16, .int32, .int64]
        var standard: [DerivedColumn] = []
        if let ns = types["latency_ns"], integers.contains(ns), types["latency_ms"]?.base == .float64 {
            standard.append(.milliseconds("latency_ms", fromNanoseconds: "latency_ns"))
        }
        if let ms = types["wall_time_ms"], integers.contains(ms), let dt = types["wall_time_dt"]?.base, dt == .dateTime || dt.description.hasPrefix("DateTime64(") {
            standard.append(.time("wall_time_dt", fromEpochMilliseconds: "wall_time_ms"))
        }
        return standard
    }
}
