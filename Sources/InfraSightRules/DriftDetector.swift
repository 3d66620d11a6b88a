import Foundation
import InfraSightSchema
import InfraSightStorage

/// Drift detection, deterministic and explainable: per scope — a container image, or
/// `host:NODE` for a node's host processes — it learns, for `learnSeconds` from the scope's
/// first row, which executables run (successful execve: `filename`) and which destination
/// ports and domains are contacted (connect: `dport`, `resolved_domain`). After the window,
/// the first row with something not learned raises an alert naming it
/// (`drift_new_executable`, `drift_new_port`, `drift_new_domain`), and it joins the
/// baseline, so each new thing alerts once.
///
/// The baseline lives in `audit.drift_baseline` (read back when the process starts, so it
/// survives restarts) and in memory. Values from rows travel as data files the engine
/// reads (JSONEachRow), never as SQL text.
public final class DriftDetector: @unchecked Sendable {
    public let learnSeconds: Int
    let store: EventStore
    let table: TableSchema
    /// scope → learning start (Unix ms)
    private var scopes: [String: Int64] = [:]
    /// "scope\u{0}kind\u{0}value"
    private var known = Set<String>()

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

    /// Creates the baseline table if needed and reads what it holds.
    public init(store: EventStore, learnSeconds: Int) throws(StorageError) {
        self.store = store
        self.learnSeconds = learnSeconds
        table = try store.prepare([Self.baselineDDL])[0]
        let rows = try store.query("SELECT scope, kind, value, toInt64(toUnixTimestamp(first_seen)) * 1000 AS ms FROM audit.drift_baseline", format: "JSONEachRow")
        for line in String(decoding: rows, as: UTF8.self).split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let scope = o["scope"] as? String, let kind = o["kind"] as? String, let value = o["value"] as? String
            else { continue }
            let ms = (o["ms"] as? NSNumber)?.int64Value ?? Int64((o["ms"] as? String).flatMap(Int64.init) ?? 0)
            if kind == "scope" { scopes[scope] = ms } else { known.insert(Self.key(scope, kind, value)) }
        }
    }

    static func key(_ scope: String, _ kind: String, _ value: String) -> String { "\(scope)\u{0}\(kind)\u{0}\(value)" }

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

    /// Learns from the batch and returns the alerts for what is new after a window.
    ///
    /// What is new joins the baseline (in memory and in the store) only once its alerts
    /// are made and the baseline rows are stored: when either fails, the batch throws and
    /// nothing of it counts as seen, so a new thing is never learned without its alert.
    func evaluate(_ batch: Batch, evaluator: RuleEvaluator, alerts: TableSchema) throws(StorageError) -> (bytes: Data, rows: Int, json: [String]) {
        guard let candidateSQL = Self.candidates(batch) else { return (Data(), 0, []) }
        let found = try evaluator.drift(batch, candidates: candidateSQL)
        var baseline: [[String: Any]] = []
        var alerting: [(scope: String, kind: String, value: String)] = []
        var newScopes: [String: Int64] = [:]
        var newKeys = Set<String>()
        for c in found where !known.contains(Self.key(c.scope, c.kind, c.value)) && !newKeys.contains(Self.key(c.scope, c.kind, c.value)) {
            let started: Int64
            if let s = scopes[c.scope] ?? newScopes[c.scope] {
                started = s
            } else {
                started = c.ms
                newScopes[c.scope] = c.ms
                baseline.append(["scope": c.scope, "kind": "scope", "value": "", "first_seen": Double(c.ms) / 1000, "learned": 1])
            }
            let learning = c.ms < started + Int64(learnSeconds) * 1000
            newKeys.insert(Self.key(c.scope, c.kind, c.value))
            baseline.append(["scope": c.scope, "kind": c.kind, "value": c.value, "first_seen": Double(c.ms) / 1000, "learned": learning ? 1 : 0])
            if !learning { alerting.append((c.scope, c.kind, c.value)) }
        }
        let raised = alerting.isEmpty ? (Data(), 0, [])
            : try evaluator.driftAlerts(batch, new: alerting.map { ["scope": $0.scope, "kind": $0.kind, "value": $0.value] }, alerts: alerts)
        if !baseline.isEmpty {
            let bytes = try evaluator.rowBinary(jsonLines: baseline, table: table)
            try store.insert(Batch(table: table, bytes: bytes, rows: baseline.count, id: UUID().uuidString, plugin: "rules"))
        }
        scopes.merge(newScopes) { old, _ in old }
        known.formUnion(newKeys)
        return raised
    }
}
