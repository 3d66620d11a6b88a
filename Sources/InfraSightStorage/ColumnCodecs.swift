import Foundation
import InfraSightSchema

/// How the columns of event tables (those with a time column) are compressed: Delta
/// before ClickHouse's default LZ4 on the columns that grow with time (the table's order),
/// the default elsewhere. Measured by `infrasight-bench storage` at 10 million rows per
/// table (docs/performance.md): a third fewer bytes per row than plain LZ4 and faster
/// scans (the time column filtered on is a third the size), at the same insert rate;
/// ZSTD(1) would cut about half but scan 2–4× slower and insert ~35 % slower, so it is
/// not the default. The column types are the seed's, untouched: a codec is not a type.
///
/// Applied in place by every store's `prepare` (`ALTER TABLE ... MODIFY COLUMN c T CODEC(...)`,
/// only where a column's codec differs): ClickHouse changes metadata only; parts written
/// from then on are compressed so, older ones as merges rewrite them.
public enum ColumnCodecs {
    /// Columns whose neighbouring values (in time order) differ by little.
    static let growing: Set<String> = [
        "wall_time_ms", "wall_time_dt", "time", "monotonic_ts_enter_ns", "monotonic_ts_exit_ns", "start_time_ns", "parent_start_time_ns",
    ]

    /// Whether `column` is one that grows with time (an integer or time type named so).
    public static func isGrowing(_ column: Column) -> Bool {
        switch column.type {
        case .int32, .int64, .uint32, .uint64, .dateTime, .dateTime64: return growing.contains(column.name)
        default: return false
        }
    }

    /// The codec for `column` of an event table, as written in DDL; nil: the default.
    public static func codec(for column: Column) -> String? {
        isGrowing(column) ? "Delta, LZ4" : nil
    }

    /// Whether `stored` (`system.columns.compression_codec`, e.g. `CODEC(Delta(8), ZSTD(1))`)
    /// is `wanted` (as `codec(for:)` writes it; nil: none).
    static func matches(stored: String, wanted: String?) -> Bool {
        guard let wanted else { return stored.isEmpty }
        let normalized = stored.replacingOccurrences(of: #"Delta\(\d+\)"#, with: "Delta", options: .regularExpression)
        return normalized == "CODEC(\(wanted))"
    }

    /// Brings `table`'s codecs (the store's, `holder` when its rows live elsewhere) to
    /// `codec(for:)` with one ALTER, and returns a line to say when the table already held
    /// rows (its older parts are recompressed as they merge), else nil. Tables without a
    /// time column are left alone. `read` runs a query returning TSV, `alter` a statement.
    static func apply(_ table: TableSchema, read: (String) throws(StorageError) -> Data, alter: (String) throws(StorageError) -> Void) throws(PrepareError) -> String? {
        guard RetentionPolicy.timeColumn(of: table) != nil else { return nil }
        let db = sqlStringLiteral(table.database ?? "default"), name = sqlStringLiteral(table.name)
        do {
            var stored: [String: String] = [:]
            for line in String(decoding: try read("SELECT name, compression_codec FROM system.columns WHERE database = \(db) AND table = \(name)"), as: UTF8.self).split(separator: "\n") {
                let f = line.split(separator: "\t", omittingEmptySubsequences: false)
                if f.count == 2 { stored[String(f[0])] = String(f[1]) }
            }
            let changes = table.columns.compactMap { c -> String? in
                guard let current = stored[c.name] else { return nil }
                let wanted = codec(for: c)
                guard !matches(stored: current, wanted: wanted) else { return nil }
                return "MODIFY COLUMN \(quoteIdentifier(c.name)) \(c.type)" + (wanted.map { " CODEC(\($0))" } ?? "")
            }
            guard !changes.isEmpty else { return nil }
            try alter("ALTER TABLE \(table.quotedName) \(changes.joined(separator: ", "))")
            let rows = String(decoding: try read("SELECT count() FROM system.parts WHERE database = \(db) AND table = \(name) AND active"), as: UTF8.self)
            guard (Int(rows.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0 else { return nil }
            return "\(table.qualifiedName): \(changes.count) time column\(changes.count == 1 ? "" : "s") now compressed with Delta and LZ4: new parts at once, older ones as they merge"
        } catch {
            throw .store(error)
        }
    }
}
