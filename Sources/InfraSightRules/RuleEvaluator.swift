import Foundation
import Synchronization
import InfraSightCore
import InfraSightSchema
import InfraSightStorage

/// Evaluates rules with embedded ClickHouse, so a condition means what it means in a
/// query: the store's own engine (its rules session) when the store is embedded, else an
/// engine of its own in a scratch directory (any ClickHouse server version then works).
///
/// A stored batch is written to a scratch file and read back with `file(..., RowBinary,
/// structure)`; one query per batch evaluates every rule of its table and writes the
/// alerts, in the alerts table's layout as the store holds it, to another file.
public final class RuleEvaluator: Sendable {
    let engine: EmbeddedClickHouse
    let ownsEngine: Bool
    let scratch: String
    /// Numbers the scratch files.
    private let sequence = Atomic<Int>(0)

    public init(store: EventStore, scratch: String, library: String?) throws(StorageError) {
        self.scratch = scratch
        do {
            try PrivateDirectory.prepare(scratch) { $0.allSatisfy { $0 == "engine" || $0.hasSuffix(".bin") || $0.hasSuffix(".json") } }
        } catch {
            throw StorageError("rules scratch directory: \(error)")
        }
        if let embedded = store as? EmbeddedStore {
            engine = embedded.engine
            ownsEngine = false
        } else {
            engine = try EmbeddedClickHouse(dataDir: scratch + "/engine", library: library)
            ownsEngine = true
        }
    }

    public func close() { if ownsEngine { engine.close() } }

    /// `name Type, ...` for `file()` and `format()`.
    static func structure(_ table: TableSchema) -> String {
        table.columns.map { "`\($0.name)` \($0.type.description)" }.joined(separator: ", ")
    }

    /// The JSON columns of a batch are written as strings (as the stores insert them).
    static let readSettings = "SETTINGS input_format_binary_read_json_as_string = 1"

    /// The ClickHouse type of `condition` over `table`'s columns.
    public func type(of condition: String, table: TableSchema) throws(StorageError) -> String {
        let source = "format(RowBinary, \(sqlStringLiteral(Self.structure(table))), '')"
        let result = try engine.executeRules("DESCRIBE (SELECT (\(condition)) AS c FROM \(source))")
        guard let line = result.tsv.split(separator: "\n").first else { throw StorageError("no type for the condition") }
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count >= 2 else { throw StorageError("no type for the condition") }
        return String(fields[1])
    }

    /// The alerts `rules` raise on `batch`: RowBinary in `alerts`' layout, their count, and
    /// each as a JSON object (for the outputs).
    public func evaluate(_ batch: Batch, rules: [Rule], alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        try withBatch(batch) { (source: String) throws(StorageError) in
            try alertRows(RuleQuery.evaluation(rules: rules, table: batch.table, source: source, alerts: alerts) + "\n\(Self.readSettings)", alerts: alerts)
        }
    }

    /// Writes `batch` to a scratch file for the duration of `body`, which gets the
    /// `file(...)` table function reading it.
    func withBatch<T>(_ batch: Batch, _ body: (String) throws(StorageError) -> T) throws(StorageError) -> T {
        try withFile(batch.bytes, named: "batch.bin") { (input: String) throws(StorageError) in
            try body("file(\(sqlStringLiteral(input)), 'RowBinary', \(sqlStringLiteral(Self.structure(batch.table))))")
        }
    }

    /// Writes `contents` to a fresh scratch file (0600) for the duration of `body`.
    func withFile<T>(_ contents: Data, named name: String, _ body: (String) throws(StorageError) -> T) throws(StorageError) -> T {
        let path = "\(scratch)/\(sequence.add(1, ordering: .relaxed).newValue)-\(name)"
        defer { unlink(path) }
        guard FileManager.default.createFile(atPath: path, contents: contents, attributes: [.posixPermissions: 0o600]) else {
            throw StorageError("cannot write \(path)")
        }
        return try body(path)
    }

    /// Runs `sql` with its rows written as RowBinary to a fresh scratch file, and returns
    /// `body` of that file's path and bytes.
    func withOutput<T>(of sql: String, _ body: (String, Data) throws(StorageError) -> T) throws(StorageError) -> T {
        let path = "\(scratch)/\(sequence.add(1, ordering: .relaxed).newValue)-output.bin"
        defer { unlink(path) }
        try engine.runRules("\(sql)\nINTO OUTFILE \(sqlStringLiteral(path)) FORMAT RowBinary")
        guard let bytes = FileManager.default.contents(atPath: path) else { throw StorageError("the rules' output \(path) cannot be read") }
        return try body(path, bytes)
    }

    /// JSON objects as JSONEachRow text (the engine reads values as data, never as SQL).
    static func jsonEachRow(_ objects: [[String: Any]]) throws(StorageError) -> Data {
        var text = Data()
        for object in objects {
            guard let line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { throw StorageError("a row cannot be written as JSON") }
            text.append(line)
            text.append(0x0A)
        }
        return text
    }

    /// Drift candidates of a batch: (scope, kind, value, first Unix ms), one per triple.
    func drift(_ batch: Batch, candidates: String) throws(StorageError) -> [(scope: String, kind: String, value: String, ms: Int64)] {
        let result = try withBatch(batch) { (source: String) throws(StorageError) in
            try engine.executeRules("""
                SELECT scope, kind, value, min(ms) AS first FROM (\(candidates.replacingOccurrences(of: "%SOURCE%", with: source)))
                GROUP BY scope, kind, value ORDER BY first \(Self.readSettings)
                """)
        }
        return result.rows.compactMap { row in
            guard row.count == 4, case .bytes(let scope) = row[0], case .bytes(let kind) = row[1], case .bytes(let value) = row[2] else { return nil }
            let ms: Int64
            switch row[3] {
            case .int(let v): ms = v
            case .uint(let v): ms = Int64(v)
            default: return nil
            }
            return (String(decoding: scope, as: UTF8.self), String(decoding: kind, as: UTF8.self), String(decoding: value, as: UTF8.self), ms)
        }
    }

