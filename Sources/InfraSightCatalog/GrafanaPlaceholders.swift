import Foundation

/// How each catalog parameter is written in a Grafana panel's SQL, for the official
/// ClickHouse plugin (grafana-clickhouse-datasource) and Grafana's variable formats.
///
/// Order of expansion in Grafana: the dashboard substitutes its variables first (in the
/// browser, `${name:format}`), then the plugin's backend expands its `$__` macros. So the
/// text here must survive both: macros are whole words Grafana does not know as variables.
///
/// Every dashboard variable reaches ClickHouse the same way: Grafana's `percentencode`
/// format (`encodeURIComponent` plus `!'()*` as %XX) inside a string literal that
/// `decodeURLComponent` decodes. A percent-encoded value is letters, digits and `-_.~%`
/// only, so whatever a variable holds (a URL `?var-node=...` sets any value) it cannot end
/// the literal, start a comment or a heredoc, or hold a `$` the plugin would read as a
/// macro. Not `sqlstring`: it doubles `'` but leaves `\`, which a ClickHouse literal reads
/// as an escape (`\' = ' OR 1=1) -- ` as a node name widened every filter). Not
/// `queryparam`: Grafana leaves `@:$,;` in it unencoded.
///
/// - `{from:DateTime64(3)}`, `{to:DateTime64(3)}` → `$__fromTime_ms`, `$__toTime_ms`,
///   which the plugin expands to `fromUnixTimestamp64Milli(<ms>)` (a DateTime64(3), the
///   same type the placeholder had).
/// - `{interval_s:UInt32}` → `$__interval_s`: the panel's interval in whole seconds, at
///   least 1.
/// - `{node:String}` → `ifNull(nullIf(decodeURLComponent('${node:percentencode}'), '*'), '')`:
///   a query variable whose custom All value is `*` (Grafana percent-encodes a custom All
///   value under this format, `%2A`), which the SQL turns into '', every node. (A node
///   name cannot be `*`; a URL that sets `*` asks for All, which anyone may pick.)
/// - other `String` parameters (container, user, comm, search, severity) →
///   `decodeURLComponent('${name:percentencode}')`: a text box; empty means all.
/// - numbers (pid, start_time_ns) → `toUInt32OrZero(decodeURLComponent('${pid:percentencode}'))`:
///   a text box; empty or not a number is 0, which names no process (an empty box shows
///   no rows instead of a parse error).
/// - `Array(String)` (prefixes) → `extractAll(replaceRegexpOne(decodeURLComponent(
///   '${prefixes:percentencode}'), '(?s)^\\{(.*)\\}$', '\\1'), '[^,]+')`: a multi-value custom
///   variable holding the defaults, all selected. Grafana percent-encodes a list as
///   `{a,b}` (one value without braces when it is not a list), so the SQL takes off the
///   braces and splits at commas: a value holds no comma, and empty values are dropped.
/// - `limit` → its default, as a literal.
public enum GrafanaPlaceholders {
    /// The custom All value of a query variable (node): what Grafana sends when All is
    /// picked, percent-encoded like any value; the SQL reads it as ''.
    public static let allValue = "*"

    /// The variable's value as ClickHouse decodes it: percent-encoded by Grafana, in a
    /// string literal.
    static func decoded(_ name: String) -> String { "decodeURLComponent('${\(name):percentencode}')" }

    /// What a parameter becomes on a dashboard: the text that replaces its placeholder, and
    /// the dashboard variable it needs (nil: a macro or a literal).
    public struct Form: Sendable, Equatable {
        public let sql: String
        public let variable: Variable?
    }

    /// A dashboard variable a panel's SQL refers to.
    public enum Variable: Sendable, Equatable, Hashable {
        /// A drop-down filled by a catalog query, with All = `GrafanaPlaceholders.allValue`.
        case query(name: String, catalogQuery: String)
        /// A free text box, empty by default.
        case textbox(name: String)
        /// A multi-value list of fixed values, all selected by default.
        case list(name: String, values: [String])

