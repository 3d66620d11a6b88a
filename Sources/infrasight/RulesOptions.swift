import ArgumentParser
import Foundation
import InfraSightCatalog
import InfraSightCore
import InfraSightMetrics
import InfraSightRules
import InfraSightSchema
import InfraSightStorage
import Logging

/// Detection on `run` and `server`: the rules in force and where alerts go. Each flag adds
/// to (or, for --no-default-rules, overrides) its key under `rules:` in the config file.
struct RulesOptions: ParsableArguments {
    @Option(name: .customLong("rules"), help: ArgumentHelp("A rules file to load besides the default ruleset and rules.d (repeatable).", valueName: "FILE"))
    var files: [String] = []
    @Flag(name: .customLong("no-default-rules"), help: "Do not load the default ruleset built into the binary.")
    var noDefaultRules = false
    @Flag(name: .customLong("alerts-stdout"), help: "Print each alert as a JSON line on stdout.")
    var alertsStdout = false
    @Option(name: .customLong("alerts-file"), help: ArgumentHelp("Append each alert as a JSON line to FILE (created 0600).", valueName: "FILE"))
    var alertsFile: String?
    @Option(name: .customLong("alerts-webhook"), help: ArgumentHelp("POST each alert as JSON to URL (repeatable; retried, bounded, counted when dropped).", valueName: "URL"))
    var webhooks: [String] = []

    func validate() throws {
        for url in webhooks where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw ValidationError("--alerts-webhook must be an http(s) URL (got \(url))")
        }
    }

    /// The `rules:` config with the flags applied.
    func resolved(_ config: RulesConfig) -> RulesConfig {
        var c = config
        c.files += files
        if noDefaultRules { c.defaultRules = false }
        if alertsStdout { c.stdout = true }
        if let alertsFile { c.file = alertsFile }
        c.webhooks += webhooks
        return c
    }

    /// Whether the user asked for anything about rules (then a failure to start them is
    /// an error; with nothing asked, the default ruleset is skipped with a warning).
    func explicit(_ config: RulesConfig) -> Bool {
        !files.isEmpty || alertsStdout || alertsFile != nil || !webhooks.isEmpty || config != RulesConfig()
    }
}

/// The tables rules may name: the first-party tables and `extra` (enabled plugins'),
/// as the store holds them, by name without database.
func ruleTables(_ store: EventStore, extra: [TableSchema]) -> [String: TableSchema] {
    var tables: [String: TableSchema] = [:]
    for t in QueryCatalog.tables + extra where t.database == "audit" { tables[t.name] = store.holding(t) }
    return tables
}

/// Starts detection over `store` (the store the writer or the pipeline will insert into
/// is the returned engine, which stores through `store`), or returns nil when rules are
/// off. A rule that cannot be used is one warning line; the others run.
func startRules(_ options: RulesOptions, config: InfraSightConfig, store: EventStore, scratch: String, tables: [TableSchema],
                logger: Logger) throws -> RuleEngine? {
    let rulesConfig = options.resolved(config.rules)
    let explicit = options.explicit(config.rules)
    let evaluator: RuleEvaluator
    do {
        evaluator = try RuleEvaluator(store: store, scratch: scratch, library: config.storage.chdbLibrary)
    } catch {
        guard explicit else {
            logger.warning("detection is off: rules are evaluated with embedded ClickHouse, which cannot start here: \(error)")
            return nil
        }
        throw failure("rules: \(error)", code: 2)
    }
    let set = RuleSet.load(rulesConfig, tables: ruleTables(store, extra: tables), check: evaluator.type)
    for problem in set.problems { logger.warning("rules: \(problem)") }
    let outputs: AlertOutputs
    let drift: DriftDetector?
    let engine: RuleEngine
    do {
        outputs = try AlertOutputs(stdout: rulesConfig.stdout, file: rulesConfig.file, webhooks: rulesConfig.webhooks)
        drift = rulesConfig.driftLearnSeconds > 0 ? try DriftDetector(store: store, learnSeconds: rulesConfig.driftLearnSeconds) : nil
        engine = try RuleEngine(store: store, rules: set, evaluator: evaluator, outputs: outputs, drift: drift,
                                onError: { logger.warning("\($0)") })
    } catch let problem as RuleProblem {
        throw failure("rules: \(problem)", code: 2)
    } catch {
        throw failure("rules: \(error)")
    }
    var outs = ["audit.alerts"]
    if rulesConfig.stdout { outs.append("stdout") }
    if let file = rulesConfig.file { outs.append(file) }
    if !rulesConfig.webhooks.isEmpty { outs.append("\(rulesConfig.webhooks.count) webhook\(rulesConfig.webhooks.count == 1 ? "" : "s")") }
    let driftText = drift.map { "; drift detection learns for \($0.learnSeconds) s per image" } ?? ""
    logger.notice("rules: \(set.rules.count) in force on \(Set(set.rules.map(\.table)).count) tables\(driftText); alerts → \(outs.joined(separator: ", "))")
    engine.start()
    return engine
}

