import Foundation

/// The Grafana dashboards (deploy/grafana/dashboards/*.json), made from the catalog: each
/// query's `-- grafana: DASHBOARD PANELTYPE [ORDER]` line puts it on a dashboard as one
/// panel, its SQL in Grafana form (`GrafanaPlaceholders`). Charts come first, two to a
/// row, then tables; by ORDER (default 100), then by name, within each. `-- grafana: variable NAME` makes the
/// query the drop-down of variable NAME (its column NAME).
///
/// The output is a pure function of the catalog (stable uids, sorted keys), so the
/// committed files can be compared with what `infrasight queries grafana` writes.
public enum GrafanaDashboards {
    public static let datasourceUID = "infrasight-clickhouse"
    public static let datasourceType = "grafana-clickhouse-datasource"

    /// The dashboards, in the order their links list them: (file stem, title).
    public static let dashboards: [(name: String, title: String)] = [
        ("overview", "Overview"), ("processes", "Processes"), ("files", "Files"),
        ("network", "Network"), ("resources", "Resources and containers"), ("security", "Security"),
    ]
    static let panelTypes: Set<String> = ["table", "timeseries", "barchart"]
    /// The filters every dashboard has, whether or not all its panels use them.
    static let standardVariables: [GrafanaPlaceholders.Variable] = [
        .query(name: "node", catalogQuery: "nodes"), .textbox(name: "container"), .textbox(name: "user"), .textbox(name: "comm"),
    ]

    /// `<name>.json` → the dashboard's JSON text, for every dashboard; throws on a
    /// `grafana:` line that names no dashboard, panel type or variable query.
    public static func files(from catalog: QueryCatalog) throws(CatalogError) -> [String: String] {
        var panels: [String: [(query: CatalogQuery, type: String, order: Int)]] = [:]
        var variableQueries: [String: String] = [:]
        for query in catalog.queries {
            for line in query.grafana {
                let words = line.split(separator: " ").map(String.init)
                let place = "queries/\(query.name).sql: grafana: \(line)"
                guard words.count == 2 || (words.count == 3 && Int(words[2]) != nil) else {
                    throw CatalogError("\(place): 'DASHBOARD PANELTYPE [ORDER]' or 'variable NAME'")
                }
                if words[0] == "variable" {
                    let sql = try GrafanaPlaceholders.grafanaSQL(of: query)
                    guard sql.variables.isEmpty else { throw CatalogError("\(place): a variable's query may use no other variable") }
                    // The plugin takes a variable query's second column as the option's text:
                    // only the named column is kept.
                    variableQueries[words[1]] = "SELECT \(words[1]) FROM (\n\(sql.sql)\n)"
                    continue
                }
                guard dashboards.contains(where: { $0.name == words[0] }) else { throw CatalogError("\(place): no dashboard \(words[0])") }
                guard panelTypes.contains(words[1]) else { throw CatalogError("\(place): panel type is one of \(panelTypes.sorted())") }
                panels[words[0], default: []].append((query, words[1], words.count == 3 ? Int(words[2])! : 100))
            }
        }
        var files: [String: String] = [:]
        for dashboard in dashboards {
            let json = try self.dashboard(dashboard, panels: panels[dashboard.name] ?? [], variableQueries: variableQueries)
            files["\(dashboard.name).json"] = json
        }
        return files
    }

    static var datasource: [String: Any] { ["type": datasourceType, "uid": datasourceUID] }

