import Foundation
import Synchronization
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
public final class StoreBudget: Sendable {
    /// What `StorageOptions.open` and the store set after `init`.
    private struct Settings {
        var limit = DiskLimit.none
        var notice: @Sendable (String) -> Void = { _ in }
        var interval: Double = 10
        weak var store: (any BudgetedStore)?
        var sparesExistingTables = false
        var exempt: Set<String> = []
        var ballast: String?
    }
    private let settings = Mutex(Settings())

    /// Set by `StorageOptions.open` from the config; `.none` until then.
    public var limit: DiskLimit {
        get { settings.withLock { $0.limit } }
        set { settings.withLock { $0.limit = newValue } }
    }
    /// One line per drop, and once for a budget the store cannot keep.
    public var notice: @Sendable (String) -> Void {
        get { settings.withLock { $0.notice } }
        set { settings.withLock { $0.notice = newValue } }
    }
    /// Seconds between checks.
    public var interval: Double {
        get { settings.withLock { $0.interval } }
        set { settings.withLock { $0.interval = newValue } }
    }
    var store: (any BudgetedStore)? {
        get { settings.withLock { $0.store } }
        set { settings.withLock { $0.store = newValue } }
    }
    /// True when `limit` is the built-in default, not the operator's: tables an earlier
    /// release made are spared (see `candidates`).
    public var sparesExistingTables: Bool {
        get { settings.withLock { $0.sparesExistingTables } }
        set { settings.withLock { $0.sparesExistingTables = newValue } }
    }
    /// Table names (without database) the budget never drops from: those whose rows
    /// `storage.retention_tables` keeps forever.
    public var exempt: Set<String> {
        get { settings.withLock { $0.exempt } }
        set { settings.withLock { $0.exempt = newValue } }
    }
    /// A file of reserved blocks on the store's file system (embedded engine): on a disk
    /// so full that ClickHouse cannot even write the change that drops a part ("Cannot
    /// reserve 1.00 MiB"), `relieve` deletes it first, so the oldest parts can go; it is
    /// made again once the file system has room. Nil: none.
    var ballast: String? {
        get { settings.withLock { $0.ballast } }
        set { settings.withLock { $0.ballast = newValue } }
    }

    /// Rows, parts and bytes dropped, per table (qualified name); read from any thread.
    public struct Dropped: Equatable, Sendable {
        public var rows: UInt64 = 0
        public var parts: UInt64 = 0
        public var bytes: UInt64 = 0
    }

    /// What the checks keep.
    private struct State {
        var tables: [String: (schema: TableSchema, column: String)] = [:]
        var databases: Set<String> = []
        var dropped: [String: Dropped] = [:]
        var said: Set<String> = []
        var timer: (any DispatchSourceTimer)?
        /// When `relieve` last dropped below the budget (monotonic seconds).
        var lastForced: Double = -10
        /// Bytes the store's tables held at the last check (-1: not measured yet).
        var lastStoreBytes: Int64 = -1
    }
    private let state = Mutex(State())
    /// Serializes `enforce` (the timer and the writer's `relieve`).
    private let enforcing = Mutex(())
    private let queue = DispatchQueue(label: "infrasight.disk-budget")

    public init() {}

    public var dropped: [String: Dropped] { state.withLock { $0.dropped } }

