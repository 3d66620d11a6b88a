import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The query catalog and the Grafana dashboards made from it, run on rows a real traced
/// workload stored (`CatalogWorkload`): through `infrasight queries run` (parameters bound
/// by ClickHouse) and as Grafana would send each panel's SQL (variables and the plugin's
/// macros expanded, `GrafanaExpansion`), on the embedded engine.
@Suite(.serialized) struct CatalogTests {
    /// Recorded once for the suite.
    static let recorded = Result(catching: { try CatalogWorkload.record() })
    static func workload() throws -> CatalogWorkload { try recorded.get() }

    static var dashboardsDir: String { "\(Paths.packageRoot)/deploy/grafana/dashboards" }

    /// `queries run NAME` on the workload's store over its time range; throws on failure.
    func runQuery(_ name: String, _ params: [String: String] = [:], _ w: CatalogWorkload) throws -> [[String: Any]] {
        var args = ["queries", "run", name, "--data-dir", w.data, "--format", "JSONEachRow"]
        let values = ["from": String(w.from), "to": String(w.to)].merging(params) { $1 }
        for (k, v) in values.sorted(by: { $0.key < $1.key }) { args += ["--param", "\(k)=\(v)"] }
        let r = try run(Paths.infrasight, args)
        guard r.status == 0 else { throw TestFailure("queries run \(name) failed (\(r.status)): \(r.stderr)") }
        return try jsonLines(r.stdout)
    }

    /// `infrasight query SQL` on the workload's store; throws on failure.
    func runSQL(_ sql: String, _ w: CatalogWorkload) throws -> [[String: Any]] {
        let r = try run(Paths.infrasight, ["query", "--data-dir", w.data, "--format", "JSONEachRow", sql])
        guard r.status == 0 else { throw TestFailure("query failed (\(r.status)): \(r.stderr)\n\(sql)") }
        return try jsonLines(r.stdout)
    }

    /// The helper's start time, which with its pid names it (from its exec row).
    func helperStart(_ w: CatalogWorkload) throws -> String {
        let execs = try runQuery("recent_execs", ["node": w.node, "comm": w.helperComm], w)
        return try #require(execs.first.map { jsonText($0["start_time_ns"]) })
    }

    @Test func everyCatalogQueryRunsOnTheWorkloadsStore() throws {
        let w = try Self.workload()
        let list = try run(Paths.infrasight, ["queries", "list", "--json"])
        let queries = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(queries.count >= 21)
        let start = try helperStart(w)
        for query in queries {
            let name = query["name"] as! String
            let params = (query["parameters"] as! [[String: Any]]).map { $0["name"] as! String }
            var values: [String: String] = [:]
            if params.contains("pid") { values = ["node": w.node, "pid": String(w.helperPid), "start_time_ns": start] }
            #expect(throws: Never.self, "\(name)") { _ = try runQuery(name, values, w) }
        }
    }