        public var name: String {
            switch self {
            case .query(let name, _), .textbox(let name), .list(let name, _): name
            }
        }
    }

    /// The form of `parameter`; throws when the catalog has a parameter Grafana has no
    /// form for (a new kind needs a line here, not a silent paste).
    public static func form(of parameter: CatalogQuery.Parameter, in query: String) throws(CatalogError) -> Form {
        let place = "queries/\(query).sql: {\(parameter.name):\(parameter.type)}"
        switch (parameter.name, parameter.type) {
        case ("from", "DateTime64(3)"): return Form(sql: "$__fromTime_ms", variable: nil)
        case ("to", "DateTime64(3)"): return Form(sql: "$__toTime_ms", variable: nil)
        case ("interval_s", "UInt32"): return Form(sql: "$__interval_s", variable: nil)
        case ("limit", _):
            guard let value = parameter.defaultValue, !value.isEmpty, value.allSatisfy(\.isNumber) else {
                throw CatalogError("\(place): a limit needs a numeric default for the dashboards")
            }
            return Form(sql: value, variable: nil)
        case ("node", "String"):
            return Form(sql: "ifNull(nullIf(\(decoded("node")), '\(allValue)'), '')", variable: .query(name: "node", catalogQuery: "nodes"))
        case (let name, "String"):
            return Form(sql: decoded(name), variable: .textbox(name: name))
        case (let name, "UInt8"), (let name, "UInt16"), (let name, "UInt32"), (let name, "UInt64"):
            return Form(sql: "to\(parameter.type)OrZero(\(decoded(name)))", variable: .textbox(name: name))
        case (let name, "Array(String)"):
            let values = try listValues(parameter.defaultValue ?? "", at: place)
            return Form(sql: #"extractAll(replaceRegexpOne(\#(decoded(name)), '(?s)^\\{(.*)\\}$', '\\1'), '[^,]+')"#, variable: .list(name: name, values: values))
        default:
            throw CatalogError("\(place): no Grafana form for this parameter (see GrafanaPlaceholders)")
        }
    }

    /// The query's SQL with every placeholder replaced by its Grafana form, and the
    /// variables it refers to, in order of first use. Nothing else in the SQL changes.
    public static func grafanaSQL(of query: CatalogQuery) throws(CatalogError) -> (sql: String, variables: [Variable]) {
        var forms: [String: Form] = [:]
        for parameter in query.parameters { forms[parameter.name] = try form(of: parameter, in: query.name) }
        var sql = ""
        var variables: [Variable] = []
        var rest = query.sql.startIndex
        for placeholder in query.placeholders {
            // QueryCatalog.parse has checked that every placeholder is declared.
            let form = forms[placeholder.name]!
            sql += query.sql[rest..<placeholder.range.lowerBound] + form.sql
            rest = placeholder.range.upperBound
            if let variable = form.variable, !variables.contains(variable) { variables.append(variable) }
        }
        sql += query.sql[rest...]
        return (sql, variables)
    }

    /// `['a', 'b']` → ["a", "b"]. A custom variable's values are separated by commas, so a
    /// value may hold neither a comma nor a quote; nor be empty, which the panels' SQL drops.
    static func listValues(_ text: String, at place: String) throws(CatalogError) -> [String] {
        let inner = text.trimmingCharacters(in: .whitespaces)
        guard inner.hasPrefix("["), inner.hasSuffix("]") else { throw CatalogError("\(place): the default must be a list ['a', 'b']") }
        let items = inner.dropFirst().dropLast().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return try items.map { item throws(CatalogError) in
            guard item.count >= 2, item.hasPrefix("'"), item.hasSuffix("'") else { throw CatalogError("\(place): '\(item)' is not a quoted string") }
            let value = String(item.dropFirst().dropLast())
            guard !value.contains("'"), !value.contains("\\") else { throw CatalogError("\(place): \(value) holds a quote or a backslash") }
            guard !value.isEmpty else { throw CatalogError("\(place): an empty value") }
            return value
        }
    }
}
