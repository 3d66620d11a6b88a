import Foundation
import Glibc
import InfraSightCore
import InfraSightSchema

/// What a store lets its disk budget see and do. Implemented by `EmbeddedStore` and
/// `HTTPStore`; all SQL is the budget's own (names from `TableSchema`, part names from
/// `system.parts`, quoted).
protocol BudgetedStore: AnyObject, Sendable {
    /// Runs a statement of the budget's and returns its TabSeparated output.
    func budgetQuery(_ sql: String) throws(StorageError) -> String
    /// The file system that holds the store's data: bytes used and its size; nil when the
    /// store cannot say (ClickHouse before 19.15 has no `system.disks`).
    func fileSystem() throws(StorageError) -> (used: Int64, total: Int64)?
    /// Whether `ALTER TABLE ... DROP PART` is understood (ClickHouse 20.12 and later, the
    /// embedded engine); else whole partitions are dropped.
    var dropsParts: Bool { get }
    /// Whether parts a drop or merge made inactive stay on disk for a while
    /// (`old_parts_lifetime`, 480 s on a server; 0 in the embedded engine): the bytes
    /// they hold are on their way out, and not counted against a percent budget.
    var keepsInactiveParts: Bool { get }
}

/// `storage.max_disk`, kept: when the store's tables hold more than the budget (a size),
/// or the file system holding them is fuller than the budget (a percent), the oldest
/// data goes first — whole parts (or, where the engine cannot drop a part, whole day
/// partitions), ordered by the newest row each holds, across every event table the store
/// prepared, until the store is back under the budget. Each table's newest part is never
/// dropped by the budget. Each drop is one line through `notice` and counted per table
/// (`dropped`). Checked every `interval` seconds from a queue of its own and at once when
/// an insert finds no space (`relieve`, from the writer's thread: the batch waits for it).
///
/// State tables (the drift baseline, the server's ledger) and tables without a time
/// column are never dropped from; their bytes still count.
public final class StoreBudget: @unchecked Sendable {
    /// Set by `StorageOptions.open` from the config; `.none` until then.
    public var limit = DiskLimit.none
    /// One line per drop, and once for a budget the store cannot keep.
    public var notice: @Sendable (String) -> Void = { _ in }
    /// Seconds between checks.
    public var interval: Double = 10
    weak var store: (any BudgetedStore)?

    /// Rows, parts and bytes dropped, per table (qualified name); read from any thread.
    public struct Dropped: Equatable, Sendable {
        public var rows: UInt64 = 0
        public var parts: UInt64 = 0
        public var bytes: UInt64 = 0
    }

    private let lock = NSLock()
    /// Serializes `enforce` (the timer and the writer's `relieve`).
    private let enforcing = NSLock()
    private var tables: [String: (schema: TableSchema, column: String)] = [:]
    private var databases: Set<String> = []
    private var droppedByTable: [String: Dropped] = [:]
    private var said: Set<String> = []
    private var timer: DispatchSourceTimer?
    private let queue = DispatchQueue(label: "infrasight.disk-budget")
    /// Bytes the store's tables held at the last check (-1: not measured yet).
    private var lastStoreBytes: Int64 = -1

    public init() {}

    public var dropped: [String: Dropped] {
        lock.lock()
        defer { lock.unlock() }
        return droppedByTable
    }

    /// Bytes the store's tables held at the last check, or nil.
    public var storeBytes: Int64? {
        lock.lock()
        defer { lock.unlock() }
        return lastStoreBytes >= 0 ? lastStoreBytes : nil
    }

    /// The budget in bytes: the size, or the percent of the file system's size; nil
    /// without a limit or when the store cannot say how large its disk is.
    func budgetBytes() -> Int64? {
        switch limit {
        case .none: return nil
        case .bytes(let b): return b
        case .percent(let p):
            guard let fs = try? store?.fileSystem() else { return nil }
            return fs.total / 100 * Int64(p)
        }
    }

    /// The part size past which merges stop (`max_bytes_to_merge_at_max_space_in_pool`)
    /// for tables this budget creates: a sixteenth of the budget (1 MiB at least), so a
    /// drop takes a sixteenth of the data rather than a part merged from most of it. Nil
    /// when the budget leaves ClickHouse's own limit (150 GB) in place.
    func mergeCap() -> Int64? {
        guard let budget = budgetBytes() else { return nil }
        let cap = max(budget / 16, 1 << 20)
        return cap < 150_000_000_000 ? cap : nil
    }

    /// The bytes past which a writer seals a batch under this budget: ClickHouse reserves
    /// a batch's whole uncompressed size on the disk before writing it (measured: a
    /// 200,000-row tracing batch reserves 40 MiB, refused on a 40 MB file system however
    /// empty), so a budget of B takes batches of at most B/32 (256 KiB at least). Nil
    /// when that is over 64 MiB (the writer's other limits seal first).
    public func batchBytesCap() -> Int? {
        guard let budget = budgetBytes() else { return nil }
        let cap = max(budget / 32, 256 << 10)
        return cap < 64 << 20 ? Int(cap) : nil
    }