    /// Rows given as JSON objects, as RowBinary in `table`'s layout (the engine converts a
    /// data file; the values never become SQL).
    func rowBinary(jsonLines: [[String: Any]], table: TableSchema) throws(StorageError) -> Data {
        try withFile(try Self.jsonEachRow(jsonLines), named: "rows.json") { (input: String) throws(StorageError) in
            try withOutput(of: "SELECT * FROM file(\(sqlStringLiteral(input)), 'JSONEachRow', \(sqlStringLiteral(Self.structure(table))))") { _, bytes in bytes }
        }
    }

    /// Alerts for the drift triples `new` (each alerts once: its first row in the batch).
    func driftAlerts(_ batch: Batch, new: [[String: String]], alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        try withFile(try Self.jsonEachRow(new), named: "drift.json") { (wanted: String) throws(StorageError) in
            try driftAlerts(batch, wanted: wanted, alerts: alerts)
        }
    }

    /// The alerts of `driftAlerts`, for the triples listed in the JSONEachRow file `wanted`.
    private func driftAlerts(_ batch: Batch, wanted: String, alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        let table = batch.table
        let scope = "if(`container_image` != '', `container_image`, concat('host:', `node_name`))"
        // Each row with the triples it names (none, one, or a connect's port and domain).
        let none = "('', '', '')"
        let triples: String
        switch table.name {
        case "tracing_events": triples = "[if(`event_type` = 'execve' AND `return_code` = 0, (\(scope), 'executable', `filename`), \(none))]"
        default:
            triples = """
                [if(`event_type` = 'connect' AND `protocol` IN ('tcp', 'udp') AND `return_code` IN (0, -115), (\(scope), 'port', `dport`), \(none)),
                 if(`event_type` = 'connect' AND ifNull(`resolved_domain`, '') != '', (\(scope), 'domain', assumeNotNull(`resolved_domain`)), \(none))]
                """
        }
        // "<before> value <between> scope <after>" per kind. Built with concat: format()
        // takes only a constant pattern, and a value may itself hold a `%s`.
        let texts = [
            "executable": ("new executable ", " in ", " (not run during its learning window)"),
            "port": ("new destination port ", " from ", " (not contacted during its learning window)"),
            "domain": ("new domain ", " contacted from ", " (not contacted during its learning window)"),
        ]
        let ruleFor = "transform(__t.2, [\(DriftDetector.kinds.map(sqlStringLiteral).joined(separator: ", "))], [\(DriftDetector.kinds.map { sqlStringLiteral(DriftDetector.ruleOf[$0]!) }.joined(separator: ", "))], '')"
        let outputFor = "multiIf(" + DriftDetector.kinds.map { kind in
            let t = texts[kind]!
            return "__t.2 = \(sqlStringLiteral(kind)), concat(\(sqlStringLiteral(t.0)), __t.3, \(sqlStringLiteral(t.1)), __t.1, \(sqlStringLiteral(t.2)))"
        }.joined(separator: ", ") + ", concat(__t.3, ' ', __t.1))"
        let keys = RuleQuery.keys(table)
        let inner = keys.map { "\($0.expression) AS `__\($0.alias)`" }.joined(separator: ", ")
        let values: [String: String] = [
            "rule": ruleFor, "severity": "'medium'", "tags": "'T1204,drift'", "source_table": sqlStringLiteral(table.name),
            "output": outputFor, "row_json": "__row",
        ]
        let outer = alerts.columns.map { column -> String in
            let value = values[column.name] ?? (keys.contains { $0.alias == column.name } ? "`__\(column.name)`" : "defaultValueOfTypeName(\(sqlStringLiteral(column.type.description)))")
            return "CAST(\(value) AS \(column.type.description)) AS `\(column.name)`"
        }.joined(separator: ", ")
        return try withBatch(batch) { (source: String) throws(StorageError) in
            try alertRows("""
                SELECT \(outer) FROM (
                    SELECT arrayJoin(\(triples)) AS __t, \(inner), formatRowNoNewline('JSONEachRow', \(table.columns.map { "`\($0.name)`" }.joined(separator: ", "))) AS __row, `wall_time_ms` AS __ms
                    FROM \(source)
                )
                WHERE __t IN (SELECT (scope, kind, value) FROM file(\(sqlStringLiteral(wanted)), 'JSONEachRow', 'scope String, kind String, value String'))
                ORDER BY __ms LIMIT 1 BY __t
                \(Self.readSettings)
                """, alerts: alerts)
        }
    }

    /// Runs `sql`, whose rows are alerts in `alerts`' layout: their RowBinary, count and
    /// each as a JSON object (read from the same output file).
    func alertRows(_ sql: String, alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        try withOutput(of: sql) { (path: String, bytes: Data) throws(StorageError) in
            guard !bytes.isEmpty else { return (bytes, 0, []) }
            let json = try engine.executeRules("""
                SELECT formatRowNoNewline('JSONEachRow', *) FROM file(\(sqlStringLiteral(path)), 'RowBinary', \(sqlStringLiteral(Self.structure(alerts))))
                """)
            let lines = json.rows.compactMap { row -> String? in
                guard case .bytes(let b)? = row.first else { return nil }
                return String(decoding: b, as: UTF8.self)
            }
            return (bytes, lines.count, lines)
        }
    }
}
