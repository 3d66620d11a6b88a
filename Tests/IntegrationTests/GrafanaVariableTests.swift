import Foundation
import InfraSightTestSupport
import Testing

/// Issue #22 (item 8): a dashboard variable can be set by anyone who can open a dashboard
/// link (`?var-node=...`), to any text. Every variable reaches ClickHouse percent-encoded,
/// as the literal argument of `decodeURLComponent` (`GrafanaPlaceholders`). Checked here
/// for each variable, in every panel that uses it, as Grafana and the plugin expand the
/// panel's SQL (`GrafanaExpansion`), on the workload's store:
///
/// - the statement's syntax tree (`EXPLAIN AST`) is the one a plain marker value gives,
///   but for that literal, which is only ever `decodeURLComponent`'s one argument: no
///   value reaches the SQL's structure;
/// - the panel returns exactly the rows of its catalog query with the decoded value
///   written as `unhex('<its bytes>')` (a literal no text can break out of), other
///   parameters alike: a hostile node name shows what a node of that name would (none),
///   never more; the workload's own values show its rows.
extension CatalogTests {
    /// Every variable the dashboards have; `theHostileValueTestCoversEveryVariable` fails
    /// when a dashboard gains one without a line here.
    static let dashboardVariables = ["node", "container", "user", "comm", "search", "severity", "prefixes", "pid", "start_time_ns"]

