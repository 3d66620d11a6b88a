import Foundation
import InfraSightSchema
import InfraSightStorage
import Synchronization

/// Drift detection, deterministic and explainable: per scope — a container image, or
/// `host:NODE` for a node's host processes — it learns, for `learnSeconds` from when the
/// scope's first batch reached it, which executables run (successful execve: `filename`)
/// and which destination ports and domains are contacted (connect: `dport`,
/// `resolved_domain`). After the window, the first row with something not learned raises
/// an alert naming it (`drift_new_executable`, `drift_new_port`, `drift_new_domain`), and
/// it joins the baseline, so each new thing alerts once.
///
/// Windows run on the detector's own clock, the time each batch was stored: rows' times
/// are what agents say, and one row stamped in the year 3000 would otherwise keep its
/// scope learning, and silent, for ever. A row time is only the `first_seen` written to the
/// baseline, and one outside `rowTimeBounds` of the clock is clamped into them and counted.
///
/// The baseline is bounded: a scope keeps at most `maxValuesPerScope` values and all scopes
/// together `maxValues`. Past the first, the scope's least recently seen value is
/// forgotten, and alerts again when seen after the window; past the second, the least
/// recently seen scope's values are forgotten, but not when its window began
/// (`maxRetiredScopes` of those are kept): an agent that floods the baseline with made-up
/// scopes cannot make a real one learn, silently, again. Values are compared on their first
/// `maxValueBytes` bytes (a path is at most 4,096). Each eviction is counted.
///
/// The baseline lives in `audit.drift_baseline` (read back when the process starts, so it
/// survives restarts) and in memory. Values from rows travel as data files the engine
/// reads (JSONEachRow), never as SQL text.
public final class DriftDetector: Sendable {
    public let learnSeconds: Int
    let store: EventStore
    let table: TableSchema

    /// The most values (executables, ports and domains together) one scope's baseline holds.
    public static let maxValuesPerScope = 1_000
    /// The most values all scopes' baselines hold together.
    public static let maxValues = 1_000_000
    /// Forgotten scopes whose window start is still kept.
    public static let maxRetiredScopes = 1_000_000
    /// The bytes of a value the baseline keeps and compares.
    public static let maxValueBytes = 4096
    /// How far before the detector's clock (rows an agent's spool held through an outage)
    /// and after it (clock skew) a row's time is taken as it is, in ms.
    public static let rowTimeBounds = (past: Int64(7 * 86_400_000), future: Int64(5 * 60_000))

    /// What the detector counted, for /metrics and the exit summary. Written by the rules
    /// thread, read by any.
    public final class Counters: Sendable {
        /// Candidates (a batch's scope, kind and value) whose row time was outside
        /// `rowTimeBounds`, and baseline scopes read back with a start in the future.
        public let rowTimesClamped = Atomic<UInt64>(0)
        /// Values forgotten because their scope held `maxValuesPerScope`.
        public let valuesEvicted = Atomic<UInt64>(0)
        /// Scopes forgotten (with their values) because all held `maxValues`.
        public let scopesEvicted = Atomic<UInt64>(0)
        /// Scopes and values held now.
        public let scopes = Atomic<Int>(0)
        public let values = Atomic<Int>(0)
    }
    public let counters = Counters()

    private struct Scope {
        /// When its learning window began (Unix ms, the detector's clock).
        var started: Int64
        /// "kind\u{0}value", least recently seen first.
        var values = Recency<String>()
    }
    /// What is learned, in memory (the rules thread changes it; `init` fills it).
    private struct Baseline {
        var scopes: [String: Scope] = [:]
        /// Scopes, least recently seen first.
        var activity = Recency<String>()
        var valueCount = 0
        /// When forgotten scopes' windows began, least recently forgotten first (a scope
        /// learned again leaves a stale key in `retired`, skipped when it is the oldest).
        var retiredStarts: [String: Int64] = [:]
        var retired = Recency<String>()

        /// Adds (or refreshes) `key` in `scope`'s baseline, creating the scope with
        /// `started`, then forgets what is past the bounds, counting it.
        mutating func learn(_ scope: String, _ key: String, started: Int64, counters: Counters) {
            if scopes[scope] == nil { scopes[scope] = Scope(started: retiredStarts.removeValue(forKey: scope) ?? started) }
            activity.touch(scope)
            if scopes[scope]!.values.touch(key) { valueCount += 1 }
            if scopes[scope]!.values.count > DriftDetector.maxValuesPerScope, scopes[scope]!.values.removeOldest() != nil {
                valueCount -= 1
                counters.valuesEvicted.add(1, ordering: .relaxed)
            }
            // `scope` is the most recent, and one scope alone never reaches `maxValues`.
            while valueCount > DriftDetector.maxValues, let oldest = activity.removeOldest() {
                guard let gone = scopes.removeValue(forKey: oldest) else { continue }
                valueCount -= gone.values.count
                counters.scopesEvicted.add(1, ordering: .relaxed)
                retiredStarts[oldest] = gone.started
                _ = retired.touch(oldest)
                while retiredStarts.count > DriftDetector.maxRetiredScopes, let stale = retired.removeOldest() {
                    retiredStarts[stale] = nil
                }
            }
            counters.scopes.store(scopes.count, ordering: .relaxed)
            counters.values.store(valueCount, ordering: .relaxed)
        }
    }
    private let learned = Mutex(Baseline())

