import Foundation
import InfraSightStorage
import Yams

/// What one rules file holds, before expansion: named lists (`$name` becomes an array
/// literal of strings), macros (`$name` becomes the parenthesised expression) and rules.
///
/// ```yaml
/// lists:
///   shell_binaries: [bash, sh, dash]
/// macros:
///   in_container: container_id != ''
/// rules:
///   - name: shell_in_container
///     description: A shell started inside a container.
///     severity: high                  # info, low, medium, high, critical
///     tags: [T1059.004, container]
///     table: tracing_events
///     condition: event_type = 'execve' AND $in_container AND comm IN $shell_binaries
///     output: shell %comm in %container_image by %user (%argv)
///     enabled: true                   # optional
/// ```
public struct RuleFile: Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let description: String
        public let severity: Severity
        public let tags: [String]
        public let table: String
        public let condition: String
        public let output: String
        public let enabled: Bool
        public let place: String
    }

    public let path: String
    public var lists: [String: [String]] = [:]
    public var macros: [String: String] = [:]
    public var entries: [Entry] = []
    /// Rules of this file that cannot be used (the others still can).
    public var problems: [RuleProblem] = []

    /// Parses `text`; a file that is not a mapping of lists, macros and rules throws, a
    /// bad rule is a problem of its own and the rest of the file still loads.
    public init(path: String, text: String) throws(RuleProblem) {
        self.path = path
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            let message = "\(error)".split(separator: "\n").first.map(String.init) ?? "invalid YAML"
            throw RuleProblem(path, "not YAML: \(message)")
        }
        guard let root else { return }
        guard case .mapping(let top) = root else { throw RuleProblem(path, "a rules file is a mapping of lists, macros and rules") }
        for (key, value) in top {
            switch key.string ?? "" {
            case "lists":
                guard case .mapping(let lists) = value else { throw RuleProblem(place(value), "lists must be a mapping of names to lists of strings") }
                for (name, items) in lists {
                    let n = name.string ?? ""
                    guard ReadOnlyQuery.isParameterName(n) else { throw RuleProblem(place(name), "'\(n)' is not a list name (letters, digits, _)") }
                    guard case .sequence(let seq) = items, seq.allSatisfy({ $0.scalar != nil }) else {
                        throw RuleProblem(place(items), "list \(n) must be a list of strings")
                    }
                    self.lists[n] = seq.compactMap { $0.string }
                }
            case "macros":
                guard case .mapping(let macros) = value else { throw RuleProblem(place(value), "macros must be a mapping of names to expressions") }
                for (name, body) in macros {
                    let n = name.string ?? ""
                    guard ReadOnlyQuery.isParameterName(n) else { throw RuleProblem(place(name), "'\(n)' is not a macro name (letters, digits, _)") }
                    guard let expression = body.string, !expression.isEmpty else { throw RuleProblem(place(body), "macro \(n) must be an expression") }
                    self.macros[n] = expression
                }
            case "rules":
                guard case .sequence(let rules) = value else { throw RuleProblem(place(value), "rules must be a list") }
                for node in rules {
                    do {
                        entries.append(try Self.entry(node, place: place(node)))
                    } catch {
                        problems.append(error)
                    }
                }
            default:
                throw RuleProblem(place(key), "unknown key \(key.string ?? "?") (lists, macros, rules)")
            }
        }
    }

    func place(_ node: Node) -> String { "\(path):\(node.mark?.line ?? 0)" }

    static let ruleKeys: Set<String> = ["name", "description", "severity", "tags", "table", "condition", "output", "enabled"]

    static func entry(_ node: Node, place: String) throws(RuleProblem) -> Entry {
        guard case .mapping(let m) = node else { throw RuleProblem(place, "a rule is a mapping (name, description, severity, tags, table, condition, output)") }
        var fields: [String: Node] = [:]
        for (k, v) in m {
            let key = k.string ?? ""
            guard ruleKeys.contains(key) else { throw RuleProblem(place, "unknown key \(key) (\(ruleKeys.sorted().joined(separator: ", ")))") }
            fields[key] = v
        }
        func text(_ key: String) throws(RuleProblem) -> String {
            guard let value = fields[key]?.string, !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw RuleProblem(place, "\(key) is missing")
            }
            return value.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let name = try text("name")
        guard ReadOnlyQuery.isParameterName(name) else { throw RuleProblem(place, "rule name '\(name)' must be letters, digits and _") }
        let where_ = "\(place) (\(name))"
        let severityText = try text("severity")
        guard let severity = Severity(rawValue: severityText.lowercased()) else {
            throw RuleProblem(where_, "severity must be one of \(Severity.allCases.map(\.rawValue).joined(separator: ", ")) (got \(severityText))")
        }
        var tags: [String] = []
        if let t = fields["tags"] {
            guard case .sequence(let seq) = t else { throw RuleProblem(where_, "tags must be a list of strings") }
            tags = seq.compactMap { $0.string }
        }
        var table = try text("table")
        if table.hasPrefix("audit.") { table = String(table.dropFirst("audit.".count)) }
        guard ReadOnlyQuery.isParameterName(table) else { throw RuleProblem(where_, "table '\(table)' is not a table name") }
        var enabled = true
        if let e = fields["enabled"] {
            guard let b = e.bool else { throw RuleProblem(where_, "enabled must be true or false") }
            enabled = b
        }
        return Entry(name: name, description: try text("description"), severity: severity, tags: tags, table: table,
                     condition: try text("condition"), output: try text("output"), enabled: enabled, place: where_)
    }
}
