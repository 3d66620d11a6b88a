import Foundation
import Synchronization
import InfraSightCore
import InfraSightSchema

/// How long each table's rows are kept (`storage.retention`, `storage.retention_tables`),
/// and the TTL that keeps them so. A table's rows age by its time column: `wall_time_dt`
/// (every plugin's table), `time` (alerts); a table without one (the drift baseline, the
/// server's ledger) is state, not events, and never expires.
public struct RetentionPolicy: Equatable, Sendable {
    /// Seconds rows are kept; nil: forever.
    public let defaultSeconds: Int?
    /// Per table name (without database): seconds, or nil for forever.
    public let perTable: [String: Int?]

    /// Nothing expires (stores opened for queries, tests).
    public static let forever = RetentionPolicy(seconds: nil)

    /// True when `defaultSeconds` is the built-in default rather than the operator's
    /// choice: a table that already holds rows and has no TTL (made by a release before
    /// retention) then keeps them until `storage.retention` (or its own entry) is set, so
    /// an upgrade deletes nothing nobody asked to delete.
    public let sparesExistingTables: Bool

    public init(seconds: Int?, perTable: [String: Int?] = [:], sparesExistingTables: Bool = false) {
        defaultSeconds = seconds
        self.perTable = perTable
        self.sparesExistingTables = sparesExistingTables
    }

    public init(_ storage: StorageConfig) {
        self.init(seconds: storage.retentionSeconds, perTable: storage.tableRetention, sparesExistingTables: !storage.retentionConfigured)
    }

    /// The column `table`'s rows age by, or nil.
    public static func timeColumn(of table: TableSchema) -> String? {
        for name in ["wall_time_dt", "time"] {
            guard let c = table.columns.first(where: { $0.name == name }) else { continue }
            switch c.type {
            case .dateTime, .dateTime64: return name
            default: continue
            }
        }
        return nil
    }

    /// Seconds `table`'s rows are kept, or nil (forever, or no time column).
    public func seconds(for table: TableSchema) -> Int? {
        guard Self.timeColumn(of: table) != nil else { return nil }
        if let entry = perTable[table.name] { return entry }
        return defaultSeconds
    }

    /// The TTL expression, as ClickHouse writes it back in `system.tables.engine_full`
    /// (so the store's current one can be compared as text), or nil.
    public func ttl(for table: TableSchema) -> String? {
        guard let column = Self.timeColumn(of: table), let seconds = seconds(for: table) else { return nil }
        return "toDateTime(\(column)) + toIntervalSecond(\(seconds))"
    }

    /// The TTL the store's `engine_full` text carries, or nil: what follows ` TTL ` up to
    /// the next clause (` SETTINGS `) or the end.
    static func currentTTL(engineFull: String) -> String? {
        guard let start = engineFull.range(of: " TTL ") else { return nil }
        var rest = engineFull[start.upperBound...]
        if let settings = rest.range(of: " SETTINGS ") { rest = rest[..<settings.lowerBound] }
        return rest.trimmingCharacters(in: .whitespaces)
    }

    /// What `apply` did.
    public enum Change: Equatable, Sendable {
        case none
        /// One line saying what changed.
        case changed(String)
        /// The default was not applied to a table an earlier release filled (one line).
        case spared(String)
    }