    /// What is learned, and the rule that alerts on a new one of each kind.
    static let kinds = ["executable", "port", "domain"]
    static let ruleOf = ["executable": "drift_new_executable", "port": "drift_new_port", "domain": "drift_new_domain"]
    public var ruleNames: [String] { Self.kinds.map { Self.ruleOf[$0]! } }

    public static let baselineDDL: TableSchema = {
        do {
            return try TableSchema(ddl: EmbeddedAssets.files["tables/drift_baseline.sql"]!)
        } catch {
            fatalError("the built-in drift baseline DDL does not parse: \(error)")
        }
    }()

    /// Creates the baseline table if needed and reads what it holds, each value (and
    /// scope start) at the last time it was stored and oldest first, so the bounds keep
    /// the newest; `now` is the detector's clock (Unix ms).
    public init(store: EventStore, learnSeconds: Int, now: Int64 = DriftDetector.clock()) throws(StorageError) {
        self.store = store
        self.learnSeconds = learnSeconds
        table = try store.prepare([Self.baselineDDL])[0]
        let rows = try store.query(
            """
            SELECT scope, kind, value, toInt64(toUnixTimestamp(if(kind = 'scope', min(first_seen), max(first_seen)))) * 1000 AS ms FROM audit.drift_baseline
            GROUP BY scope, kind, value ORDER BY max(first_seen)
            """, format: "JSONEachRow")
        var starts: [String: Int64] = [:]
        var values: [(scope: String, key: String, ms: Int64)] = []
        for line in String(decoding: rows, as: UTF8.self).split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let scope = o["scope"] as? String, let kind = o["kind"] as? String, let value = o["value"] as? String
            else { continue }
            let ms = (o["ms"] as? NSNumber)?.int64Value ?? Int64((o["ms"] as? String).flatMap(Int64.init) ?? 0)
            if kind == "scope" { starts[scope] = ms } else { values.append((scope, Self.key(kind, value), ms)) }
        }
        // A window cannot have begun after now: a start in the future (a row time taken
        // as the start before windows ran on this clock) begins now.
        for (scope, start) in starts where start > now {
            starts[scope] = now
            counters.rowTimesClamped.add(1, ordering: .relaxed)
        }
        let counters = self.counters
        learned.withLock { b in
            for v in values { b.learn(v.scope, v.key, started: starts[v.scope] ?? min(v.ms, now), counters: counters) }
        }
    }

    /// The detector's clock: now, as Unix ms.
    public static func clock() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func key(_ kind: String, _ value: String) -> String {
        let kept = value.utf8.count > maxValueBytes ? String(decoding: value.utf8.prefix(maxValueBytes), as: UTF8.self) : value
        return "\(kind)\u{0}\(kept)"
    }

    /// `ms` moved into `rowTimeBounds` of `now` (counted when it was outside them).
    func clamped(_ ms: Int64, now: Int64) -> Int64 {
        let bounded = min(max(ms, now - Self.rowTimeBounds.past), now + Self.rowTimeBounds.future)
        if bounded != ms { counters.rowTimesClamped.add(1, ordering: .relaxed) }
        return bounded
    }

    public func watches(_ table: String) -> Bool { table == "tracing_events" || table == "network_events" }

    /// The baseline of `scope` as the store holds it (for `rules baseline show`).
    public static func baselineQuery(scope: String) throws(StorageError) -> ReadOnlyQuery {
        try ReadOnlyQuery("""
            SELECT kind, value, first_seen, learned FROM audit.drift_baseline
            WHERE scope = {scope:String} ORDER BY kind = 'scope' DESC, kind, value
            """, format: "TSVWithNames", parameters: ["scope": scope])
    }

    /// What the rows of a batch contact or run, one per (scope, kind, value), with its first row.
    ///
    /// A row whose scope is unknown is left out rather than counted as the host's: a
    /// container whose image was not learned (`container_id` without `container_image`), or
    /// a cgroup that could not be named (removed before its rows were read, empty
    /// `cgroup_name`) — counting those as host processes would teach, or alert on, the host
    /// what ran in a container.
    static func candidates(_ batch: Batch) -> String? {
        let scope = "if(`container_image` != '', `container_image`, concat('host:', `node_name`))"
        let known = "(`container_image` != '' OR (`container_id` = '' AND `cgroup_name` != ''))"
        switch batch.table.name {
        case "tracing_events":
            return "SELECT \(scope) AS scope, 'executable' AS kind, `filename` AS value, `wall_time_ms` AS ms FROM %SOURCE% WHERE `event_type` = 'execve' AND `return_code` = 0 AND \(known)"
        case "network_events":
            return """
                SELECT \(scope) AS scope, 'port' AS kind, `dport` AS value, `wall_time_ms` AS ms FROM %SOURCE% WHERE `event_type` = 'connect' AND `protocol` IN ('tcp', 'udp') AND `return_code` IN (0, -115) AND \(known)
                UNION ALL
                SELECT \(scope), 'domain', assumeNotNull(`resolved_domain`), `wall_time_ms` FROM %SOURCE% WHERE `event_type` = 'connect' AND ifNull(`resolved_domain`, '') != '' AND \(known)
                """
        default:
            return nil
        }
    }

    /// Learns from the batch, stored at `receivedAt` (the detector's clock, Unix ms), and
    /// returns the alerts for what is new after a window.
    ///
    /// What is new joins the baseline (in memory and in the store) only once its alerts
    /// are made and the baseline rows are stored: when either fails, the batch throws and
    /// nothing of it counts as seen, so a new thing is never learned without its alert.
    func evaluate(_ batch: Batch, receivedAt now: Int64, evaluator: RuleEvaluator, alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        guard let candidateSQL = Self.candidates(batch) else { return (Data(), 0, []) }
        let found = try evaluator.drift(batch, candidates: candidateSQL)
        var baseline: [[String: Any]] = []
        var alerting: [(scope: String, kind: String, value: String)] = []
        var newScopes: [String: Int64] = [:]
        // In the order found (oldest row first), which is the order they are learned in.
        var seen: [(scope: String, key: String)] = []
        var newKeys = Set<String>()
        let known = learned.withLock { b in
            found.map { c in (b.scopes[c.scope]?.values.contains(Self.key(c.kind, c.value)) == true, b.scopes[c.scope]?.started ?? b.retiredStarts[c.scope]) }
        }
        for (c, (isKnown, knownStart)) in zip(found, known) {
            let ms = clamped(c.ms, now: now)
            let key = Self.key(c.kind, c.value)
            if isKnown {
                seen.append((c.scope, key))
                continue
            }
            guard newKeys.insert("\(c.scope)\u{0}\(key)").inserted else { continue }
            let started: Int64
            if let s = knownStart ?? newScopes[c.scope] {
                started = s
            } else {
                started = now
                newScopes[c.scope] = now
                baseline.append(["scope": c.scope, "kind": "scope", "value": "", "first_seen": Double(now) / 1000, "learned": 1])
            }
            let learning = now < started + Int64(learnSeconds) * 1000
            seen.append((c.scope, key))
            baseline.append(["scope": c.scope, "kind": c.kind, "value": c.value, "first_seen": Double(ms) / 1000, "learned": learning ? 1 : 0])
            if !learning { alerting.append((c.scope, c.kind, c.value)) }
        }
        let raised = alerting.isEmpty ? (Data(), 0, [])
            : try evaluator.driftAlerts(batch, new: alerting.map { ["scope": $0.scope, "kind": $0.kind, "value": $0.value] }, alerts: alerts)
        if !baseline.isEmpty {
            let bytes = try evaluator.rowBinary(jsonLines: baseline, table: table)
            try store.insert(Batch(table: table, bytes: bytes, rows: baseline.count, id: UUID().uuidString, plugin: "rules"))
        }
        let counters = self.counters
        learned.withLock { b in
            for (scope, key) in seen { b.learn(scope, key, started: newScopes[scope] ?? now, counters: counters) }
        }
        return raised
    }
}