    /// `table`'s DDL as this budget wants it created: partitioned by day on its time
    /// column (cheap drops by day where the engine cannot drop a part, and merges that
    /// never mix days), merges capped (`mergeCap`). A table whose DDL already says
    /// PARTITION BY, or has no time column, keeps its own.
    func creating(_ table: TableSchema) -> TableSchema {
        var tail = table.tail
        if let column = RetentionPolicy.timeColumn(of: table), !tail.uppercased().contains("PARTITION BY"),
            let order = tail.range(of: "ORDER BY", options: .caseInsensitive)
        {
            tail.insert(contentsOf: "PARTITION BY toDate(\(quoteIdentifier(column)))\n", at: order.lowerBound)
        }
        if let cap = mergeCap(), tail.contains("MergeTree") {
            let setting = "max_bytes_to_merge_at_max_space_in_pool = \(cap)"
            if let settings = tail.range(of: " SETTINGS ", options: .caseInsensitive) {
                tail.insert(contentsOf: "\(setting), ", at: settings.upperBound)
            } else {
                tail += " SETTINGS \(setting)"
            }
        }
        return TableSchema(database: table.database, name: table.name, columns: table.columns, ddl: table.ddl, tail: tail)
    }

    /// Registers prepared tables (`targets`: the tables that hold their rows, when others)
    /// and starts the checks on first use.
    func register(_ prepared: [TableSchema]) {
        guard limit != .none else { return }
        lock.lock()
        for t in prepared {
            databases.insert(t.database ?? "default")
            if let column = RetentionPolicy.timeColumn(of: t) { tables[t.qualifiedName] = (t, column) }
        }
        if timer == nil {
            let t = DispatchSource.makeTimerSource(queue: queue)
            t.schedule(deadline: .now() + interval, repeating: interval)
            t.setEventHandler { [weak self] in self?.enforce() }
            t.resume()
            timer = t
        }
        lock.unlock()
        // The first check now, off the caller's thread (a server prepares on a hello).
        queue.async { [weak self] in self?.enforce() }
    }

    /// After an insert found no space: makes room for at least `bytes` (beyond what the
    /// budget asks) by dropping the oldest data. Returns whether anything was dropped.
    @discardableResult
    public func relieve(bytes: Int) -> Bool {
        enforce(atLeast: Int64(bytes)) > 0
    }

