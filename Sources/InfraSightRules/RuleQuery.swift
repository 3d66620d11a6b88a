import Foundation
import InfraSightStorage
import InfraSightSchema

/// The SQL the rules run, built from checked parts: column names of the table (checked
/// identifiers, backquoted), the rules' expanded conditions and compiled output templates,
/// and literals (`sqlStringLiteral`).
enum RuleQuery {
    /// An alerts column from a row of `table`: the expression, or a default when the table
    /// lacks the column (resource_events has no node_name).
    static func column(_ name: String, in table: TableSchema, default value: String) -> String {
        table.index(of: name) == nil ? value : "`\(name)`"
    }

    /// The key columns every alert carries, as expressions over the source row.
    static func keys(_ table: TableSchema) -> [(alias: String, expression: String)] {
        [
            ("time", column("wall_time_dt", in: table, default: "now64(3)")),
            ("node_name", column("node_name", in: table, default: "''")),
            ("pid", column("pid", in: table, default: "0")),
            ("start_time_ns", column("start_time_ns", in: table, default: "0")),
            ("comm", column("comm", in: table, default: "''")),
            ("user", column("user", in: table, default: "''")),
            ("container_id", column("container_id", in: table, default: "''")),
            ("container_image", column("container_image", in: table, default: "''")),
        ]
    }

    /// One row per (row of `source`, rule it matches), in the columns of `alerts` (as the
    /// store holds them: each value is cast to the held type).
    static func evaluation(rules: [Rule], table: TableSchema, source: String, alerts: TableSchema) -> String {
        let tests = rules.map { (rule: Rule) -> String in "(ifNull(toUInt8((\(rule.condition))), 0) != 0)" }
        let matches = tests.joined(separator: ",\n        ")
        /// The `__k`-th element of one value per rule.
        func pick(_ value: (Rule) -> String) -> String { "[" + rules.map(value).joined(separator: ", ") + "][__k]" }
        let tags = pick { (rule: Rule) -> String in sqlStringLiteral(rule.tags.joined(separator: ",")) }
        let row = "formatRowNoNewline('JSONEachRow', " + table.columns.map { (c: Column) -> String in "`\(c.name)`" }.joined(separator: ", ") + ")"
        var inner: [(String, String)] = keys(table).map { ($0.alias, $0.expression) }
        inner.append(("rule", pick { sqlStringLiteral($0.name) }))
        inner.append(("severity", pick { sqlStringLiteral($0.severity.rawValue) }))
        inner.append(("tags", tags))
        inner.append(("source_table", sqlStringLiteral(table.name)))
        inner.append(("output", pick { OutputTemplate.sql($0.output) }))
        inner.append(("row_json", row))
        // Inner names are prefixed so no alias shadows a column of the source row.
        let innerList = inner.map { "\($0.1) AS `__\($0.0)`" }.joined(separator: ",\n    ")
        let outerList = alerts.columns.map { column in
            inner.contains { $0.0 == column.name } ? "CAST(`__\(column.name)` AS \(column.type.description)) AS `\(column.name)`" : "defaultValueOfTypeName(\(sqlStringLiteral(column.type.description))) AS `\(column.name)`"
        }.joined(separator: ", ")
        // The WHERE keeps only rows some rule matches before anything else is computed
        // for them (the row's JSON above all): most rows match nothing.
        let any = tests.joined(separator: "\n        OR ")
        return """
            SELECT \(outerList) FROM (
                SELECT arrayJoin(arrayFilter((i, m) -> m, range(1, \(rules.count + 1)), [
                    \(matches)])) AS __k,
                \(innerList)
                FROM \(source)
                WHERE \(any)
            )
            """
    }

    /// A backtest: what `rule` would have raised on `table`'s stored rows since
    /// `fromMs` (Unix milliseconds), oldest first, at most `limit`.
    static func backtest(_ rule: Rule, table: TableSchema, fromMs: Int64, limit: Int) -> String {
        let keys = keys(table).map { "\($0.expression) AS `\($0.alias)`" }.joined(separator: ", ")
        let since = table.index(of: "wall_time_ms") == nil ? "1" : "`wall_time_ms` >= \(fromMs)"
        return """
            SELECT \(keys), \(sqlStringLiteral(rule.name)) AS rule, \(sqlStringLiteral(rule.severity.rawValue)) AS severity, \(OutputTemplate.sql(rule.output)) AS output
            FROM \(table.quotedName)
            WHERE \(since) AND (ifNull(toUInt8((\(rule.condition))), 0) != 0)
            ORDER BY \(table.index(of: "wall_time_ms") == nil ? "tuple()" : "`wall_time_ms`")
            LIMIT \(limit)
            """
    }
}

/// Backtests, for the command line.
public enum Backtest {
    /// What `rule` would have raised on `table`'s rows since `fromMs` (Unix ms), oldest first.
    public static func sql(_ rule: Rule, table: TableSchema, fromMs: Int64, limit: Int) -> String {
        RuleQuery.backtest(rule, table: table, fromMs: fromMs, limit: limit)
    }
}
