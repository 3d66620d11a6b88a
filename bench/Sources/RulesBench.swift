import Foundation
import Glibc
import InfraSightCatalog
import InfraSightCore
import InfraSightRules
import InfraSightSDK
import InfraSightSchema
import InfraSightStorage

/// What detection costs: (1) rows/s through the sink (a BatchWriter over embedded
/// ClickHouse, as `run` stores) with no rules and with the default ruleset and drift
/// detection (a RuleEngine around the store, as `run` wraps it), timed until every row is
/// stored and, with rules, evaluated; the rules thread's time per row; (2) the latency from
/// a real openat of /etc/shadow to its `read_sensitive_file` alert on the stdout of a real
/// `infrasight run --alerts-stdout` at the default batch delay.
func rulesBench(rows total: Int, samples: Int) throws -> String {
    let plugin = try tracingPlugin()
    func sink(rules: Bool) throws -> (seconds: Double, stored: UInt64, evaluated: UInt64, dropped: UInt64, evaluationSeconds: Double, alerts: UInt64, count: Int) {
        let data = NSTemporaryDirectory() + "/infrasight-bench-rules-\(getpid())-\(rules)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let store = try EmbeddedStore(dataDir: data, library: nil)
        defer { store.close() }
        let table = try store.prepare(plugin.tables)[0]
        var engine: RuleEngine?
        if rules {
            let evaluator = try RuleEvaluator(store: store, scratch: data + "/infrasight-rules", library: nil)
            var tables: [String: TableSchema] = [:]
            for t in QueryCatalog.tables + plugin.tables where t.database == "audit" { tables[t.name] = store.holding(t) }
            let set = RuleSet.load(RulesConfig(), tables: tables, check: evaluator.type)
            guard set.problems.isEmpty else { throw StorageError("the default ruleset has problems: \(set.problems)") }
            engine = try RuleEngine(store: store, rules: set, evaluator: evaluator, outputs: try AlertOutputs(stdout: false, file: nil, webhooks: []),
                                    drift: try DriftDetector(store: store, learnSeconds: RulesConfig().driftLearnSeconds),
                                    onError: { print("rules: \($0)") })
            engine!.start()
        }
        let (elapsed, stored) = try sinkThrough(engine ?? store, plugin: plugin, table: table, rows: total) { engine?.finish(timeout: 600) }
        let c = engine?.counters
        return (elapsed, stored, c?.rowsEvaluated.load(ordering: .relaxed) ?? 0,
                c?.rowsDropped.load(ordering: .relaxed) ?? 0, Double(c?.evaluationNs.load(ordering: .relaxed) ?? 0) / 1e9,
                c?.alerts.load(ordering: .relaxed) ?? 0, engine?.rules.rules.count ?? 0)
    }
    let off = try sink(rules: false)
    let on = try sink(rules: true)
    let offRate = Double(off.stored) / off.seconds, onRate = Double(on.stored) / on.seconds
    let latency = try alertLatency(samples: samples)
    let sorted = latency.sorted()
    let median = sorted[sorted.count / 2], maximum = sorted.last!
    return """
        {"bench":"rules","rows":\(total),"default_rules":\(on.count),\
        "sink_rules_off_rows_per_second":\(Int(offRate)),"sink_rules_on_rows_per_second":\(Int(onRate)),\
        "rules_on_over_off":\(String(format: "%.3f", onRate / offRate)),"rows_evaluated":\(on.evaluated),"rows_not_evaluated":\(on.dropped),\
        "alerts":\(on.alerts),"evaluation_seconds":\(String(format: "%.3f", on.evaluationSeconds)),\
        "evaluation_ns_per_row":\(String(format: "%.0f", on.evaluationSeconds * 1e9 / Double(max(on.evaluated, 1)))),\
        "evaluation_rows_per_second":\(Int(Double(on.evaluated) / max(on.evaluationSeconds, 1e-9))),\
        "alert_latency_seconds":[\(latency.map { String(format: "%.3f", $0) }.joined(separator: ","))],\
        "alert_latency_median_seconds":\(String(format: "%.3f", median)),"alert_latency_max_seconds":\(String(format: "%.3f", maximum)),\
        "target_alert_latency_seconds":2,"target_met":\(maximum <= 2)}
        """
}

/// Seconds from the start of a process that opens /etc/shadow (a copy of cat under a
/// name of its own, so no password tool's name hides it) to its alert on the stdout of
/// `infrasight run --alerts-stdout`, `samples` times, spread over the batch interval.
func alertLatency(samples: Int) throws -> [Double] {
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    let work = NSTemporaryDirectory() + "/infrasight-latency-\(getpid())"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let comm = "lat" + String(format: "%08x", UInt32.random(in: 0...UInt32.max))
    let reader = "\(work)/\(comm)"
    try FileManager.default.copyItem(atPath: "/bin/cat", toPath: reader)
    // Only the reader is traced: the figure is the pipeline's, not the host's load.
    try "plugins:\n  enabled: [tracing]\n  options:\n    tracing:\n      include_comms: [\(comm)]\n"
        .write(toFile: "\(work)/run.yaml", atomically: true, encoding: .utf8)
    let run = try Child("\(bin)/infrasight", ["run", "--data-dir", "\(work)/data", "--config", "\(work)/run.yaml", "--alerts-stdout"], log: "\(work)/run.log")
    defer { run.stop() }
    _ = try run.waitFor("infrasight: note: started: ")
    func alerts() -> Int {
        run.output.split(separator: "\n").filter { $0.contains("\"rule\":\"read_sensitive_file\"") && $0.contains(comm) }.count
    }
    var out: [Double] = []
    for i in 0..<samples {
        // Spread over the 1 s batch interval: the wait for the batch to seal is part of it.
        usleep(UInt32(300_000 + (i * 137_000) % 1_000_000))
        let before = alerts()
        var start = timespec(), now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        try Child(reader, ["/etc/shadow"], log: "/dev/null").waitExit()
        while alerts() == before {
            clock_gettime(CLOCK_MONOTONIC, &now)
            if now.tv_sec - start.tv_sec > 30 { throw SweepError("no alert within 30 s: \(run.output)") }
            usleep(2_000)
        }
        clock_gettime(CLOCK_MONOTONIC, &now)
        out.append(Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9)
    }
    return out
}
