import Foundation
import InfraSightCore
import InfraSightSchema
import InfraSightStorage
import Synchronization

/// Detection as rows are stored: wraps the store the batch writer (`run`) or the pipeline
/// (`server`) inserts into, and after each batch is stored, hands it to a thread that
/// evaluates the rules of its table (`RuleEvaluator`), stores the alerts in `audit.alerts`
/// and sends them to the outputs.
///
/// Nothing is lost silently: the queue between the sink and the rules thread is bounded
/// (`maxQueuedBatches`, `maxQueuedBytes`); a batch that does not fit is not evaluated and
/// counted (`batchesDropped`, `rowsDropped`), as are alerts the store refused. A batch the
/// sink retries after a failure that in fact stored it is evaluated once (by batch id).
public final class RuleEngine: EventStore, Sendable {
    public final class Counters: Sendable {
        public let batchesEvaluated = Atomic<UInt64>(0)
        public let rowsEvaluated = Atomic<UInt64>(0)
        public let batchesDropped = Atomic<UInt64>(0)
        public let rowsDropped = Atomic<UInt64>(0)
        public let evaluationErrors = Atomic<UInt64>(0)
        public let alerts = Atomic<UInt64>(0)
        public let alertsNotStored = Atomic<UInt64>(0)
        public let evaluationNs = Atomic<UInt64>(0)
    }

    /// One rule's alert count.
    final class Count: Sendable {
        let value = Atomic<UInt64>(0)
    }

    public static let maxQueuedBatches = 256
    public static let maxQueuedBytes = 256 << 20

    public let inner: EventStore
    public let rules: RuleSet
    public let counters = Counters()
    let evaluator: RuleEvaluator
    public let outputs: AlertOutputs
    public let drift: DriftDetector?
    let rulesByTable: [String: [Rule]]
    /// `audit.alerts` as the store holds it.
    let alertsTable: TableSchema
    let onError: @Sendable (String) -> Void
    private let perRule: [String: Count]

    /// A stored batch waiting for the rules, with when it was stored
    /// (`DriftDetector.clock`): drift's windows run on that, not on the time it is
    /// evaluated after waiting here.
    struct Stored: Sendable {
        let batch: Batch
        let at: Int64
    }
    private let queue = WorkQueue<Stored>(maxItems: RuleEngine.maxQueuedBatches, maxCost: RuleEngine.maxQueuedBytes) { $0.batch.bytes.count }
    /// The ids of the batches queued last, oldest first, so a batch the sink retried after
    /// a failure that in fact stored it is evaluated once.
    private struct Recent {
        var order: [String] = []
        var ids = Set<String>()
    }
    private let recent = Mutex(Recent())

    /// The alerts table as this module ships it.
    public static let alertsDDL: TableSchema = {
        do {
            return try TableSchema(ddl: EmbeddedAssets.files["tables/alerts.sql"]!)
        } catch {
            fatalError("the built-in alerts DDL does not parse: \(error)")
        }
    }()

    public init(store: EventStore, rules: RuleSet, evaluator: RuleEvaluator, outputs: AlertOutputs, drift: DriftDetector?,
                onError: @escaping @Sendable (String) -> Void) throws(StorageError) {
        inner = store
        self.rules = rules
        self.evaluator = evaluator
        self.outputs = outputs
        self.drift = drift
        self.onError = onError
        rulesByTable = rules.byTable
        alertsTable = try store.prepare([Self.alertsDDL])[0]
        perRule = Dictionary((rules.rules.map(\.name) + (drift?.ruleNames ?? [])).map { ($0, Count()) }, uniquingKeysWith: { a, _ in a })
    }

    /// Alerts raised per rule so far.
    public func alertCounts() -> [(rule: String, alerts: UInt64)] {
        perRule.keys.sorted().map { ($0, perRule[$0]!.value.load(ordering: .relaxed)) }
    }

    public func start() {
        queue.start(name: "infrasight-rules") { [unowned self] in self.evaluate($0.batch, stored: $0.at) }
    }

    /// Evaluates what is queued (up to `timeout` seconds), then stops the thread.
    public func finish(timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(timeout)
        for entry in queue.finish(timeout: timeout) { drop(entry.batch) }
        outputs.finish(timeout: max(1, deadline.timeIntervalSinceNow))
        evaluator.close()
    }

