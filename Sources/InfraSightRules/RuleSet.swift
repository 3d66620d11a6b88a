import Foundation
import InfraSightCore
import InfraSightSchema
import InfraSightStorage

/// The rules in force: the default ruleset built into the binary (`rules/*.yaml` of this
/// module) unless turned off, then each configured file, then the `*.yaml` files of each
/// configured directory in name order. The default ruleset's lists and macros are there
/// even when its rules are off (`rules.default: false`, `--no-default-rules`), so a file
/// `rules check` accepts loads the same either way.
///
/// Lists and macros are shared by all files; a later definition replaces an earlier one
/// (a site file can redefine the default `sensitive_files`). A rule named like an earlier
/// one replaces it (a site file can replace a default rule); `disabled` names rules that
/// are not evaluated. A file or rule that cannot be used is a `problem` naming the file,
/// the line and the reason; every other rule still runs.
public struct RuleSet: Sendable {
    public let rules: [Rule]
    public let problems: [RuleProblem]
    /// The lists and macros in force (for `rules list`).
    public let expansion: RuleExpansion

    /// Checks a condition against a table and returns its ClickHouse type (or throws the
    /// engine's error): the evaluator's engine, so a rule means what it means in a query.
    public typealias TypeChecker = (_ condition: String, _ table: TableSchema) throws(StorageError) -> String

    public static let builtInFiles: [(path: String, text: String)] = EmbeddedAssets.files
        .filter { $0.key.hasPrefix("rules/") && $0.key.hasSuffix(".yaml") }
        .sorted { $0.key < $1.key }
        .map { ("(built in) " + $0.key, $0.value) }

    /// Reads the configured files (owner and mode checked as for the config file: rules are
    /// SQL the program runs) and builds the set against `tables` (by name without database).
    public static func load(_ config: RulesConfig, tables: [String: TableSchema], check: TypeChecker) -> RuleSet {
        var sources: [(path: String, text: String)] = builtInFiles
        var problems: [RuleProblem] = []
        var paths = config.files
        for dir in config.dirs {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                // The default directory need not exist; a configured one must.
                if dir != RulesConfig.defaultDir { problems.append(RuleProblem(dir, "cannot read the directory")) }
                continue
            }
            paths += names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { "\(dir)/\($0)" }
        }
        for path in paths {
            do {
                let trusted = try TrustedFile.open(path, finalLink: .follow)
                defer { close(trusted.fd) }
                guard let text = String(data: try trusted.contents(), encoding: .utf8) else {
                    problems.append(RuleProblem(path, "the file is not UTF-8"))
                    continue
                }
                sources.append((path, text))
            } catch {
                problems.append(RuleProblem(path, error.reason))
            }
        }
        return build(sources, disabled: Set(config.disabled), tables: tables, check: check, problems: problems,
                     listsAndMacrosOnly: config.defaultRules ? [] : Set(builtInFiles.map(\.path)))
    }

    /// The set from file texts (tests and `rules check` use it directly). Of the files in
    /// `listsAndMacrosOnly` (by path) only the lists and macros are used.
    public static func build(_ sources: [(path: String, text: String)], disabled: Set<String> = [], tables: [String: TableSchema],
                             check: TypeChecker, problems initial: [RuleProblem] = [], listsAndMacrosOnly: Set<String> = []) -> RuleSet {
        var problems = initial
        var lists: [String: [String]] = [:], macros: [String: String] = [:]
        var entries: [RuleFile.Entry] = []
        for source in sources {
            do {
                let file = try RuleFile(path: source.path, text: source.text)
                lists.merge(file.lists) { _, new in new }
                macros.merge(file.macros) { _, new in new }
                if listsAndMacrosOnly.contains(source.path) { continue }
                for entry in file.entries {
                    entries.removeAll { $0.name == entry.name }
                    entries.append(entry)
                }
                problems += file.problems
            } catch {
                problems.append(error)
            }
        }
        let expansion = RuleExpansion(lists: lists, macros: macros)
        var rules: [Rule] = []
        for entry in entries where entry.enabled && !disabled.contains(entry.name) {
            do {
                rules.append(try compile(entry, expansion: expansion, tables: tables, check: check))
            } catch {
                problems.append(error)
            }
        }
        return RuleSet(rules: rules, problems: problems, expansion: expansion)
    }

    static func compile(_ entry: RuleFile.Entry, expansion: RuleExpansion, tables: [String: TableSchema], check: TypeChecker) throws(RuleProblem) -> Rule {
        guard let table = tables[entry.table] else {
            throw RuleProblem(entry.place, "unknown table \(entry.table) (known: \(tables.keys.sorted().joined(separator: ", ")))")
        }
        let condition: String
        do {
            condition = try expansion.expand(entry.condition)
        } catch {
            throw RuleProblem(entry.place, "condition: \(error.reason)")
        }
        for name in OutputTemplate.columns(entry.output) where table.index(of: name) == nil {
            throw RuleProblem(entry.place, "output names %\(name), which is not a column of \(entry.table)")
        }
        let type: String
        do {
            type = try check(condition, table)
        } catch {
            throw RuleProblem(entry.place, "condition: \(Self.engineMessage(error.description))")
        }
        guard Self.booleanTypes.contains(type) else {
            throw RuleProblem(entry.place, "condition is \(type), not a boolean (a comparison, IN, LIKE, a function returning Bool or UInt8)")
        }
        return Rule(name: entry.name, description: entry.description, severity: entry.severity, tags: entry.tags, table: entry.table,
                    written: entry.condition, condition: condition, output: entry.output, place: entry.place)
    }

    static let booleanTypes: Set<String> = ["Bool", "UInt8", "Nullable(Bool)", "Nullable(UInt8)"]

    /// ClickHouse's message without its code and the scope it quotes (the probe query).
    static func engineMessage(_ text: String) -> String {
        var message = text
        if let range = message.range(of: "DB::Exception: ") { message = String(message[range.upperBound...]) }
        if let range = message.range(of: " In scope ") { message = String(message[..<range.lowerBound]) }
        if let range = message.range(of: ". (") { message = String(message[..<range.lowerBound]) }
        return message
    }

    /// Rules by table.
    public var byTable: [String: [Rule]] { Dictionary(grouping: rules, by: \.table) }
}