    /// One check: drops the oldest data while over the budget (or until `atLeast` bytes
    /// went). Returns the bytes dropped. Failures are said once each and tried again at the
    /// next check.
    @discardableResult
    public func enforce(atLeast: Int64 = 0) -> Int64 {
        guard limit != .none, let store else { return 0 }
        enforcing.lock()
        defer { enforcing.unlock() }
        lock.lock()
        let tables = self.tables
        let databases = self.databases.sorted()
        lock.unlock()
        guard !databases.isEmpty else { return 0 }
        do {
            let dbList = databases.map(sqlStringLiteral).joined(separator: ", ")
            let used = Int64(try store.budgetQuery("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database IN (\(dbList))")
                .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            lock.lock()
            lastStoreBytes = used
            lock.unlock()
            var over: Int64
            var state: String
            switch limit {
            case .none: return 0
            case .bytes(let max):
                over = used - max
                state = "the store holds \(describeBytes(used)) of \(describeBytes(max))"
            case .percent(let p):
                guard let fs = try store.fileSystem() else {
                    sayOnce("percent", "storage.max_disk \(limit): this store cannot say how full its disk is (ClickHouse 19.15 and later can); the budget is not kept — give a size (storage.max_disk: 50GB)")
                    return 0
                }
                var leaving: Int64 = 0
                if store.keepsInactiveParts {
                    leaving = Int64(try store.budgetQuery("SELECT sum(bytes_on_disk) FROM system.parts WHERE NOT active AND database IN (\(dbList))")
                        .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                }
                let effective = fs.used - leaving
                over = effective - fs.total / 100 * Int64(p)
                state = "the file system is \(fs.total > 0 ? effective * 100 / fs.total : 100)% full (the store holds \(describeBytes(used)))"
            }
            if atLeast > 0 && over < atLeast {
                over = atLeast
                state = "an insert found no space; " + state
            }
            guard over > 0 else { return 0 }
            var freed: Int64 = 0
            for victim in try candidates(tables, store: store) {
                guard freed < over else { break }
                let target = "\(victim.table.quotedName) DROP \(victim.partition ? "PARTITION ID" : "PART") \(sqlStringLiteral(victim.name))"
                do {
                    _ = try store.budgetQuery("ALTER TABLE \(target)")
                } catch {
                    // A part merged away meanwhile: the next check sees the merged one.
                    notice("disk budget: cannot drop \(victim.partition ? "partition" : "part") \(victim.name) of \(victim.table.qualifiedName): \(error)")
                    continue
                }
                freed += victim.bytes
                lock.lock()
                var d = droppedByTable[victim.table.qualifiedName] ?? Dropped()
                d.rows += UInt64(victim.rows)
                d.parts += 1
                d.bytes += UInt64(victim.bytes)
                droppedByTable[victim.table.qualifiedName] = d
                lock.unlock()
                notice("disk budget (storage.max_disk \(limit)): \(state); dropped the oldest \(victim.rows) rows of \(victim.table.qualifiedName) (\(victim.partition ? "partition" : "part") \(victim.name), \(describeBytes(victim.bytes)), rows up to \(Self.utc(victim.newest)))")
            }
            if freed < over {
                let names = tables.keys.sorted().joined(separator: ", ")
                sayOnce("short", "disk budget (storage.max_disk \(limit)): \(state) and nothing older is left to drop in \(names) (each table's newest part stays)")
            }
            return freed
        } catch {
            sayOnce("error:\(error)", "disk budget: \(error)")
            return 0
        }
    }

    struct Candidate {
        let table: TableSchema
        let name: String
        /// A partition id (dropped whole) rather than a part name.
        let partition: Bool
        let rows: Int64
        let bytes: Int64
        /// Unix seconds of the newest row it holds.
        let newest: Int64
    }

    /// Every table's parts (or partitions) but its newest, oldest first by the newest row
    /// each holds.
    func candidates(_ tables: [String: (schema: TableSchema, column: String)], store: any BudgetedStore) throws(StorageError) -> [Candidate] {
        var all: [Candidate] = []
        for (_, entry) in tables.sorted(by: { $0.key < $1.key }) {
            let t = entry.schema
            let db = sqlStringLiteral(t.database ?? "default")
            let rows = try store.budgetQuery("SELECT name, partition_id, rows, bytes_on_disk FROM system.parts WHERE active AND database = \(db) AND table = \(sqlStringLiteral(t.name))")
            var parts: [String: (partition: String, rows: Int64, bytes: Int64)] = [:]
            for line in rows.split(separator: "\n") {
                let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard f.count >= 4, let r = Int64(f[2]), let b = Int64(f[3]) else { continue }
                parts[f[0]] = (f[1], r, b)
            }
            guard parts.count > 1 else { continue }
            // The newest row of each part, read from the rows themselves (system.parts says
            // it only for tables partitioned by time).
            var newest: [String: Int64] = [:]
            let text = try store.budgetQuery("SELECT _part, toUInt32(toDateTime(max(\(quoteIdentifier(entry.column))))) FROM \(t.quotedName) GROUP BY _part")
            for line in text.split(separator: "\n") {
                let f = line.split(separator: "\t")
                if f.count == 2, let s = Int64(f[1]) { newest[String(f[0])] = s }
            }
            var found: [Candidate] = []
            if store.dropsParts {
                for (name, p) in parts { found.append(Candidate(table: t, name: name, partition: false, rows: p.rows, bytes: p.bytes, newest: newest[name] ?? 0)) }
            } else {
                var byPartition: [String: (rows: Int64, bytes: Int64, newest: Int64)] = [:]
                for (name, p) in parts {
                    var e = byPartition[p.partition] ?? (0, 0, 0)
                    e.rows += p.rows
                    e.bytes += p.bytes
                    e.newest = max(e.newest, newest[name] ?? 0)
                    byPartition[p.partition] = e
                }
                if byPartition.count == 1, byPartition.keys.first == "all" {
                    sayOnce("unpartitioned:\(t.qualifiedName)", "disk budget: \(t.qualifiedName) has no partitions (made by an earlier release) and this ClickHouse cannot drop a part (20.12 and later can): its rows are not dropped for the budget")
                    continue
                }
                for (id, e) in byPartition { found.append(Candidate(table: t, name: id, partition: true, rows: e.rows, bytes: e.bytes, newest: e.newest)) }
            }
            found.sort { ($0.newest, $0.name) < ($1.newest, $1.name) }
            all += found.dropLast()
        }
        return all.sorted { ($0.newest, $0.table.qualifiedName, $0.name) < ($1.newest, $1.table.qualifiedName, $1.name) }
    }

    private func sayOnce(_ key: String, _ line: String) {
        lock.lock()
        let first = said.insert(key).inserted
        lock.unlock()
        if first { notice(line) }
    }

    static func utc(_ seconds: Int64) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
    }

    deinit { timer?.cancel() }
}