    static func dashboard(
        _ dashboard: (name: String, title: String), panels: [(query: CatalogQuery, type: String, order: Int)], variableQueries: [String: String]
    ) throws(CatalogError) -> String {
        var variables = standardVariables
        var panelObjects: [[String: Any]] = []
        var layout = GridLayout()
        let ordered = panels.sorted { ($0.type == "table" ? 1 : 0, $0.order, $0.query.name) < ($1.type == "table" ? 1 : 0, $1.order, $1.query.name) }
        for (index, (query, type, _)) in ordered.enumerated() {
            let sql = try GrafanaPlaceholders.grafanaSQL(of: query)
            for variable in sql.variables where !variables.contains(where: { $0.name == variable.name }) { variables.append(variable) }
            let target: [String: Any] = [
                "refId": "A", "datasource": datasource, "editorType": "sql", "rawSql": sql.sql,
                // sqlutil's formats: 0 time series (long rows pivoted to one series per
                // label), 1 table.
                "format": type == "table" ? 1 : 0, "queryType": type == "table" ? "table" : "timeseries",
                "meta": ["catalogQuery": query.name],
            ]
            let options: [String: Any] =
                type == "table" ? ["showHeader": true, "cellHeight": "sm"] : ["legend": ["displayMode": "list", "placement": "bottom", "showLegend": true]]
            let panel: [String: Any] = [
                "id": index + 1, "type": type, "title": query.title, "description": query.shows, "datasource": datasource,
                "gridPos": layout.place(fullWidth: type == "table"),
                "targets": [target], "fieldConfig": ["defaults": [:] as [String: Any], "overrides": [] as [Any]], "options": options,
            ]
            panelObjects.append(panel)
        }
        let object: [String: Any] = [
            "uid": "infrasight-\(dashboard.name)", "title": "InfraSight: \(dashboard.title)", "tags": ["infrasight"],
            "schemaVersion": 39, "version": 1, "editable": true, "graphTooltip": 1, "timezone": "browser",
            "time": ["from": "now-1h", "to": "now"], "refresh": "1m",
            "annotations": ["list": [] as [Any]],
            "links": [["type": "dashboards", "tags": ["infrasight"], "asDropdown": false, "includeVars": true, "keepTime": true, "title": "InfraSight"]],
            "templating": ["list": try variables.map { v throws(CatalogError) in try variable(v, variableQueries: variableQueries) }],
            "panels": panelObjects,
        ]
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        } catch {
            throw CatalogError("dashboard \(dashboard.name): \(error)")
        }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static func variable(_ variable: GrafanaPlaceholders.Variable, variableQueries: [String: String]) throws(CatalogError) -> [String: Any] {
        let label = variable.name.replacingOccurrences(of: "_", with: " ").capitalized
        switch variable {
        case .query(let name, let catalogQuery):
            guard let sql = variableQueries[name] else { throw CatalogError("variable \(name): no query says '-- grafana: variable \(name)' (expected \(catalogQuery))") }
            return [
                "type": "query", "name": name, "label": label, "datasource": datasource, "query": sql, "definition": sql,
                // Refreshed when the time range changes, since the query is over it.
                "refresh": 2, "sort": 1, "multi": false, "includeAll": true,
                // Percent-encoded by Grafana like any value; the panels' SQL reads it as ''
                // (every node).
                "allValue": GrafanaPlaceholders.allValue,
                "current": ["text": "All", "value": "$__all"], "options": [] as [Any], "hide": 0,
            ]
        case .textbox(let name):
            return ["type": "textbox", "name": name, "label": label, "query": "", "current": ["text": "", "value": ""], "options": [] as [Any], "hide": 0]
        case .list(let name, let values):
            return [
                "type": "custom", "name": name, "label": label, "query": values.joined(separator: ","), "multi": true, "includeAll": false,
                "current": ["text": values, "value": values],
                "options": values.map { ["text": $0, "value": $0, "selected": true] as [String: Any] }, "hide": 0,
            ]
        }
    }
}

/// Panels placed on Grafana's 24-column grid, row by row.
struct GridLayout {
    var x = 0, y = 0, rowHeight = 0

    mutating func place(fullWidth: Bool) -> [String: Int] {
        let (w, h) = fullWidth ? (24, 10) : (12, 8)
        if x + w > 24 {
            x = 0
            y += rowHeight
            rowHeight = 0
        }
        defer {
            x += w
            rowHeight = max(rowHeight, h)
        }
        return ["x": x, "y": y, "w": w, "h": h]
    }
}
