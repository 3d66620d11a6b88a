import Foundation

/// A panel's SQL as Grafana and the official ClickHouse plugin turn it into the statement
/// ClickHouse runs, following their code:
///
/// 1. Grafana (in the browser, grafana/scenes `sceneInterpolator` and `formatRegistry.ts`)
///    replaces `$name`, `${name}`, `${name:format}` and `[[name]]` of the dashboard's
///    variables and leaves unknown names as they are. `sqlstring`: each value in single
///    quotes, `'` doubled and `"` as `\"`, values joined by commas. `percentencode`:
///    `encodeURIComponent` plus `!'()*` as %XX (`encodeURIComponentStrict`); a list is
///    `{a,b}`, encoded as a whole. A custom All value is inserted raw
///    (`CustomAllValue.formatter`), whatever the format except text, queryparam and
///    percentencode, which percent-encodes it like any value (what the formatter returns is
///    interpolated once more; a percent-encoded value has no `$` to find).
/// 2. The plugin's backend (pkg/macros/macros.go, grafana/clickhouse-datasource) expands
///    `$__name` macros: `$__fromTime_ms` → `fromUnixTimestamp64Milli(<from ms>)`,
///    `$__toTime_ms` → `fromUnixTimestamp64Milli(<to ms>)`, `$__fromTime` →
///    `toDateTime(<from s>)`, `$__toTime` → `toDateTime(<to s>)`, `$__interval_s` → the
///    interval in whole seconds, at least 1; `$__timeFilter(col)` → `col >=
///    toDateTime(<from s>) AND col <= toDateTime(<to s>)`. Unknown macros stay.
struct GrafanaExpansion {
    enum Value {
        case text(String)
        case list([String])
        /// The variable's custom All value, inserted raw.
        case all(String)
    }

    var variables: [String: Value]
    var fromMs: Int64
    var toMs: Int64
    var intervalSeconds: Double

    func expand(_ sql: String) -> String { macros(variablesReplaced(sql)) }

    func variablesReplaced(_ sql: String) -> String {
        // Grafana's variable regex (the same alternatives, in the same order).
        let pattern = #"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"#
        let regex = try! NSRegularExpression(pattern: pattern)
        let text = sql as NSString
        var out = ""
        var last = 0
        for match in regex.matches(in: sql, range: NSRange(location: 0, length: text.length)) {
            func group(_ i: Int) -> String? {
                let r = match.range(at: i)
                return r.location == NSNotFound ? nil : text.substring(with: r)
            }
            let name = group(1) ?? group(2) ?? group(4)!
            let format = group(3) ?? group(6)
            out += text.substring(with: NSRange(location: last, length: match.range.location - last))
            last = match.range.location + match.range.length
            guard let value = variables[name] else {
                out += text.substring(with: match.range)
                continue
            }
            out += formatted(value, format)
        }
        return out + text.substring(from: last)
    }

    func formatted(_ value: Value, _ format: String?) -> String {
        switch (value, format) {
        case (.all(let raw), "percentencode"): return percentEncoded(raw)
        case (.all(let raw), _): return raw
        case (.text(let s), "sqlstring"): return sqlString(s)
        case (.list(let values), "sqlstring"): return values.map(sqlString).joined(separator: ",")
        case (.text(let s), "percentencode"): return percentEncoded(s)
        case (.list(let values), "percentencode"): return percentEncoded("{" + values.joined(separator: ",") + "}")
        case (.text(let s), _): return s
        // The plugin's own default format for an array: quoted, joined, not escaped.
        case (.list(let values), _): return "'" + values.joined(separator: "','") + "'"
        }
    }

    func sqlString(_ s: String) -> String {
        "'" + s.replacingOccurrences(of: "'", with: "''").replacingOccurrences(of: "\"", with: "\\\"") + "'"
    }

    /// JavaScript's encodeURIComponent (unreserved: A-Z a-z 0-9 - _ . ! ~ * ' ( )), then
    /// Grafana's `!'()*` → %XX.
    func percentEncoded(_ s: String) -> String {
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~".utf8)
        return s.utf8.map { unreserved.contains($0) ? String(UnicodeScalar($0)) : String(format: "%%%02X", $0) }.joined()
    }

    func macros(_ sql: String) -> String {
        let fromS = fromMs / 1000, toS = toMs / 1000
        let interval = Int(max(intervalSeconds, 1))
        let simple: [String: String] = [
            "fromTime_ms": "fromUnixTimestamp64Milli(\(fromMs))", "toTime_ms": "fromUnixTimestamp64Milli(\(toMs))",
            "fromTime": "toDateTime(\(fromS))", "toTime": "toDateTime(\(toS))", "interval_s": "\(interval)",
        ]
        let regex = try! NSRegularExpression(pattern: #"\$__(\w+)(\(([^()]*)\))?"#)
        let text = sql as NSString
        var out = ""
        var last = 0
        for match in regex.matches(in: sql, range: NSRange(location: 0, length: text.length)) {
            let name = text.substring(with: match.range(at: 1))
            let argument = match.range(at: 3).location == NSNotFound ? nil : text.substring(with: match.range(at: 3)).trimmingCharacters(in: .whitespaces)
            out += text.substring(with: NSRange(location: last, length: match.range.location - last))
            last = match.range.location + match.range.length
            if let argument, name == "timeFilter" {
                out += "\(argument) >= toDateTime(\(fromS)) AND \(argument) <= toDateTime(\(toS))"
            } else if let expansion = simple[name] {
                out += expansion + (argument.map { "(\($0))" } ?? "")
            } else {
                out += text.substring(with: match.range)
            }
        }
        return out + text.substring(from: last)
    }
}
