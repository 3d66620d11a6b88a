import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// Detection on real processes: rules files of one's own (a bad rule is refused with its
/// file and line, the rest run), the outputs (stdout, a 0600 file, webhooks retried or
/// counted as dropped, per-rule metrics), backtests that print what the live rule raised,
/// and rules on `server` over embedded ClickHouse and Debian's 18.16 server.
@Suite(.serialized) struct DetectionTests {
    /// Two good rules on opens of two marker files, and one that names no column.
    static func rulesFile(_ w: DetectionWorkload, tag: String) throws -> (path: String, a: String, b: String, markerA: String, markerB: String, badLine: Int) {
        let markerA = "\(w.dir)/marker-a", markerB = "\(w.dir)/marker-b"
        for m in [markerA, markerB] { #expect(FileManager.default.createFile(atPath: m, contents: Data("m\n".utf8))) }
        let a = "opened_marker_a_\(tag)", b = "opened_marker_b_\(tag)"
        let text = """
            rules:
              - name: \(a)
                description: The test's first marker was opened.
                severity: high
                tags: [T1005, test]
                table: tracing_events
                condition: $opened AND filename = '\(markerA)'
                output: "%comm opened %filename (pid %pid)"
              - name: broken_\(tag)
                description: Names a column tracing_events does not have.
                severity: low
                table: tracing_events
                condition: no_such_column = 1
                output: never
              - name: \(b)
                description: The test's second marker was opened.
                severity: medium
                tags: [test]
                table: tracing_events
                condition: event_type = 'open' AND filename = '\(markerB)'
                output: "%filename by %comm"

            """
        let path = "\(w.dir)/site-rules.yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (path, a, b, markerA, markerB, 9)
    }

    /// `rules test RULE --since 1h` on `data` with the test's rules file: the pids it prints.
    static func backtest(data: String, rules: String, rule: String) throws -> (pids: [Int], stderr: String, lines: [String]) {
        let r = try run(Paths.infrasight, ["rules", "test", rule, "--since", "1h", "--data-dir", data, "--rules", rules])
        guard r.status == 0 else { throw TestFailure("rules test \(rule) exited \(r.status): \(r.stderr)") }
        let lines = r.stdout.split(separator: "\n").map(String.init)
        guard let header = lines.first?.split(separator: "\t").map(String.init), let pid = header.firstIndex(of: "pid") else {
            throw TestFailure("no header: \(r.stdout)")
        }
        return (lines.dropFirst().map { Int($0.split(separator: "\t", omittingEmptySubsequences: false)[pid])! }, r.stderr, Array(lines.dropFirst()))
    }

    @Test func aBadRuleIsOneWarningWithFileAndLineTheOthersAlertToStdoutAFileAndWebhooksAndTheBacktestPrintsTheSameRows() throws {
        let w = try DetectionWorkload()
        let tag = String(w.comm.dropFirst(2))
        let rules = try Self.rulesFile(w, tag: tag)
        let data = try makeTempDir(prefix: "detectdata")
        let node = "detect-\(tag)"
        let config = try w.config(node: node)
        let alertsFile = "\(w.dir)/alerts.jsonl"
        let hook = try WebhookReceiver(statuses: [500])
        defer { hook.stop() }
        let closed = try DetectionWorkload.closedPort()
        // A webhook that redirects elsewhere: alerts are not followed there.
        let elsewhere = try WebhookReceiver(statuses: [])
        defer { elsewhere.stop() }
        let redirecting = try WebhookReceiver(statuses: [], redirectTo: "http://127.0.0.1:\(elsewhere.port)/stolen")
        defer { redirecting.stop() }
        let metricsPort = try freeLoopbackPort()
        let p = try DetectionWorkload.start([
            "--data-dir", data, "--config", config, "--no-default-rules", "--rules", rules.path, "--alerts-stdout",
            "--alerts-file", alertsFile, "--alerts-webhook", "http://127.0.0.1:\(hook.port)/hook",
            "--alerts-webhook", "http://127.0.0.1:\(closed)/never", "--alerts-webhook", "http://127.0.0.1:\(redirecting.port)/hook",
            "--metrics-listen", "127.0.0.1:\(metricsPort)",
        ])
        // One warning at start, naming the file, the rule's line and the reason.
        let warnings = p.stderr.split(separator: "\n").filter { $0.contains("warning: rules:") }
        #expect(warnings.count == 1, "\(p.stderr)")
        #expect(warnings.first?.contains("\(rules.path):\(rules.badLine) (broken_\(tag))") == true, "\(warnings)")
        #expect(warnings.first?.contains("no_such_column") == true, "\(warnings)")
        #expect(p.stderr.contains("rules: 2 in force"), "\(p.stderr)")

        // The first marker twice (two processes), the second once.
        let pidsA = [try w.run(["open", rules.markerA, "1"]), try w.run(["open", rules.markerA, "1"])]
        let pidB = try w.run(["open", rules.markerB, "1"])
        let live = try DetectionWorkload.waitForAlerts(p, count: 3)
        #expect(live.count == 3, "\(live)")
        let a = live.filter { $0["rule"] as? String == rules.a }
        #expect(a.compactMap { int($0, "pid") }.sorted() == pidsA.map(Int64.init).sorted())
        let first = try #require(a.first)
        #expect(first["severity"] as? String == "high")
        #expect(first["tags"] as? [String] == ["T1005", "test"])
        #expect(first["source_table"] as? String == "tracing_events")
        #expect(first["node_name"] as? String == node)
        #expect(first["comm"] as? String == w.comm)
        #expect(first["output"] as? String == "\(w.comm) opened \(rules.markerA) (pid \(int(first, "pid") ?? -1))")
        let row = try #require(first["row"] as? [String: Any], "\(first)")
        #expect(row["filename"] as? String == rules.markerA)
        #expect(row["event_type"] as? String == "open")
        let b = try #require(live.first { $0["rule"] as? String == rules.b })
        #expect(int(b, "pid") == Int64(pidB))
        #expect(b["severity"] as? String == "medium")
        #expect(b["output"] as? String == "\(rules.markerB) by \(w.comm)")

        // The backtest while run holds the store (through its query socket): the same rows.
        let during = try Self.backtest(data: data, rules: rules.path, rule: rules.a)
        #expect(during.pids.sorted() == pidsA.map(Int.init).sorted(), "\(during)")
        #expect(try Self.backtest(data: data, rules: rules.path, rule: rules.b).pids == [Int(pidB)])

        // The file: 0600, the same JSON lines as stdout.
        var st = stat()
        #expect(stat(alertsFile, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        let fileLines = try String(contentsOfFile: alertsFile, encoding: .utf8).split(separator: "\n").map(String.init)
        let stdoutLines = p.stdout.split(separator: "\n").map(String.init)
        #expect(fileLines == stdoutLines)

        // The webhook: 500 to the first attempt, so that alert is POSTed twice; every alert
        // arrives, as JSON, the same objects as on stdout.
        try waitUntil("the webhook has every alert", timeout: 30) { hook.requests.filter { $0.status == 200 }.count >= 3 }
        let requests = hook.requests
        #expect(requests.count == 4, "\(requests.map(\.status))")
        #expect(requests.first?.status == 500)
        #expect(requests.allSatisfy { $0.method == "POST" && $0.path == "/hook" && $0.headers["content-type"] == "application/json" })
        #expect(requests[0].body == requests[1].body, "the failed alert is retried first")
        let posted = try requests.filter { $0.status == 200 }.map { req -> String in
            let object = try #require(try JSONSerialization.jsonObject(with: req.body) as? [String: Any])
            return "\(object["rule"] as? String ?? "?") \(int(object, "pid") ?? -1) \(object["output"] as? String ?? "?") \((object["row"] as? [String: Any])?["filename"] as? String ?? "?")"
        }
        let printed = live.map { "\($0["rule"] as? String ?? "") \(int($0, "pid") ?? -1) \($0["output"] as? String ?? "") \(($0["row"] as? [String: Any])?["filename"] as? String ?? "")" }
        #expect(posted.sorted() == printed.sorted())

        // Per-rule counters; the closed and the redirecting webhooks' drops reach the alerts
        // raised (each alert fails all its attempts, with backoff, one after another).
        var metrics = ""
        try waitUntil("the closed and redirecting webhooks dropped every alert", timeout: 60) {
            metrics = try DetectionWorkload.metrics(metricsPort)
            return DetectionWorkload.sample(metrics, "infrasight_alert_webhook_drops_total") == 6
        }
        #expect(redirecting.requests.count >= 3 && elsewhere.requests.isEmpty, "followed a redirect: \(elsewhere.requests.map(\.path))")
        #expect(DetectionWorkload.sample(metrics, "infrasight_rule_alerts_total{rule=\"\(rules.a)\"}") == 2, "\(metrics)")
        #expect(DetectionWorkload.sample(metrics, "infrasight_rule_alerts_total{rule=\"\(rules.b)\"}") == 1)
        #expect(DetectionWorkload.sample(metrics, "infrasight_alert_webhook_sent_total") == 3)
        #expect(DetectionWorkload.sample(metrics, "infrasight_rules_batches_dropped_total") == 0)
        p.signal(SIGINT)
        let r = try p.wait(timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try #require(r.stderr.split(separator: "\n").first { $0.contains("rules: 2 rules, rows evaluated") }, "\(r.stderr)")
        #expect(summary.contains("alerts 3, batches not evaluated 0 (rows 0), evaluation errors 0, alerts not stored 0, webhook drops 6"), "\(summary)")

        // After run stopped (the engine opened directly): still the same rows, and they
        // are the rows in audit.alerts.
        let after = try Self.backtest(data: data, rules: rules.path, rule: rules.a)
        #expect(after.lines == during.lines)
        let stored = try run(Paths.infrasight, ["query", "--data-dir", data, "SELECT rule, pid FROM audit.alerts ORDER BY rule, pid"])
        let expected = (pidsA.sorted().map { "\(rules.a)\t\($0)" } + ["\(rules.b)\t\(pidB)"]).joined(separator: "\n") + "\n"
        #expect(stored.stdout == expected, "\(stored.stderr)")
    }

    @Test func rulesCheckExitsZeroForUsableRulesAndOneNamingTheFileAndLineOfARefusedRule() throws {
        let w = try DetectionWorkload()
        let tag = String(w.comm.dropFirst(2))
        let rules = try Self.rulesFile(w, tag: tag)
        let bad = try run(Paths.infrasight, ["rules", "check", rules.path])
        #expect(bad.status == 1, "\(bad.stdout) \(bad.stderr)")
        #expect(bad.stdout.contains("2 rules usable, 1 refused"), "\(bad.stdout)")
        #expect(bad.stderr.contains("\(rules.path):\(rules.badLine) (broken_\(tag))"), "\(bad.stderr)")
        let good = "\(w.dir)/good.yaml"
        try """
            rules:
              - name: good_\(tag)
                description: Uses the default ruleset's macros and lists.
                severity: info
                table: tracing_events
                condition: $opened AND filename IN $sensitive_files
                output: "%filename"
            """.write(toFile: good, atomically: true, encoding: .utf8)
        let ok = try run(Paths.infrasight, ["rules", "check", good])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("1 rule usable, 0 refused"), "\(ok.stdout)")
        let notYAML = "\(w.dir)/broken.yaml"
        try "rules: [\n".write(toFile: notYAML, atomically: true, encoding: .utf8)
        let broken = try run(Paths.infrasight, ["rules", "check", notYAML])
        #expect(broken.status == 1)
        #expect(broken.stderr.contains(notYAML))
    }

    /// `server` with rules: an agent's rows are evaluated as the server stores them and the
    /// alerts land in the server's store (`store` arguments) and on its stdout.
    static func serverRaises(store: [String], environment: [String: String]? = nil, stored: (String) throws -> String) throws {
        let w = try DetectionWorkload()
        let tag = String(w.comm.dropFirst(2))
        let rules = try Self.rulesFile(w, tag: tag)
        let agentConfig = try w.config(node: "agent-\(tag)")
        let server = try Fleet.Server.start(store: store, extra: ["--no-default-rules", "--rules", rules.path, "--alerts-stdout"], environment: environment)
        let agent = try BackgroundProcess(Paths.infrasight, ["agent", "--server", "127.0.0.1:\(server.port)", "--config", agentConfig, "--spool-dir", "\(w.dir)/spool"])
        try agent.waitForStderr("infrasight: note: started: ", timeout: 60)
        // The first execs itself, so drift detection learns an executable (the baseline is
        // written to the same store).
        let pids = [try w.run(["exec", w.helper, "open", rules.markerA, "2"]), try w.run(["open", rules.markerA, "1"])]
        let live = try DetectionWorkload.waitForAlerts(server.process, count: 3)
        #expect(live.allSatisfy { $0["rule"] as? String == rules.a && $0["node_name"] as? String == "agent-\(tag)" }, "\(live)")
        #expect(live.compactMap { int($0, "pid") }.sorted() == [Int64(pids[0]), Int64(pids[0]), Int64(pids[1])].sorted())
        let a = try agent.interrupt(after: 0.5)
        #expect(a.status == 0, "\(a.stderr)")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.contains("alerts 3, batches not evaluated 0 (rows 0), evaluation errors 0, alerts not stored 0"), "\(s.stderr)")
        let expected = ([pids[0], pids[0], pids[1]].sorted().map { "\(rules.a)\ttracing_events\t\(w.comm)\t\($0)" }).joined(separator: "\n") + "\n"
        #expect(try stored("SELECT rule, source_table, comm, pid FROM audit.alerts ORDER BY pid") == expected)
        #expect(try stored("SELECT kind, value, learned FROM audit.drift_baseline WHERE scope = 'host:agent-\(tag)' ORDER BY kind") == "executable\t\(w.helper)\t1\nscope\t\t1\n")
    }

    @Test func aRuleOnTheServerAlertsIntoItsEmbeddedStore() throws {
        let data = try makeTempDir(prefix: "detectserver")
        try Self.serverRaises(store: ["--data-dir", data]) { sql in
            try run(Paths.infrasight, ["query", "--data-dir", data, sql]).stdout
        }
    }

    /// The server's rules run in a scratch embedded engine; the alerts go to the 18.16
    /// server's audit.alerts, whose time is a DateTime there (18.16 has no DateTime64).
    @Test func aRuleOnTheServerAlertsIntoAClickHouse18Server() throws {
        let clickhouse = try ClickHouseServer()
        try Self.serverRaises(store: ["--clickhouse-url", clickhouse.url]) { sql in try clickhouse.query(sql) }
        #expect(try clickhouse.query("SELECT toTypeName(time) FROM audit.alerts LIMIT 1") == "DateTime\n")
        #expect(try clickhouse.query("SELECT count() FROM audit.alerts WHERE abs(toInt64(toUnixTimestamp(time)) - toInt64(toUnixTimestamp(now()))) < 600") == "3\n")
    }
}
