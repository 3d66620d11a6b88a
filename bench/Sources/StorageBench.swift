import Foundation
import InfraSightCatalog
import InfraSightCore
import InfraSightSchema
import InfraSightStorage

/// `infrasight-bench storage`: what the store costs on disk and what its size costs.
///
/// 1. Bytes per row of every plugin table at `rows` synthetic rows (realistic shapes: a
///    host of 30,000 processes doing 50 events each over one day, 97 programs, 5,000 files,
///    a few users, 300 cgroups, a third of the processes in 40 containers), under each of
///    `CodecVariant`'s compressions, partitioned by day as the store creates them.
/// 2. At `bigRows` rows (the console benchmark's host): the process explorer, three
///    catalog queries on the store alone, what keeping the budget costs (one
///    `StoreBudget.enforce` that has to drop a tenth of the bytes) and what retention by age
///    costs (a TTL expiring the older half of the hour, materialized at once).
func storageBench(rows: Int, bigRows: Int) throws -> String {
    let data = NSTemporaryDirectory() + "/infrasight-bench-storage-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: data) }
    let store = try EmbeddedStore(dataDir: data, library: nil)
    defer { store.close() }
    func scalar(_ sql: String) throws -> String {
        String(decoding: try store.query(sql, format: "TSV"), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
    let tables = QueryCatalog.tables.filter { $0.name.hasSuffix("_events") }
    var perTable: [String] = []
    for table in tables {
        var figures: [String] = []
        for variant in CodecVariant.allCases {
            let t = TableSchema(database: "bench_\(variant.rawValue)", name: table.name, columns: table.columns, ddl: table.ddl, tail: table.tail)
            _ = try store.prepare([t])
            for statement in variant.alters(t) { _ = try store.query(statement, format: "TSV") }
            let load = try seconds { _ = try store.query(syntheticInsert(t, rows: rows), format: "TSV") }
            _ = try store.query("OPTIMIZE TABLE \(t.qualifiedName) FINAL", format: "TSV")
            let parts = "FROM system.parts WHERE database = '\(t.database!)' AND table = '\(t.name)' AND active"
            let onDisk = Double(try scalar("SELECT sum(bytes_on_disk) \(parts)")) ?? 0
            let stored = Double(try scalar("SELECT sum(rows) \(parts)")) ?? 0
            // The catalog's typical scan: a day's rows of one program, by time.
            let scan = try seconds {
                _ = try store.query("SELECT count(), uniqExact(pid) FROM \(t.qualifiedName) WHERE comm = 'cmd7' AND wall_time_dt > now64(3) - INTERVAL 1 DAY", format: "TSV")
            }
            figures.append("\"\(variant.rawValue)\":{\"bytes_per_row\":\(String(format: "%.1f", onDisk / max(stored, 1))),\"insert_rows_per_second\":\(Int(Double(rows) / load)),\"scan_ms\":\(String(format: "%.1f", scan * 1000))}")
            _ = try store.query("DROP TABLE \(t.qualifiedName) SYNC", format: "TSV")
        }
        perTable.append("\"\(table.name)\":{\(figures.joined(separator: ","))}")
    }

    // At bigRows: the console's host, its process explorer, three catalog queries, one
    // budget drop (the same engine: one data directory per process).
    let bigStore = store
    // Tables made under a budget near what they will hold, as a store that keeps one
    // makes them (merges capped at a sixteenth of it).
    // (8 bytes a row: above what the load holds, so nothing goes before the measurement.)
    bigStore.budget.limit = .bytes(Int64(bigRows) * 8)
    let loadSeconds = try consoleLoad(into: bigStore, rows: bigRows)
    let explorer = try consoleMeasure(bigStore, loadSeconds: loadSeconds, rounds: 3)
    let range = QueryCatalog.timeRange(lastSeconds: 3600)
    var queryMs: [String] = []
    for (name, extra) in [("event_totals", [String: String]()), ("file_activity", ["limit": "100"]), ("recent_execs", ["search": "cmd7", "limit": "200"])] {
        let sql = try QueryCatalog.builtIn.bind(name, range.merging(extra) { a, _ in a }, format: "TSV")
        _ = try bigStore.readOnlyQuery(sql) // warm
        var best = Double.infinity
        for _ in 0..<3 { best = min(best, try seconds { _ = try bigStore.readOnlyQuery(sql) }) }
        queryMs.append("\"\(name)_ms\":\(String(format: "%.1f", best * 1000))")
    }
    func bigScalar(_ sql: String) throws -> Int64 {
        Int64(String(decoding: try bigStore.query(sql, format: "TSV"), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
    let bytes = try bigScalar("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'audit' AND active")
    let rowsBefore = try bigScalar("SELECT count() FROM audit.tracing_events") + (try bigScalar("SELECT count() FROM audit.network_events"))
    bigStore.budget.limit = .bytes(bytes - bytes / 10)
    let enforce = seconds { bigStore.budget.enforce() }
    let rowsAfter = try bigScalar("SELECT count() FROM audit.tracing_events") + (try bigScalar("SELECT count() FROM audit.network_events"))
    // Retention by age: a TTL that expires the older half of the hour, applied at once
    // (a mutation rewriting the parts that hold expired rows).
    bigStore.budget.limit = .none
    _ = try bigStore.query("ALTER TABLE audit.tracing_events MODIFY TTL toDateTime(wall_time_dt) + toIntervalSecond(1800) SETTINGS materialize_ttl_after_modify = 0", format: "TSV")
    let ttlSeconds = try seconds { _ = try bigStore.query("ALTER TABLE audit.tracing_events MATERIALIZE TTL SETTINGS mutations_sync = 1", format: "TSV") }
    let ttlRows = rowsAfter - (try bigScalar("SELECT count() FROM audit.tracing_events")) - (try bigScalar("SELECT count() FROM audit.network_events"))
    let oldestLeft = try bigScalar("SELECT toUnixTimestamp(now()) - toUnixTimestamp(min(wall_time_dt)) FROM audit.tracing_events")
    return """
        {"bench":"storage","rows_per_table":\(rows),"bytes_per_row":{\(perTable.joined(separator: ","))},\
        "big_rows":\(rowsBefore),"big_load_seconds":\(String(format: "%.1f", loadSeconds)),"big_bytes":\(bytes),\
        \(queryMs.joined(separator: ",")),"budget_enforce_seconds":\(String(format: "%.2f", enforce)),\
        "budget_rows_dropped":\(rowsBefore - rowsAfter),"ttl_materialize_seconds":\(String(format: "%.2f", ttlSeconds)),"ttl_rows_removed":\(ttlRows),"ttl_oldest_left_seconds":\(oldestLeft),"process_explorer":\(explorer.trimmingCharacters(in: .whitespacesAndNewlines))}
        """
}

/// Compression measured on every column but JSON: ClickHouse's default LZ4, Delta first on
/// the columns that grow with time (what the store gives event tables, `ColumnCodecs`),
/// ZSTD(1), and ZSTD(1) with Delta first.
enum CodecVariant: String, CaseIterable {
    case lz4
    case deltaLZ4 = "delta_lz4"
    case zstd
    case deltaZstd = "delta_zstd"

    /// The statements that turn a table as the store prepared it into this variant.
    func alters(_ table: TableSchema) -> [String] {
        let clauses = table.columns.compactMap { c -> String? in
            if case .json = c.type { return nil }
            let delta = ColumnCodecs.isGrowing(c)
            let codec: String
            switch self {
            case .lz4: codec = "LZ4"
            case .deltaLZ4: codec = delta ? "Delta, LZ4" : "LZ4"
            case .zstd: codec = "ZSTD(1)"
            case .deltaZstd: codec = delta ? "Delta, ZSTD(1)" : "ZSTD(1)"
            }
            return "MODIFY COLUMN `\(c.name)` \(c.type) CODEC(\(codec))"
        }
        return ["ALTER TABLE \(table.qualifiedName) " + clauses.joined(separator: ", ")]
    }
}

/// An INSERT of `rows` synthetic rows into `table`: each column from its name (the
/// shapes of a busy host), else from its type. JSON columns keep their default.
func syntheticInsert(_ table: TableSchema, rows: Int) -> String {
    // Process p does 50 events in a row; events are spread evenly over the last day.
    let proc = "intDiv(number, 50) % 30000"
    let hash = "cityHash64(\(proc))"
    let ms = "(toUnixTimestamp64Milli(now64(3)) - 86400000 + intDiv(number * 86400000, \(rows)))"
    let named: [String: String] = [
        "pid": "1000 + \(proc)", "user_pid": "1000 + \(proc)", "tid": "1000 + \(proc)",
        "ppid": "1000 + intDiv(\(proc), 10)", "user_ppid": "1000 + intDiv(\(proc), 10)",
        "uid": "[0, 1000, 33, 65534][1 + \(hash) % 4]", "gid": "[0, 1000, 33, 65534][1 + \(hash) % 4]",
        "user": "['root', 'app', 'www-data', 'nobody'][1 + \(hash) % 4]",
        "cgroup_id": "cityHash64(\(hash) % 300)", "cgroup_name": "concat('/system.slice/svc', toString(\(hash) % 300), '.service')",
        "comm": "concat('cmd', toString(\(hash) % 97))",
        "filename": "if(number % 50 = 0, concat('/usr/bin/cmd', toString(\(hash) % 97)), concat('/var/lib/app/file', toString(cityHash64(number) % 5000)))",
        "argv": "if(number % 50 = 0, concat('cmd', toString(\(hash) % 97), ' --run ', toString(\(proc))), '')",
        "event_type": "if(number % 50 = 0, 'execve', if(number % 50 = 49, 'chmod', 'open'))",
        "syscall": "if(number % 50 = 0, 'execve', if(number % 50 = 49, 'fchmodat', 'openat'))",
        "monotonic_ts_enter_ns": "toUInt64(1000000000000 + number * 8640000)",
        "monotonic_ts_exit_ns": "toUInt64(1000000000000 + number * 8640000 + 1000 + cityHash64(number) % 50000)",
        "latency_ns": "1000 + cityHash64(number) % 50000", "latency_ms": "(1000 + cityHash64(number) % 50000) / 1e6",
        "return_code": "if(cityHash64(number) % 13 = 0, -2, 3 + number % 20)",
        "node_name": "'node-01'", "wall_time_ms": ms, "wall_time_dt": "fromUnixTimestamp64Milli(\(ms))",
        "container_id": "if(\(hash) % 3 = 0, lower(hex(concat(reinterpretAsString(cityHash64(\(hash) % 40)), reinterpretAsString(cityHash64(\(hash) % 40 + 1)), reinterpretAsString(cityHash64(\(hash) % 40 + 2)), reinterpretAsString(cityHash64(\(hash) % 40 + 3))))), '')",
        "container_image": "if(\(hash) % 3 = 0, concat('registry.example/app', toString(\(hash) % 40), ':1.', toString(\(hash) % 5)), '')",
        "start_time_ns": "toUInt64(\(proc)) * 1000000", "parent_start_time_ns": "toUInt64(intDiv(\(proc), 10)) * 1000000",
        "sa_family": "'AF_INET'", "protocol": "'tcp'", "saddr_ipv4": "'10.0.0.1'",
        "daddr_ipv4": "concat('10.1.', toString(cityHash64(number) % 200), '.', toString(\(hash) % 7))",
        "sport": "toString(30000 + cityHash64(number) % 20000)", "dport": "['443', '80', '53', '5432'][1 + \(hash) % 4]",
        "addr": "toUInt64(139000000000000 + (cityHash64(number) % 1000000) * 4096)", "len": "4096 * (1 + number % 64)",
        "prot": "[1, 3, 5][1 + number % 3]", "off": "0",
        "cpu_ns": "cityHash64(number) % 10000000", "isActive": "1",
    ]
    var names: [String] = []
    var values: [String] = []
    for c in table.columns {
        if case .json = c.type { continue }
        let expression: String
        if let e = named[c.name] {
            expression = e
        } else {
            switch c.type {
            case .string: expression = "concat('v', toString(cityHash64(number) % 100))"
            case .nullable: expression = "NULL"
            default: expression = "cityHash64(number) % 1000"
            }
        }
        names.append("`\(c.name)`")
        values.append("\(expression)")
    }
    return "INSERT INTO \(table.qualifiedName) (\(names.joined(separator: ", "))) SELECT \(values.joined(separator: ", ")) FROM numbers(\(rows))"
}