/// Keys in the order they were last touched, least recent first: touching, removing the
/// oldest and membership are O(1) (a doubly linked list kept in arrays, slots reused).
struct Recency<Key: Hashable> {
    private var slots: [Key: Int] = [:]
    private var keys: [Key?] = []
    private var previous: [Int] = [], next: [Int] = []
    private var free: [Int] = []
    /// The least and the most recently touched slot (-1: none).
    private var oldest = -1, newest = -1

    var count: Int { slots.count }
    func contains(_ key: Key) -> Bool { slots[key] != nil }

    /// Makes `key` the most recent; returns whether it was new.
    @discardableResult
    mutating func touch(_ key: Key) -> Bool {
        if let slot = slots[key] {
            unlink(slot)
            link(slot)
            return false
        }
        let slot: Int
        if let reused = free.popLast() {
            slot = reused
            keys[slot] = key
        } else {
            slot = keys.count
            keys.append(key)
            previous.append(-1)
            next.append(-1)
        }
        slots[key] = slot
        link(slot)
        return true
    }

    /// Removes and returns the least recently touched key.
    mutating func removeOldest() -> Key? {
        guard oldest >= 0, let key = keys[oldest] else { return nil }
        let slot = oldest
        unlink(slot)
        keys[slot] = nil
        free.append(slot)
        slots.removeValue(forKey: key)
        return key
    }

    private mutating func link(_ slot: Int) {
        previous[slot] = newest
        next[slot] = -1
        if newest >= 0 { next[newest] = slot } else { oldest = slot }
        newest = slot
    }

    private mutating func unlink(_ slot: Int) {
        if previous[slot] >= 0 { next[previous[slot]] = next[slot] } else { oldest = next[slot] }
        if next[slot] >= 0 { previous[next[slot]] = previous[slot] } else { newest = previous[slot] }
    }
}