    @Test func theQueriesAboutTheWorkloadReturnExactlyItsRows() throws {
        let w = try Self.workload()
        let mine = ["node": w.node, "comm": w.helperComm]
        let execs = try runQuery("recent_execs", mine, w)
        #expect(execs.count == 1, "\(execs)")
        let exec = try #require(execs.first)
        #expect(jsonInt(exec, "pid") == w.helperPid && jsonInt(exec, "ppid") == w.shellPid && jsonInt(exec, "return_code") == 0)
        #expect(jsonText(exec["filename"]) == w.helperPath && jsonText(exec["comm"]) == w.helperComm && jsonText(exec["node"]) == w.node)
        #expect(jsonText(exec["argv"]).contains(w.secret) && jsonText(exec["argv"]).contains(CatalogWorkload.oddArgument), "\(exec)")
        let start = jsonText(exec["start_time_ns"])

        let opens = try runQuery("file_activity", mine, w).filter { [w.secret, w.missing].contains(jsonText($0["filename"])) }
        #expect(opens.map { jsonText($0["filename"]) }.sorted() == [w.missing, w.secret].sorted())
        #expect(opens.allSatisfy { jsonInt($0, "pid") == w.helperPid })
        #expect(opens.first { jsonText($0["filename"]) == w.missing }.flatMap { jsonInt($0, "return_code") } == -2)
        #expect((opens.first { jsonText($0["filename"]) == w.secret }.flatMap { jsonInt($0, "return_code") } ?? -1) >= 0)

        let failed = try runQuery("failed_opens", mine, w)
        #expect(failed.count == 1 && jsonInt(failed[0], "failures") == 1, "\(failed)")
        #expect((failed.first?["some_files"] as? [String]) == [w.missing])

        let chmods = try runQuery("chmods", mine, w)
        #expect(chmods.count == 1, "\(chmods)")
        #expect(chmods.first.map { [jsonText($0["filename"]), jsonText($0["mode_octal"]), jsonText($0["setuid"]), jsonText($0["return_code"])] } == [w.setuidFile, "4755", "1", "0"])

        let sensitive = try runQuery("sensitive_files", ["node": w.node, "prefixes": "['\(w.sensitiveDir)/']"], w)
        #expect(sensitive.map { [jsonText($0["filename"]), jsonText($0["pid"]), jsonText($0["comm"])] } == [[w.secret, String(w.helperPid), w.helperComm]])

        let open = "127.0.0.1:\(w.openPort)", closed = "127.0.0.1:\(w.closedPort)"
        let connections = try runQuery("connections", mine, w)
        #expect(Set(connections.map { "\(jsonText($0["direction"])) \(jsonText($0["destination"])) \(jsonText($0["return_code"]))" }) == ["outbound \(open) 0", "outbound \(closed) -111"], "\(connections)")
        let refused = try runQuery("failed_connects", mine, w)
        #expect(refused.map { "\(jsonText($0["destination"])) \(jsonText($0["return_code"]))" } == ["\(closed) -111"])
        let destinations = try runQuery("top_destinations", mine, w)
        #expect(Set(destinations.map { jsonText($0["destination"]) }) == [open, closed])
        let overTime = try runQuery("connections_over_time", mine, w)
        #expect(overTime.compactMap { jsonInt($0, "outbound") }.reduce(0, +) == 2 && overTime.compactMap { jsonInt($0, "failed") }.reduce(0, +) == 1)

        let wx = try runQuery("wx_mappings", mine, w)
        #expect(wx.map { jsonInt($0, "pid") } == [w.helperPid] && (wx.first.flatMap { jsonInt($0, "mappings") } ?? 0) >= 1, "\(wx)")

        // The tree from the helper: the shell is its parent (depth -1).
        let tree = try runQuery("process_tree", ["node": w.node, "pid": String(w.helperPid), "start_time_ns": start], w)
        #expect(tree.map { "\(jsonText($0["depth"])) \(jsonText($0["pid"])) \(jsonText($0["comm"]))" } == ["-1 \(w.shellPid) \(w.shellComm)", "0 \(w.helperPid) \(w.helperComm)"], "\(tree)")
        // And from the shell: the helper is its child.
        let shellStart = try #require(tree.first.map { jsonText($0["start_time_ns"]) })
        let down = try runQuery("process_tree", ["node": w.node, "pid": String(w.shellPid), "start_time_ns": shellStart], w)
        #expect(down.map { "\(jsonText($0["depth"])) \(jsonText($0["pid"]))" } == ["0 \(w.shellPid)", "1 \(w.helperPid)"], "\(down)")

        // The timeline: what it opened, then the connections, in the order it did them.
        let timeline = try runQuery("process_timeline", ["node": w.node, "pid": String(w.helperPid), "start_time_ns": start], w)
        let details = timeline.map { "\(jsonText($0["event_type"])) \(jsonText($0["detail"]))" }
        let secretAt = try #require(details.firstIndex { $0.hasPrefix("open \(w.secret)") }, "\(details)")
        let connectAt = try #require(details.firstIndex { $0.hasPrefix("connect ") && $0.hasSuffix(" -> \(open)") }, "\(details)")
        let refusedAt = try #require(details.firstIndex { $0.hasPrefix("connect ") && $0.hasSuffix(" -> \(closed)") }, "\(details)")
        #expect(secretAt < connectAt && connectAt < refusedAt)
        #expect(details.contains { $0.hasPrefix("chmod \(w.setuidFile) mode ") && $0.hasSuffix("9ed") }, "\(details)")
        #expect(details.contains { $0.hasPrefix("mmap 4096 bytes prot 7 (W+X)") }, "\(details)")

        let nodes = try runQuery("nodes", [:], w)
        #expect(nodes.contains { jsonText($0["node"]) == w.node })
    }