    func interested(in batch: Batch) -> Bool {
        batch.table.database == "audit" && (rulesByTable[batch.table.name] != nil || drift?.watches(batch.table.name) == true)
    }

    func enqueue(_ batch: Batch) {
        let first = recent.withLock { r in
            guard r.ids.insert(batch.id).inserted else { return false }
            r.order.append(batch.id)
            if r.order.count > 4096 { r.ids.remove(r.order.removeFirst()) }
            return true
        }
        guard first else { return }
        if !queue.offer(Stored(batch: batch, at: DriftDetector.clock())) { drop(batch) }
    }

    func drop(_ batch: Batch) {
        counters.batchesDropped.add(1, ordering: .relaxed)
        counters.rowsDropped.add(UInt64(batch.rows), ordering: .relaxed)
    }

    func evaluate(_ batch: Batch, stored: Int64) {
        let started = DispatchTime.now().uptimeNanoseconds
        defer { counters.evaluationNs.add(DispatchTime.now().uptimeNanoseconds - started, ordering: .relaxed) }
        // The rules and drift detection fail apart: alerts one of them raised are kept
        // when the other fails.
        var failed = false
        func attempt(_ what: String, _ work: () throws(StorageError) -> (bytes: Data, rows: Int, json: [String])) {
            do {
                raise(try work())
            } catch {
                failed = true
                onError("rules: \(what) on a batch of \(batch.rows) rows of \(batch.table.name) failed: \(error)")
            }
        }
        if let rules = rulesByTable[batch.table.name] {
            attempt("evaluating the rules") { () throws(StorageError) in try evaluator.evaluate(batch, rules: rules, alerts: alertsTable) }
        }
        if let drift, drift.watches(batch.table.name) {
            attempt("drift detection") { () throws(StorageError) in try drift.evaluate(batch, receivedAt: stored, evaluator: evaluator, alerts: alertsTable) }
        }
        if failed {
            counters.evaluationErrors.add(1, ordering: .relaxed)
        } else {
            counters.batchesEvaluated.add(1, ordering: .relaxed)
            counters.rowsEvaluated.add(UInt64(batch.rows), ordering: .relaxed)
        }
    }

    /// Counts alerts, sends them to the outputs and stores them.
    func raise(_ alerts: (bytes: Data, rows: Int, json: [String])) {
        guard alerts.rows > 0 else { return }
        counters.alerts.add(UInt64(alerts.rows), ordering: .relaxed)
        for line in alerts.json {
            if let rule = AlertOutputs.ruleName(line) { perRule[rule]?.value.add(1, ordering: .relaxed) }
        }
        outputs.send(alerts.json)
        do {
            try inner.insert(Batch(table: alertsTable, bytes: alerts.bytes, rows: alerts.rows, id: UUID().uuidString, plugin: "rules"))
        } catch {
            counters.alertsNotStored.add(UInt64(alerts.rows), ordering: .relaxed)
            onError("rules: \(alerts.rows) alerts not stored in audit.alerts: \(error)")
        }
    }

    // MARK: EventStore, forwarded; a stored batch goes to the rules.

    public var summary: String { inner.summary }
    public func prepare(_ tables: [TableSchema], migrated: (TableMigration) -> Void) throws(PrepareError) -> [TableSchema] {
        try inner.prepare(tables, migrated: migrated)
    }
    public func holding(_ table: TableSchema) -> TableSchema { inner.holding(table) }
    public func migrate(_ table: TableSchema, onCluster cluster: String?) throws(PrepareError) -> TableMigration? {
        try inner.migrate(table, onCluster: cluster)
    }
    public func insert(_ batch: Batch) throws(StorageError) {
        try inner.insert(batch)
        if interested(in: batch) { enqueue(batch) }
    }
    public func query(_ sql: String, format: String) throws(StorageError) -> Data { try inner.query(sql, format: format) }
    public func readOnlyQuery(_ query: ReadOnlyQuery) throws(StorageError) -> Data { try inner.readOnlyQuery(query) }
    public func close() { inner.close() }
    public var diskBudget: StoreBudget? { inner.diskBudget }
}
