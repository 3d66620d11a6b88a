import Foundation

/// How bad an alert is, in increasing order.
public enum Severity: String, CaseIterable, Sendable, Comparable {
    case info, low, medium, high, critical

    public static func < (a: Severity, b: Severity) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One detection rule: a ClickHouse boolean expression over one table's columns, evaluated
/// on every row stored into that table (and over stored history by `rules test`).
public struct Rule: Sendable, Equatable {
    public let name: String
    public let description: String
    public let severity: Severity
    /// MITRE ATT&CK technique ids (T1059.004) and free-form words.
    public let tags: [String]
    /// The table, without its database ("tracing_events"); rules read `audit` tables.
    public let table: String
    /// The condition as written, `$macros` and `$lists` unexpanded.
    public let written: String
    /// The condition with every `$name` expanded: plain ClickHouse SQL.
    public let condition: String
    /// The alert's text: `%column` is replaced by the row's value of that column.
    public let output: String
    /// Where it was read: "rules.d/site.yaml:12".
    public let place: String
}

/// A rule (or a file) that cannot be used, and why: printed as `place: reason`.
public struct RuleProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public let place: String
    public let reason: String
    public init(_ place: String, _ reason: String) {
        self.place = place
        self.reason = reason
    }
    public var description: String { "\(place): \(reason)" }
}