    /// Values a link may give any variable.
    static let hostileValues: [(label: String, value: String)] = [
        ("the finding: a backslash before the quote", #"\' = ' OR 1=1) -- "#),
        ("a quote", "'"),
        ("a backslash", "\\"),
        ("a second statement", "'; DROP TABLE audit.alerts; --"),
        ("double quotes and backquotes", "\" OR 1=1 OR `x` = `x"),
        ("comments", "x -- y /* z */ # w"),
        ("a heredoc", "$$ OR 1=1 $$"),
        ("the plugin's macros", "$__interval_s $__timeFilter(node_name) $__fromTime_ms"),
        ("Grafana variables", "${node} $node [[node]] ${node:raw}"),
        ("percent-encoding", "%27%20OR%201%3D1 %zz %"),
        ("control characters", "a\nb\tc\rd\u{0}e"),
        ("Unicode", "nœud-名前-🙂-\u{202E}exe.txt-\u{200B}"),
        ("very long", String(repeating: #"\' OR 1=1 -- é🙂 "#, count: 150)),
    ]

    @Test func theHostileValueTestCoversEveryVariable() throws {
        var names: Set<String> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: Self.dashboardsDir) {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(Self.dashboardsDir)/\(file)"))
            let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let list = (dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
            names.formUnion(list.compactMap { $0["name"] as? String })
            // The All value the panels read as every node (and referenceLiteral too).
            for variable in list where variable["name"] as? String == "node" {
                #expect(variable["allValue"] as? String == "*", "\(file)")
            }
        }
        #expect(names == Set(Self.dashboardVariables))
        // Every panel refers to its variables as `${name:percentencode}` only: with the
        // plugin's macros taken out, no other variable syntax of Grafana's is left.
        for panel in try Self.dashboardPanels() {
            let rest = panel.sql.replacingOccurrences(of: #"\$\{\w+:percentencode\}|\$__\w+"#, with: "", options: .regularExpression)
            #expect(rest.range(of: #"\$\w|\$\{|\[\[\w"#, options: .regularExpression) == nil, "\(panel.query): \(rest)")
        }
    }

    @Test(arguments: dashboardVariables)
    func aHostileValueIsOnlyALiteralForDecodeURLComponent(variable: String) throws {
        let w = try Self.workload()
        let start = try helperStart(w)
        let parameters = try Self.catalogParameters.get()
        let panels = try Self.dashboardPanels().filter { $0.sql.contains("${\(variable):") }
        #expect(!panels.isEmpty)
        let isList = parameters[panels[0].query]?.first { $0.name == variable }?.type == "Array(String)"
        // The other variables at the workload's values: its node and process, every
        // container, user and command, its sensitive directory.
        let baseline: [String: GrafanaExpansion.Value] = [
            "node": .text(w.node), "container": .text(""), "user": .text(""), "comm": .text(""), "search": .text(""), "severity": .text(""),
            "prefixes": .list(["\(w.sensitiveDir)/"]), "pid": .text(String(w.helperPid)), "start_time_ns": .text(start),
        ]
        // Legitimate values, and whether the workload's rows must show.
        let legitimate: [(label: String, value: GrafanaExpansion.Value, showsRows: Bool)] = switch variable {
        case "node": [("the workload's node", .text(w.node), true), ("All", .all("*"), true), ("empty", .text(""), true)]
        case "comm": [("the helper", .text(w.helperComm), true), ("empty", .text(""), true)]
        case "user": [("root", .text("root"), true), ("empty", .text(""), true)]
        case "container": [("empty: every container and the host", .text(""), true), ("a prefix no container has", .text("0"), false)]
        case "search": [("the helper's argument", .text(CatalogWorkload.oddArgument), true), ("its file", .text(w.secret), true), ("empty", .text(""), true)]
        // The setuid chmod raises a high alert.
        case "severity": [("high", .text("high"), true), ("empty", .text(""), true)]
        case "prefixes": [
            ("the sensitive directory", .list(["\(w.sensitiveDir)/"]), true), ("one value, not a list", .text("\(w.sensitiveDir)/"), true),
            ("two values", .list(["/etc/shadow", w.secret]), true), ("none", .list([]), false),
        ]
        case "pid": [("the helper", .text(String(w.helperPid)), true), ("empty", .text(""), false)]
        case "start_time_ns": [("the helper's", .text(start), true), ("empty", .text(""), false)]
        default: []
        }
        #expect(!legitimate.isEmpty, "no legitimate values for \(variable)")
        // A list's hostile value comes with a legitimate one.
        let cases = legitimate + Self.hostileValues.map { ($0.label, isList ? .list([$0.value, "\(w.sensitiveDir)/"]) : .text($0.value), false) }
        let marker: GrafanaExpansion.Value = isList ? .list(["marker0value"]) : .text("marker0value")
        let time = GrafanaExpansion(variables: baseline, fromMs: Int64(w.from * 1000), toMs: Int64(w.to * 1000), intervalSeconds: 10)
        func expansion(_ value: GrafanaExpansion.Value) -> GrafanaExpansion {
            var e = time
            e.variables[variable] = value
            return e
        }
        let markerEncoded = time.formatted(marker, "percentencode")
        var markerTrees: [[String]: [String]] = [:]
        var items: [(key: String, sql: String)] = []

        // The tree: the marker's, with the value's literal for the marker's.
        for (index, (label, value, _)) in cases.enumerated() {
            let grafana = expansion(value)
            let encoded = time.formatted(value, "percentencode")
            do {
                for group in Self.statements(panels.map { (key: $0.query, sql: grafana.expand($0.sql)) }) {
                    let keys = group.map(\.key)
                    let tree = try explainAST(Self.fingerprint(group), w)
                    if markerTrees[keys] == nil {
                        let m = expansion(marker)
                        let markerTree = try explainAST(Self.fingerprint(panels.filter { keys.contains($0.query) }.map { (key: $0.query, sql: m.expand($0.sql)) }), w)
                        // In the marker's tree the literal is decodeURLComponent's one
                        // argument, once for each place the panels use the variable.
                        let uses = panels.filter { keys.contains($0.query) }.map { $0.sql.components(separatedBy: "${\(variable):").count - 1 }.reduce(0, +)
                        let at = markerTree.indices.filter { markerTree[$0].hasSuffix("Literal '\(markerEncoded)'") }
                        #expect(at.count == uses, "\(variable): \(at.count) literals for \(uses) uses in \(keys)")
                        for i in at {
                            let depth = markerTree[i].prefix { $0 == " " }.count
                            let argument = i >= 2 && markerTree[i - 1] == String(repeating: " ", count: depth - 1) + "ExpressionList (children 1)"
                                && markerTree[i - 2] == String(repeating: " ", count: depth - 2) + "Function decodeURLComponent (children 1)"
                            #expect(argument, "\(variable) in \(keys) is not decodeURLComponent's argument: \(markerTree[max(0, i - 3)...i])")
                        }
                        markerTrees[keys] = markerTree
                    }
                    let expected = markerTrees[keys]!.map { $0.replacingOccurrences(of: "Literal '\(markerEncoded)'", with: "Literal '\(encoded)'") }
                    let same = tree == expected
                    let difference = zip(tree, expected).first { $0 != $1 }.map { "\($0.0) instead of \($0.1)" } ?? "\(tree.count) lines for \(expected.count)"
                    #expect(same, "\(variable) = \(label) changes the tree of \(keys): \(difference)")
                }
            } catch {
                Issue.record("\(variable) = \(label): \(error)")
            }
            // The rows, run below: the panel's, and its catalog query's with the decoded
            // value as an unhex literal.
            for panel in panels {
                var literals: [String: String] = [:]
                for p in parameters[panel.query] ?? [] {
                    literals[p.name] = try Self.referenceLiteral(p, grafana.variables[p.name], time)
                }
                items.append((key: "\(index) grafana \(panel.query)", sql: grafana.expand(panel.sql)))
                items.append((key: "\(index) catalog \(panel.query)", sql: try Self.catalogStatement(panel.query, literals)))
            }
        }

        var rows: [String: [String]] = [:]
        for group in Self.statements(items) {
            do {
                for row in try runSQL(Self.fingerprint(group), w) {
                    rows[jsonText(row["_panel"])] = row["_rows"] as? [String] ?? []
                }
            } catch {
                Issue.record("\(variable): \(error)")
            }
        }
        for (index, (label, _, showsRows)) in cases.enumerated() {
            for panel in panels {
                guard let shown = rows["\(index) grafana \(panel.query)"], let literal = rows["\(index) catalog \(panel.query)"] else { continue }
                let same = shown == literal
                #expect(same, "\(variable) = \(label): \(panel.query) shows \(shown.count) rows, its catalog query \(literal.count)\n\(shown.prefix(3))\n\(literal.prefix(3))")
            }
            if showsRows {
                #expect(panels.contains { !(rows["\(index) grafana \($0.query)"] ?? []).isEmpty }, "\(variable) = \(label): no panel shows the workload")
            }
        }
    }

    /// `EXPLAIN AST sql`, one line a node.
    func explainAST(_ sql: String, _ w: CatalogWorkload) throws -> [String] {
        let r = try run(Paths.infrasight, ["query", "--data-dir", w.data, "--format", "TSV", "EXPLAIN AST " + sql])
        guard r.status == 0 else { throw TestFailure("EXPLAIN AST failed (\(r.status)): \(r.stderr)\n\(sql.prefix(2000))") }
        return r.stdout.split(separator: "\n").map(String.init)
    }

    /// One catalog query a panel shows, with the panel's SQL (each query once: a query on
    /// two dashboards is the same panel).
    struct DashboardPanel {
        let query: String
        let sql: String
    }

    static func dashboardPanels() throws -> [DashboardPanel] {
        var panels: [String: String] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: dashboardsDir).sorted() {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(dashboardsDir)/\(file)"))
            let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            for panel in dashboard["panels"] as? [[String: Any]] ?? [] {
                let target = try #require((panel["targets"] as? [[String: Any]])?.first)
                let query = try #require((target["meta"] as? [String: Any])?["catalogQuery"] as? String)
                panels[query] = try #require(target["rawSql"] as? String)
            }
        }
        return panels.sorted { $0.key < $1.key }.map { DashboardPanel(query: $0.key, sql: $0.value) }
    }

    struct CatalogParameter {
        let name: String
        let type: String
        let defaultValue: String?
    }

    /// Each catalog query's parameters, from `queries list --json`.
    static let catalogParameters = Result { () throws -> [String: [CatalogParameter]] in
        let r = try run(Paths.infrasight, ["queries", "list", "--json"])
        guard r.status == 0, let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] else {
            throw TestFailure("queries list --json: \(r.stderr)")
        }
        return Dictionary(uniqueKeysWithValues: list.map { query in
            (query["name"] as! String, (query["parameters"] as! [[String: Any]]).map {
                CatalogParameter(name: $0["name"] as! String, type: $0["type"] as! String, defaultValue: $0["default"] as? String)
            })
        })
    }

    /// The catalog query's SQL (queries/NAME.sql after its header) with each placeholder
    /// replaced by `literals[name]`.
    static func catalogStatement(_ name: String, _ literals: [String: String]) throws -> String {
        let text = try String(contentsOfFile: "\(Paths.packageRoot)/queries/\(name).sql", encoding: .utf8)
        let sql = text.split(separator: "\n", omittingEmptySubsequences: false).drop { $0.hasPrefix("--") }.joined(separator: "\n")
        let regex = try NSRegularExpression(pattern: #"\{(\w+):([A-Za-z0-9()]+)\}"#)
        let ns = sql as NSString
        var out = "", last = 0
        for match in regex.matches(in: sql, range: NSRange(location: 0, length: ns.length)) {
            let placeholder = ns.substring(with: match.range(at: 1))
            guard let literal = literals[placeholder] else { throw TestFailure("\(name): no value for {\(placeholder)}") }
            out += ns.substring(with: NSRange(location: last, length: match.range.location - last)) + literal
            last = match.range.location + match.range.length
        }
        return out + ns.substring(from: last)
    }

    /// What the parameter means for a variable's value, as a literal no text can break out
    /// of: text as `unhex('<its UTF-8 bytes>')`; the node's All as ''; a list as its values
    /// (Grafana sends `{a,b}`, or one value without braces; commas separate, empty values
    /// drop); a number as the text's number, or 0.
    static func referenceLiteral(_ p: CatalogParameter, _ value: GrafanaExpansion.Value?, _ time: GrafanaExpansion) throws -> String {
        func unhex(_ s: String) -> String { "unhex('" + s.utf8.map { String(format: "%02X", $0) }.joined() + "')" }
        switch (p.name, p.type) {
        case ("from", _): return "fromUnixTimestamp64Milli(\(time.fromMs))"
        case ("to", _): return "fromUnixTimestamp64Milli(\(time.toMs))"
        case ("interval_s", _): return String(Int(max(time.intervalSeconds, 1)))
        case ("limit", _): return try #require(p.defaultValue)
        default: break
        }
        let text: String
        switch value {
        case .all?: text = ""
        case .text(let s)?: text = p.name == "node" && s == "*" ? "" : s
        case .list(let values)?: text = "{" + values.joined(separator: ",") + "}"
        case nil: throw TestFailure("no value for \(p.name)")
        }
        switch p.type {
        case "String": return unhex(text)
        case "Array(String)":
            let inner = text.count >= 2 && text.hasPrefix("{") && text.hasSuffix("}") ? String(text.dropFirst().dropLast()) : text
            return "CAST([" + inner.split(separator: ",").map { unhex(String($0)) }.joined(separator: ", ") + "], 'Array(String)')"
        case "UInt32", "UInt64": return "to\(p.type)OrZero(\(unhex(text)))"
        default: throw TestFailure("no reference for \(p.name) \(p.type)")
        }
    }

    /// `(key, SQL)` items in statements under 100 kB each (one argument of `infrasight
    /// query`; Linux refuses an argument over 128 KiB).
    static func statements(_ items: [(key: String, sql: String)]) -> [[(key: String, sql: String)]] {
        var groups: [[(key: String, sql: String)]] = [[]]
        var size = 0
        for item in items {
            if size + item.sql.utf8.count > 100_000, !groups[groups.count - 1].isEmpty {
                groups.append([])
                size = 0
            }
            groups[groups.count - 1].append(item)
            size += item.sql.utf8.count + 200
        }
        return groups
    }

    /// One statement: for each item its key and its rows (JSON, sorted).
    static func fingerprint(_ items: [(key: String, sql: String)]) -> String {
        items.map { "SELECT '\($0.key)' AS _panel, arraySort(groupArray(formatRow('JSONEachRow', *))) AS _rows FROM (\n\($0.sql)\n)" }
            .joined(separator: "\nUNION ALL\n")
    }
}
