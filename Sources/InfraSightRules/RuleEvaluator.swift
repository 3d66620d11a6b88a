import Foundation
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
public final class RuleEvaluator: @unchecked Sendable {
    let engine: EmbeddedClickHouse
    let ownsEngine: Bool
    let scratch: String
    private var sequence = 0

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
            sequence += 1
            let output = "\(scratch)/alerts-out-\(sequence).bin"
            defer { unlink(output) }
            try engine.runRules(RuleQuery.evaluation(rules: rules, table: batch.table, source: source, alerts: alerts)
                + "\n\(Self.readSettings)\nINTO OUTFILE \(sqlStringLiteral(output)) FORMAT RowBinary")
            guard let bytes = FileManager.default.contents(atPath: output) else { throw StorageError("the rules' output \(output) cannot be read") }
            return try jsonOf(bytes, alerts: alerts)
        }
    }

    /// Writes `batch` to a scratch file for the duration of `body`, which gets the
    /// `file(...)` table function reading it.
    func withBatch<T>(_ batch: Batch, _ body: (String) throws(StorageError) -> T) throws(StorageError) -> T {
        sequence += 1
        let input = "\(scratch)/batch-\(sequence).bin"
        defer { unlink(input) }
        guard FileManager.default.createFile(atPath: input, contents: batch.bytes, attributes: [.posixPermissions: 0o600]) else {
            throw StorageError("cannot write \(input)")
        }
        return try body("file(\(sqlStringLiteral(input)), 'RowBinary', \(sqlStringLiteral(Self.structure(batch.table))))")
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
        sequence += 1
        let input = "\(scratch)/rows-\(sequence).json", output = "\(scratch)/rows-\(sequence).bin"
        defer {
            unlink(input)
            unlink(output)
        }
        var text = Data()
        for object in jsonLines {
            guard let line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { throw StorageError("a row cannot be written as JSON") }
            text.append(line)
            text.append(0x0A)
        }
        guard FileManager.default.createFile(atPath: input, contents: text, attributes: [.posixPermissions: 0o600]) else { throw StorageError("cannot write \(input)") }
        try engine.runRules("""
            SELECT * FROM file(\(sqlStringLiteral(input)), 'JSONEachRow', \(sqlStringLiteral(Self.structure(table))))
            INTO OUTFILE \(sqlStringLiteral(output)) FORMAT RowBinary
            """)
        guard let bytes = FileManager.default.contents(atPath: output) else { throw StorageError("cannot read \(output)") }
        return bytes
    }

    /// Alerts for the drift triples `new` (each alerts once: its first row in the batch).
    func driftAlerts(_ batch: Batch, candidates: String, new: [[String: String]], alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        sequence += 1
        let wanted = "\(scratch)/drift-\(sequence).json"
        defer { unlink(wanted) }
        let lines = new.compactMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
        var text = Data()
        for line in lines {
            text.append(line)
            text.append(0x0A)
        }
        guard FileManager.default.createFile(atPath: wanted, contents: text, attributes: [.posixPermissions: 0o600]) else { throw StorageError("cannot write \(wanted)") }
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
        let rules = ["executable": "drift_new_executable", "port": "drift_new_port", "domain": "drift_new_domain"]
        // "<before> value <between> scope <after>" per kind. Built with concat: format()
        // takes only a constant pattern, and a value may itself hold a `%s`.
        let texts = [
            "executable": ("new executable ", " in ", " (not run during its learning window)"),
            "port": ("new destination port ", " from ", " (not contacted during its learning window)"),
            "domain": ("new domain ", " contacted from ", " (not contacted during its learning window)"),
        ]
        let ruleFor = "transform(__t.2, ['executable', 'port', 'domain'], [\(["executable", "port", "domain"].map { sqlStringLiteral(rules[$0]!) }.joined(separator: ", "))], '')"
        let outputFor = "multiIf(" + ["executable", "port", "domain"].map { kind in
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
            let output = "\(scratch)/drift-alerts-\(sequence).bin"
            defer { unlink(output) }
            try engine.runRules("""
                SELECT \(outer) FROM (
                    SELECT arrayJoin(\(triples)) AS __t, \(inner), formatRowNoNewline('JSONEachRow', \(table.columns.map { "`\($0.name)`" }.joined(separator: ", "))) AS __row, `wall_time_ms` AS __ms
                    FROM \(source)
                )
                WHERE __t IN (SELECT (scope, kind, value) FROM file(\(sqlStringLiteral(wanted)), 'JSONEachRow', 'scope String, kind String, value String'))
                ORDER BY __ms LIMIT 1 BY __t
                \(Self.readSettings)
                INTO OUTFILE \(sqlStringLiteral(output)) FORMAT RowBinary
                """)
            guard let bytes = FileManager.default.contents(atPath: output) else { throw StorageError("cannot read \(output)") }
            return try jsonOf(bytes, alerts: alerts)
        }
    }

    /// Alerts RowBinary, its row count and its rows as JSON objects.
    func jsonOf(_ bytes: Data, alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        guard !bytes.isEmpty else { return (bytes, 0, []) }
        sequence += 1
        let file = "\(scratch)/alerts-\(sequence).bin"
        defer { unlink(file) }
        guard FileManager.default.createFile(atPath: file, contents: bytes, attributes: [.posixPermissions: 0o600]) else { throw StorageError("cannot write \(file)") }
        let json = try engine.executeRules("""
            SELECT formatRowNoNewline('JSONEachRow', *) FROM file(\(sqlStringLiteral(file)), 'RowBinary', \(sqlStringLiteral(Self.structure(alerts))))
            """)
        let lines = json.rows.compactMap { row -> String? in
            guard case .bytes(let b)? = row.first else { return nil }
            return String(decoding: b, as: UTF8.self)
        }
        return (bytes, lines.count, lines)
    }
}