    /// Brings the stored `table`'s TTL to this policy on a store with TTL (ClickHouse 19.6
    /// and later, the embedded engine): `ALTER TABLE t [ON CLUSTER c] MODIFY TTL ...`, or
    /// `REMOVE TTL` when the table's rows are now kept forever. `read` runs a query and
    /// returns TSV; `alter` runs a statement. `target` is the table that holds the rows (a
    /// cluster's `NAME_local`). Names are plain identifiers (`TableSchema(ddl:)`).
    public func apply(_ table: TableSchema, target: TableSchema? = nil, cluster: String? = nil,
                      read: (String) throws(StorageError) -> Data, alter: (String) throws(StorageError) -> Void) throws(StorageError) -> Change {
        let holder = target ?? table
        let db = holder.database ?? "default"
        let text = String(decoding: try read("SELECT engine_full FROM system.tables WHERE database = '\(db)' AND name = '\(holder.name)'"), as: UTF8.self)
        // engine_full is one TSV field: escaped newlines and tabs do not matter here.
        let current = Self.currentTTL(engineFull: text.trimmingCharacters(in: .whitespacesAndNewlines))
        let wanted = ttl(for: table)
        guard current != wanted else { return .none }
        if current == nil, sparesExistingTables, perTable[table.name] == nil {
            let parts = String(decoding: try read("SELECT count() FROM system.parts WHERE database = '\(db)' AND table = '\(holder.name)' AND active"), as: UTF8.self)
            if (Int(parts.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0 {
                return .spared("\(table.qualifiedName): made before retention existed, its rows are kept until storage.retention is set (new tables: \(Self.describe(defaultSeconds ?? 0)))")
            }
        }
        let on = cluster.map { " ON CLUSTER \($0)" } ?? ""
        if let wanted {
            try alter("ALTER TABLE \(holder.quotedName)\(on) MODIFY TTL \(wanted)")
            return .changed("\(table.qualifiedName): rows are kept \(Self.describe(seconds(for: table)!)) (TTL \(wanted))")
        }
        try alter("ALTER TABLE \(holder.quotedName)\(on) REMOVE TTL")
        return .changed("\(table.qualifiedName): rows are kept forever (TTL removed)")
    }

    /// The statement that deletes `table`'s expired rows where the store has no TTL
    /// (ClickHouse before 19.6): a mutation, which rewrites the parts holding them.
    /// Such a store cannot tell a table an earlier release filled from a new one: the
    /// built-in default deletes nothing there; only a retention the operator set does.
    public func deleteExpired(_ table: TableSchema, target: TableSchema? = nil, cluster: String? = nil) -> String? {
        if sparesExistingTables && perTable[table.name] == nil { return nil }
        guard let column = Self.timeColumn(of: table), let seconds = seconds(for: table) else { return nil }
        let on = cluster.map { " ON CLUSTER \($0)" } ?? ""
        return "ALTER TABLE \((target ?? table).quotedName)\(on) DELETE WHERE toDateTime(\(quoteIdentifier(column))) < now() - \(seconds)"
    }

    /// Where the store has no TTL and `table` is partitioned by day on its time column
    /// (as InfraSight creates tables): the query listing the partitions whose every row
    /// expired, each then dropped whole (`ALTER TABLE t DROP PARTITION ID 'id'`) — no
    /// rewrite, freed at once; rows go when their whole day has expired. Nil as for
    /// `deleteExpired`.
    public func expiredPartitions(_ table: TableSchema) -> String? {
        guard deleteExpired(table) != nil, let seconds = seconds(for: table) else { return nil }
        return "SELECT partition_id FROM system.parts WHERE active AND database = \(sqlStringLiteral(table.database ?? "default")) AND table = \(sqlStringLiteral(table.name)) GROUP BY partition_id HAVING max(max_time) < now() - \(seconds) ORDER BY partition_id"
    }

    /// "90 days", "12 hours", "45 s".
    public static func describe(_ seconds: Int) -> String {
        if seconds % 86400 == 0 { return "\(seconds / 86400) day\(seconds == 86400 ? "" : "s")" }
        if seconds % 3600 == 0 { return "\(seconds / 3600) hour\(seconds == 3600 ? "" : "s")" }
        if seconds % 60 == 0 { return "\(seconds / 60) minute\(seconds == 60 ? "" : "s")" }
        return "\(seconds) s"
    }
}

/// Where the store has no TTL (ClickHouse before 19.6): deletes each prepared table's
/// expired rows when it is first registered and then every `interval` seconds, on a queue
/// of its own (a server prepares tables on every agent's hello: that must not wait for a
/// mutation, nor for ON CLUSTER DDL while a node is down). A failure is said by `report`
/// and tried again at the next round.
public final class RetentionSweeper: Sendable {
    /// One table's sweep: `key` names what it does (a changed key runs at once).
    struct Job: Sendable {
        let key: String
        let run: @Sendable () throws -> Void
    }
    private struct State {
        var jobs: [String: Job] = [:]
        var timer: (any DispatchSourceTimer)?
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "infrasight.retention")
    let interval: Double
    let report: @Sendable (String) -> Void

    public init(interval: Double = 3600, report: @escaping @Sendable (String) -> Void) {
        self.interval = interval
        self.report = report
    }

    /// Registers `table`'s sweep; a new or changed one runs soon, on the queue.
    func add(table: String, job: Job) {
        let changed = state.withLock { s in
            let changed = s.jobs[table]?.key != job.key
            s.jobs[table] = job
            if s.timer == nil {
                let t = DispatchSource.makeTimerSource(queue: queue)
                t.schedule(deadline: .now() + interval, repeating: interval)
                t.setEventHandler { [weak self] in self?.sweep() }
                t.resume()
                s.timer = t
            }
            return changed
        }
        if changed { queue.async { [weak self] in self?.sweep(only: table) } }
    }

    /// Runs every table's sweep (or one).
    public func sweep(only table: String? = nil) {
        let due = state.withLock { $0.jobs.filter { table == nil || $0.key == table } }
        for (name, job) in due.sorted(by: { $0.key < $1.key }) {
            do { try job.run() } catch { report("retention: cannot delete expired rows of \(name): \(error)") }
        }
    }

    deinit { state.withLock { $0.timer?.cancel() } }
}

/// A store's retention: the policy `StorageOptions` gives it from the config (nothing
/// expires until then) and where its changes are said. Each store's `prepare` applies it
/// to the tables it prepares, so every path that creates tables (run, the server's
/// agents' tables and alerts, `schema apply`) keeps the same policy.
public final class StoreRetention: Sendable {
    private struct State {
        var policy = RetentionPolicy.forever
        var notice: @Sendable (String) -> Void = { _ in }
        /// Where the store has no TTL: the periodic deletes (created once: a server
        /// prepares tables from several agents' hellos at once).
        var sweeper: RetentionSweeper?
        var spared: Set<String> = []
    }
    private let state = Mutex(State())
    public var policy: RetentionPolicy {
        get { state.withLock { $0.policy } }
        set { state.withLock { $0.policy = newValue } }
    }
    /// One line per table whose TTL changed, or for a failure to delete expired rows.
    public var notice: @Sendable (String) -> Void {
        get { state.withLock { $0.notice } }
        set { state.withLock { $0.notice = newValue } }
    }

    public init() {}

    /// Brings each of `tables` (as prepared; `targets`: the tables that hold their rows,
    /// when others) to the policy.
    func apply(_ tables: [TableSchema], targets: [TableSchema]? = nil, cluster: String? = nil,
               read: (String) throws(StorageError) -> Data, alter: (String) throws(StorageError) -> Void) throws(PrepareError) {
        let (policy, notice) = state.withLock { ($0.policy, $0.notice) }
        for (i, t) in tables.enumerated() {
            do {
                switch try policy.apply(t, target: targets?[i], cluster: cluster, read: read, alter: alter) {
                case .none: break
                case .changed(let line): notice(line)
                case .spared(let line):
                    // Said once per table: a server prepares tables on every hello.
                    if state.withLock({ $0.spared.insert(t.qualifiedName).inserted }) { notice(line) }
                }
            } catch {
                throw .store(error)
            }
        }
    }

    /// Registers `tables`' deletes of expired rows with the sweeper (started on first use;
    /// each table's sweep runs once now, then hourly). A table partitioned by day on its
    /// time column (`partitioned`, as InfraSight creates them, checked on the store) loses
    /// its expired days whole; another (made by an earlier release, or a cluster's) gets
    /// a DELETE mutation. `run` sends a statement, `read` a query returning TSV.
    func sweep(_ tables: [TableSchema], targets: [TableSchema]? = nil, cluster: String? = nil, partitioned: (TableSchema) -> Bool,
               run: @escaping @Sendable (String) throws -> Void, read: @escaping @Sendable (String) throws -> String) {
        let (policy, notice) = state.withLock { ($0.policy, $0.notice) }
        for (i, t) in tables.enumerated() {
            guard let sql = policy.deleteExpired(t, target: targets?[i], cluster: cluster) else { continue }
            let job: RetentionSweeper.Job
            if cluster == nil, targets == nil, partitioned(t), let list = policy.expiredPartitions(t) {
                let kept = RetentionPolicy.describe(policy.seconds(for: t) ?? 0)
                job = RetentionSweeper.Job(key: list) {
                    for id in try read(list).split(separator: "\n") where !id.isEmpty {
                        try run("ALTER TABLE \(t.quotedName) DROP PARTITION ID \(sqlStringLiteral(String(id)))")
                        notice("retention: dropped \(t.qualifiedName)'s partition \(id), whose rows are all older than \(kept)")
                    }
                }
            } else {
                job = RetentionSweeper.Job(key: sql) { try run(sql) }
            }
            let sweeper = state.withLock { s in
                if s.sweeper == nil { s.sweeper = RetentionSweeper(report: notice) }
                return s.sweeper!
            }
            sweeper.add(table: t.qualifiedName, job: job)
        }
    }
}