    /// Bytes the store's tables held at the last check, or nil.
    public var storeBytes: Int64? { state.withLock { $0.lastStoreBytes >= 0 ? $0.lastStoreBytes : nil } }

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
    /// for tables this budget creates: a sixteenth of the budget (1 MiB at least, 40 GB at
    /// most), so a drop takes a sixteenth of the data rather than a part merged from most
    /// of it. Nil without a budget.
    func mergeCap() -> Int64? {
        guard let budget = budgetBytes() else { return nil }
        // At most 40 GB: ClickHouse refuses to drop a part over 50 GB
        // (max_partition_size_to_drop), and the budget must be able to drop every part.
        return min(max(budget / 16, 1 << 20), 40_000_000_000)
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

    /// Registers prepared tables and starts the checks on first use; a table seen for the
    /// first time is checked soon (a server prepares on every agent's hello: no more).
    func register(_ prepared: [TableSchema]) {
        guard limit != .none else { return }
        let interval = self.interval
        let added = state.withLock { s in
            var added = false
            for t in prepared {
                s.databases.insert(t.database ?? "default")
                if let column = RetentionPolicy.timeColumn(of: t), s.tables[t.qualifiedName] == nil {
                    s.tables[t.qualifiedName] = (t, column)
                    added = true
                }
            }
            if s.timer == nil {
                let t = DispatchSource.makeTimerSource(queue: queue)
                t.schedule(deadline: .now() + interval, repeating: interval)
                t.setEventHandler { [weak self] in self?.enforce() }
                t.resume()
                s.timer = t
            }
            return added
        }
        if added { queue.async { [weak self] in self?.enforce() } }
    }

    /// After an insert found no space: under a percent budget (the file system is the
    /// budget), makes room for at least `bytes` even below it by dropping the oldest data;
    /// under a size budget only the budget itself is kept (a disk others filled does not
    /// shrink the store: the batch waits, then is counted as a store drop). At most one
    /// forced drop per 2 s, however many writers ask. Returns whether anything was dropped.
    @discardableResult
    public func relieve(bytes: Int) -> Bool {
        if let ballast, access(ballast, F_OK) == 0 {
            unlink(ballast)
            sayOnce("ballast", "disk budget: the file system is full: its reserve \(ballast) was released so the oldest parts can be dropped (made again when there is room)")
        }
        guard case .percent = limit else { return enforce() > 0 }
        let now = MonotonicClock.seconds()
        let recent = state.withLock { s in
            let recent = now - s.lastForced < 2
            if !recent { s.lastForced = now }
            return recent
        }
        return enforce(atLeast: recent ? 0 : Int64(bytes)) > 0
    }

    /// One check: drops the oldest data while over the budget (or until `atLeast` bytes
    /// went). Returns the bytes dropped. A drop that fails stops the round (a newer part is
    /// never dropped in an older one's place); failures are said once each and tried again
    /// at the next check.
    @discardableResult
    public func enforce(atLeast: Int64 = 0) -> Int64 {
        let (limit, store, exempt) = settings.withLock { ($0.limit, $0.store, $0.exempt) }
        guard limit != .none, let store else { return 0 }
        return enforcing.withLock { _ in enforce(atLeast: atLeast, limit: limit, store: store, exempt: exempt) }
    }

    private func enforce(atLeast: Int64, limit: DiskLimit, store: any BudgetedStore, exempt: Set<String>) -> Int64 {
        let (tables, databases) = state.withLock { s in
            (s.tables.filter { !exempt.contains($0.value.schema.name) }, s.databases.sorted())
        }
        guard !databases.isEmpty else { return 0 }
        do {
            let dbList = databases.map(sqlStringLiteral).joined(separator: ", ")
            let used = try number(store.budgetQuery("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database IN (\(dbList))"))
            state.withLock { $0.lastStoreBytes = used }
            var over: Int64
            var situation: String
            switch limit {
            case .none: return 0
            case .bytes(let max):
                over = used - max
                situation = "the store holds \(describeBytes(used)) of \(describeBytes(max))"
            case .percent(let p):
                guard let fs = try store.fileSystem() else {
                    sayOnce("percent", "storage.max_disk \(limit): this store cannot say how full its disk is (ClickHouse 19.15 and later can); the budget is not kept — give a size (storage.max_disk: 50GB)")
                    return 0
                }
                var leaving: Int64 = 0
                if store.keepsInactiveParts {
                    leaving = try number(store.budgetQuery("SELECT sum(bytes_on_disk) FROM system.parts WHERE NOT active AND database IN (\(dbList))"))
                }
                let effective = fs.used - leaving
                over = effective - fs.total / 100 * Int64(p)
                situation = "the file system is \(fs.total > 0 ? effective * 100 / fs.total : 100)% full (the store holds \(describeBytes(used)))"
            }
            if over < 0 { keepBallast() }
            if atLeast > 0 && over < atLeast {
                over = atLeast
                situation = "an insert found no space; " + situation
            }
            guard over > 0 else { return 0 }
            var freed: Int64 = 0
            for victim in try candidates(tables, store: store) {
                guard freed < over else { break }
                let target = "\(victim.table.quotedName) DROP \(victim.partition ? "PARTITION ID" : "PART") \(sqlStringLiteral(victim.name))"
                do {
                    _ = try store.budgetQuery("ALTER TABLE \(target)")
                } catch {
                    // A part merged away meanwhile, or a disk too full to write the change:
                    // the next check tries again, the oldest first.
                    sayOnce("drop:\(victim.table.qualifiedName)", "disk budget: cannot drop \(victim.partition ? "partition" : "part") \(victim.name) of \(victim.table.qualifiedName): \(error)")
                    break
                }
                freed += victim.bytes
                state.withLock { s in
                    var d = s.dropped[victim.table.qualifiedName] ?? Dropped()
                    d.rows += UInt64(victim.rows)
                    d.parts += 1
                    d.bytes += UInt64(victim.bytes)
                    s.dropped[victim.table.qualifiedName] = d
                }
                notice("disk budget (storage.max_disk \(limit)): \(situation); dropped the oldest \(victim.rows) rows of \(victim.table.qualifiedName) (\(victim.partition ? "partition" : "part") \(victim.name), \(describeBytes(victim.bytes)), rows up to \(Self.utc(victim.newest)))")
            }
            if freed < over {
                let names = tables.keys.sorted().joined(separator: ", ")
                sayOnce("short", "disk budget (storage.max_disk \(limit)): \(situation) and nothing older is left to drop in \(names) (each table's newest part stays)")
            }
            return freed
        } catch {
            sayOnce("error:\(error)", "disk budget: \(error)")
            return 0
        }
    }

    /// Makes the ballast file when it is missing and the file system has room for it
    /// twice: 1/64 of the file system, 1 MiB to 64 MiB, its blocks allocated.
    func keepBallast() {
        guard let ballast, access(ballast, F_OK) != 0, let fs = try? store?.fileSystem() else { return }
        let size = min(max(fs.total / 64, 1 << 20), 64 << 20)
        guard fs.total - fs.used > 2 * size else { return }
        let fd = open(ballast, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let ok = posix_fallocate(fd, 0, off_t(size)) == 0
        close(fd)
        if !ok { unlink(ballast) }
    }

    /// A number the store answered; an empty or garbled answer (a store too full to write
    /// its answer) is an error, never 0.
    func number(_ text: String) throws(StorageError) -> Int64 {
        guard let n = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw StorageError("the store answered '\(text.prefix(40))' where a number was due")
        }
        return n
    }

    struct Candidate {
        let table: TableSchema
        let name: String
        /// A partition id (dropped whole) rather than a part name.
        let partition: Bool
        let rows: Int64
        let bytes: Int64
        /// Unix seconds of the newest row it holds, never later than now (a row from the
        /// future, as an agent may send, does not make its part the last to go).
        let newest: Int64
        /// Its highest block number: the order parts were written in.
        let block: Int64
    }

    /// Every table's parts (or partitions) but the one written last, oldest first by the
    /// newest row each holds. Tables partitioned by time have that in `system.parts`; an
    /// older table's rows are read (`GROUP BY _part`). When the budget is the built-in
    /// default, a table made by an earlier release (no partitions, holding rows) is spared,
    /// said once: an upgrade deletes nothing unasked.
    func candidates(_ tables: [String: (schema: TableSchema, column: String)], store: any BudgetedStore) throws(StorageError) -> [Candidate] {
        var all: [Candidate] = []
        let now = Int64(Date().timeIntervalSince1970)
        for (_, entry) in tables.sorted(by: { $0.key < $1.key }) {
            let t = entry.schema
            let db = sqlStringLiteral(t.database ?? "default")
            let key = try store.budgetQuery("SELECT partition_key FROM system.tables WHERE database = \(db) AND name = \(sqlStringLiteral(t.name))")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let byTime = key == "toDate(\(entry.column))"
            if !byTime && sparesExistingTables {
                sayOnce("spared:\(t.qualifiedName)", "disk budget: \(t.qualifiedName) was made before the disk budget existed: its rows are not dropped for the budget until storage.max_disk is set")
                continue
            }
            let rows = try store.budgetQuery("SELECT name, partition_id, rows, bytes_on_disk, toUInt32(max_time), max_block_number FROM system.parts WHERE active AND database = \(db) AND table = \(sqlStringLiteral(t.name))")
            var parts: [String: (partition: String, rows: Int64, bytes: Int64, maxTime: Int64, block: Int64)] = [:]
            for line in rows.split(separator: "\n") {
                let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard f.count >= 6, let r = Int64(f[2]), let b = Int64(f[3]), let m = Int64(f[4]), let k = Int64(f[5]) else { continue }
                parts[f[0]] = (f[1], r, b, m, k)
            }
            guard parts.count > 1 else { continue }
            var newest: [String: Int64] = [:]
            if byTime {
                for (name, p) in parts { newest[name] = p.maxTime }
            } else {
                let text = try store.budgetQuery("SELECT _part, toUInt32(toDateTime(max(\(quoteIdentifier(entry.column))))) FROM \(t.quotedName) GROUP BY _part")
                for line in text.split(separator: "\n") {
                    let f = line.split(separator: "\t")
                    if f.count == 2, let s = Int64(f[1]) { newest[String(f[0])] = s }
                }
            }
            var found: [Candidate] = []
            if store.dropsParts {
                for (name, p) in parts {
                    found.append(Candidate(table: t, name: name, partition: false, rows: p.rows, bytes: p.bytes, newest: min(newest[name] ?? 0, now), block: p.block))
                }
            } else {
                var byPartition: [String: (rows: Int64, bytes: Int64, newest: Int64, block: Int64)] = [:]
                for (name, p) in parts {
                    var e = byPartition[p.partition] ?? (0, 0, 0, 0)
                    e.rows += p.rows
                    e.bytes += p.bytes
                    e.newest = max(e.newest, min(newest[name] ?? 0, now))
                    e.block = max(e.block, p.block)
                    byPartition[p.partition] = e
                }
                if byPartition.count == 1, byPartition.keys.first == "all" {
                    sayOnce("unpartitioned:\(t.qualifiedName)", "disk budget: \(t.qualifiedName) has no partitions (made by an earlier release) and this ClickHouse cannot drop a part (20.12 and later can): its rows are not dropped for the budget")
                    continue
                }
                for (id, e) in byPartition {
                    found.append(Candidate(table: t, name: id, partition: true, rows: e.rows, bytes: e.bytes, newest: e.newest, block: e.block))
                }
            }
            // The part written last stays, whatever times its rows claim.
            if let last = found.max(by: { $0.block < $1.block }) { found.removeAll { $0.name == last.name } }
            all += found
        }
        return all.sorted { ($0.newest, $0.block, $0.table.qualifiedName, $0.name) < ($1.newest, $1.block, $1.table.qualifiedName, $1.name) }
    }

    private func sayOnce(_ key: String, _ line: String) {
        if state.withLock({ $0.said.insert(key).inserted }) { notice(line) }
    }

    static func utc(_ seconds: Int64) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
    }

    deinit { state.withLock { $0.timer?.cancel() } }
}