extension RuleEngine {
    /// The exit summary: `rules: N rules, rows evaluated N, alerts N, ...`.
    var summaryLine: String {
        let c = counters
        return "rules: \(rules.rules.count) rules, rows evaluated \(c.rowsEvaluated.load(ordering: .relaxed)), alerts \(c.alerts.load(ordering: .relaxed)), "
            + "batches not evaluated \(c.batchesDropped.load(ordering: .relaxed)) (rows \(c.rowsDropped.load(ordering: .relaxed))), "
            + "evaluation errors \(c.evaluationErrors.load(ordering: .relaxed)), alerts not stored \(c.alertsNotStored.load(ordering: .relaxed)), "
            + "webhook drops \(outputs.webhookDrops.load(ordering: .relaxed))"
            + (drift.map { d in
                let c = d.counters
                return ", drift row times clamped \(c.rowTimesClamped.load(ordering: .relaxed)), drift values evicted \(c.valuesEvicted.load(ordering: .relaxed)), "
                    + "drift scopes evicted \(c.scopesEvicted.load(ordering: .relaxed))"
            } ?? "")
    }

    /// The engine's counters for /metrics.
    var samples: [Sample] {
        let c = counters
        var out: [Sample] = [
            Sample("infrasight_rules_rows_evaluated_total", [], Double(c.rowsEvaluated.load(ordering: .relaxed)), .counter, help: "Stored rows the detection rules were evaluated on"),
            Sample("infrasight_rules_batches_dropped_total", [], Double(c.batchesDropped.load(ordering: .relaxed)), .counter, help: "Stored batches not evaluated (the rules' queue was full)"),
            Sample("infrasight_rules_rows_dropped_total", [], Double(c.rowsDropped.load(ordering: .relaxed)), .counter, help: "Rows of the batches not evaluated"),
            Sample("infrasight_rules_evaluation_errors_total", [], Double(c.evaluationErrors.load(ordering: .relaxed)), .counter, help: "Batches whose evaluation failed"),
            Sample("infrasight_rules_evaluation_seconds_total", [], Double(c.evaluationNs.load(ordering: .relaxed)) / 1e9, .counter, help: "Time spent evaluating rules"),
            Sample("infrasight_alerts_not_stored_total", [], Double(c.alertsNotStored.load(ordering: .relaxed)), .counter, help: "Alerts the store refused (they still went to the other outputs)"),
            Sample("infrasight_alert_webhook_sent_total", [], Double(outputs.webhookSent.load(ordering: .relaxed)), .counter, help: "Alerts a webhook accepted"),
            Sample("infrasight_alert_webhook_drops_total", [], Double(outputs.webhookDrops.load(ordering: .relaxed)), .counter, help: "Alerts not delivered to a webhook (queue full or every attempt failed)"),
        ]
        for (rule, n) in alertCounts() {
            out.append(Sample("infrasight_rule_alerts_total", [("rule", rule)], Double(n), .counter, help: "Alerts raised, per rule"))
        }
        if let d = drift?.counters {
            let past = DriftDetector.rowTimeBounds.past / 86_400_000, future = DriftDetector.rowTimeBounds.future / 60_000
            out += [
                Sample("infrasight_drift_row_times_clamped_total", [], Double(d.rowTimesClamped.load(ordering: .relaxed)), .counter,
                       help: "Drift candidates whose row time was over \(past) days before or \(future) minutes after the detector's clock (clamped; windows never use row times)"),
                Sample("infrasight_drift_values_evicted_total", [], Double(d.valuesEvicted.load(ordering: .relaxed)), .counter,
                       help: "Values a drift baseline forgot because its scope held \(DriftDetector.maxValuesPerScope)"),
                Sample("infrasight_drift_scopes_evicted_total", [], Double(d.scopesEvicted.load(ordering: .relaxed)), .counter,
                       help: "Drift scopes forgotten, least recently seen first, because all baselines held \(DriftDetector.maxValues) values"),
                Sample("infrasight_drift_baseline_scopes", [], Double(d.scopes.load(ordering: .relaxed)), .gauge, help: "Drift scopes held in memory"),
                Sample("infrasight_drift_baseline_values", [], Double(d.values.load(ordering: .relaxed)), .gauge, help: "Drift baseline values held in memory"),
            ]
        }
        return out
    }
}

/// Where the rules write their scratch files: inside an embedded store's data directory,
/// else a private directory of this process under the system's temporary directory.
func rulesScratch(_ store: EventStore) -> String {
    if let embedded = store as? EmbeddedStore { return embedded.engine.dataDir + "/infrasight-rules" }
    return NSTemporaryDirectory() + "/infrasight-rules-\(getpid())"
}