    @Test func aBadParameterIsOneLineAndAQuotedValueIsBoundAsText() throws {
        let w = try Self.workload()
        for (name, params, message) in [
            ("recent_execs", ["bogus=1"], "takes no parameter 'bogus'"),
            ("process_tree", ["node=x"], "needs a value for pid"),
            ("process_tree", ["node=x", "pid=abc", "start_time_ns=1"], "pid"),
        ] {
            let r = try run(Paths.infrasight, ["queries", "run", name, "--data-dir", w.data] + params.flatMap { ["--param", $0] })
            #expect(r.status != 0 && r.stdout.isEmpty)
            #expect(r.stderr.hasPrefix("infrasight: ") && r.stderr.contains(message), "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        }
        // The helper's own argument holds a quote and a backslash: found as text.
        let found = try runQuery("recent_execs", ["node": w.node, "search": CatalogWorkload.oddArgument], w)
        #expect(found.map { jsonInt($0, "pid") } == [w.helperPid])
        // Pasted into the SQL, this would match every row.
        #expect(try runQuery("recent_execs", ["node": w.node, "search": "x' OR 1=1 OR '"], w).isEmpty)
    }

    @Test func theCommittedDashboardsAreWhatTheCatalogGenerates() throws {
        let out = try makeTempDir(prefix: "grafana")
        let r = try run(Paths.infrasight, ["queries", "grafana", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        let generated = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        let committed = try FileManager.default.contentsOfDirectory(atPath: Self.dashboardsDir).sorted()
        #expect(generated == ["files.json", "network.json", "overview.json", "processes.json", "resources.json", "security.json"])
        #expect(committed == generated, "regenerate with: infrasight queries grafana --out deploy/grafana/dashboards")
        for file in generated {
            #expect(try String(contentsOfFile: "\(out)/\(file)", encoding: .utf8) == String(contentsOfFile: "\(Self.dashboardsDir)/\(file)", encoding: .utf8), "\(file) drifted: regenerate")
        }
    }

    @Test func everyPanelAndVariableQueryRunsAsGrafanaSendsItAndThePanelsAboutTheWorkloadShowIt() throws {
        let w = try Self.workload()
        let start = try helperStart(w)
        let time = GrafanaExpansion(variables: [:], fromMs: Int64(w.from * 1000), toMs: Int64(w.to * 1000), intervalSeconds: 10)
        // The workload's values, and every filter at All / empty.
        var mine = time, all = time
        mine.variables = [
            "node": .text(w.node), "container": .text(""), "user": .text(""), "comm": .text(w.helperComm), "search": .text(""), "severity": .text(""),
            "prefixes": .list(["\(w.sensitiveDir)/"]), "pid": .text(String(w.helperPid)), "start_time_ns": .text(start),
        ]
        all.variables = [
            "node": .all("*"), "container": .text(""), "user": .text(""), "comm": .text(""), "search": .text(""), "severity": .text(""),
            "prefixes": .list(["/etc/shadow", "/etc/sudoers"]), "pid": .text(""), "start_time_ns": .text(""),
        ]
        // A text each panel about the workload must show (JSONEachRow text).
        let expected: [String: String] = [
            "recent_execs": "\"pid\":\(w.helperPid)", "file_activity": "\"filename\":\"\(w.secret)\"",
            "failed_opens": "\"some_files\":[\"\(w.missing)\"]", "chmods": "\"mode_octal\":\"4755\"",
            "sensitive_files": "\"filename\":\"\(w.secret)\"", "connections": "\"destination\":\"127.0.0.1:\(w.openPort)\"",
            "failed_connects": "\"destination\":\"127.0.0.1:\(w.closedPort)\"", "top_destinations": "\"destination\":\"127.0.0.1:\(w.closedPort)\"",
            "wx_mappings": "\"pid\":\(w.helperPid)", "process_tree": "\"comm\":\"\(w.shellComm)\"", "process_timeline": "\"detail\":\"\(w.secret)\"",
            "events_per_second": "\"node\":\"\(w.node)\"", "connections_over_time": "\"outbound\":2", "event_totals": "\"table\":\"network_events\"",
        ]
        var seen: Set<String> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: Self.dashboardsDir).sorted() {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(Self.dashboardsDir)/\(file)"))
            let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let variables = (dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
            for variable in variables where variable["type"] as? String == "query" {
                let sql = try #require(variable["query"] as? String)
                let options = try runSQL(time.expand(sql), w)
                #expect(options.contains { jsonText($0["node"]) == w.node }, "\(file) variable \(variable["name"] ?? "")")
                #expect(options.allSatisfy { $0.count == 1 }, "a variable query has one column: the plugin takes a second as the text")
            }
            for panel in dashboard["panels"] as? [[String: Any]] ?? [] {
                let target = try #require((panel["targets"] as? [[String: Any]])?.first)
                let sql = try #require(target["rawSql"] as? String)
                let query = ((target["meta"] as? [String: Any])?["catalogQuery"] as? String) ?? ""
                seen.insert(query)
                #expect(sql.range(of: #"(?<!\$)\{\w+:[A-Za-z0-9()]+\}"#, options: .regularExpression) == nil, "\(file) \(query): a catalog placeholder is left")
                #expect(throws: Never.self, "\(file) \(query) with every filter at All") { _ = try runSQL(all.expand(sql), w) }
                let rows = try runSQL(mine.expand(sql), w)
                if query == "recent_execs" {
                    // The helper's argument with a quote and a backslash, typed in the search box.
                    var search = mine
                    search.variables["search"] = .text(CatalogWorkload.oddArgument)
                    #expect(try runSQL(search.expand(sql), w).map { jsonInt($0, "pid") } == [w.helperPid])
                }
                if let needle = expected[query] {
                    let text = rows.map { String(decoding: try! JSONSerialization.data(withJSONObject: $0, options: [.withoutEscapingSlashes]), as: UTF8.self) }.joined(separator: "\n")
                    #expect(text.contains(needle), "\(file) \(query): \(text)")
                }
            }
        }
        #expect(seen.isSuperset(of: expected.keys), "panels missing: \(Set(expected.keys).subtracting(seen))")
    }
}

/// A JSON integer, whether JSONEachRow wrote it as a number or (64-bit) as a string.
func jsonInt(_ row: [String: Any], _ key: String) -> Int64? { Int64(jsonText(row[key])) }

/// A JSON value as text (JSONEachRow quotes 64-bit integers).
func jsonText(_ value: Any?) -> String {
    switch value {
    case let s as String: s
    case let n as NSNumber: n.stringValue
    case nil: ""
    case let other?: "\(other)"
    }
}
