import ArgumentParser
import Foundation
import InfraSightCatalog
import InfraSightCore
import InfraSightRules
import InfraSightSchema
import InfraSightStorage

/// `infrasight rules`: the detection rules in force, checked, backtested on stored
/// history, and drift detection's learned baselines.
struct RulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "List, check and backtest detection rules; show drift baselines.",
        subcommands: [List.self, Check.self, Test.self, Baseline.self])

    /// An engine to check rules with: the store's own when `store` is embedded, else a
    /// scratch engine of this process (removed afterwards).
    static func evaluator(for store: EventStore?, config: InfraSightConfig) throws -> RuleEvaluator {
        do {
            if let store { return try RuleEvaluator(store: store, scratch: rulesScratch(store), library: config.storage.chdbLibrary) }
            let scratch = NSTemporaryDirectory() + "/infrasight-rules-\(getpid())"
            return try RuleEvaluator(store: NoStore(), scratch: scratch, library: config.storage.chdbLibrary)
        } catch {
            throw failure("rules are checked with embedded ClickHouse, which cannot start: \(error)")
        }
    }

    /// Stands for "no store": the evaluator then opens an engine of its own.
    final class NoStore: EventStore, Sendable {
        var summary: String { "none" }
        func prepare(_ tables: [TableSchema]) throws(StorageError) -> [TableSchema] { tables }
        func insert(_ batch: Batch) throws(StorageError) { throw StorageError("no store") }
        func query(_ sql: String, format: String) throws(StorageError) -> Data { throw StorageError("no store") }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The rules in force (default ruleset, rules.files, rules.d) and any that cannot be used.")
        @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE")) var config: String?
        @Flag(help: "A JSON array: name, severity, table, tags, description, condition (expanded), output, place.") var json = false

        func run() throws {
            let config = try loadConfig(self.config)
            let evaluator = try RulesCommand.evaluator(for: nil, config: config)
            defer { evaluator.close() }
            let set = RuleSet.load(config.rules, tables: ruleTables(RulesCommand.NoStore(), extra: []), check: evaluator.type)
            if json {
                let items: [[String: Any]] = set.rules.map {
                    ["name": $0.name, "severity": $0.severity.rawValue, "table": $0.table, "tags": $0.tags, "description": $0.description,
                     "condition": $0.condition, "output": $0.output, "place": $0.place]
                }
                print(String(decoding: try JSONSerialization.data(withJSONObject: items, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
            } else {
                let width = set.rules.map(\.name.count).max() ?? 0
                for r in set.rules {
                    print("\(r.name.padding(toLength: width + 2, withPad: " ", startingAt: 0))\(r.severity.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0))\(r.table.padding(toLength: 17, withPad: " ", startingAt: 0))\(r.tags.joined(separator: ","))")
                }
            }
            for problem in set.problems { printError("rules: \(problem)") }
            if !set.problems.isEmpty { throw ExitCode(1) }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check rules files: every rule parses, names a known table and columns, and its condition is a boolean.",
            discussion: "The files may use the default ruleset's lists and macros. Exit 0 when every rule can be used.")
        @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE")) var config: String?
        @Argument(help: "Rules files.") var files: [String]

        func run() throws {
            let config = try loadConfig(self.config)
            let evaluator = try RulesCommand.evaluator(for: nil, config: config)
            defer { evaluator.close() }
            var checked = RulesConfig()
            checked.files = files
            checked.dirs = []
            // The default ruleset's lists and macros are there; its rules are not counted.
            let defaults = RuleSet.load(RulesConfig(), tables: ruleTables(RulesCommand.NoStore(), extra: []), check: evaluator.type)
            let set = RuleSet.load(checked, tables: ruleTables(RulesCommand.NoStore(), extra: []), check: evaluator.type)
            let mine = set.rules.filter { rule in !defaults.rules.contains { $0.place == rule.place } }
            let problems = set.problems.filter { problem in files.contains { problem.place.hasPrefix($0) } }
            for problem in problems { printError(problem.description) }
            print("\(files.joined(separator: ", ")): \(mine.count) rule\(mine.count == 1 ? "" : "s") usable, \(problems.count) refused")
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Backtest a rule: what it would have raised on stored history (the same condition, run as a query).")
        @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE")) var config: String?
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The rule's name (see `rules list`).") var rule: String
        @Option(help: ArgumentHelp("How far back: 30m, 24h, 7d.", valueName: "DURATION")) var since = "24h"
        @Option(help: "At most this many alerts.") var limit = 1000
        @Option(help: "Any ClickHouse output format.") var format = "TSVWithNames"
        @Option(name: .customLong("rules"), help: ArgumentHelp("A rules file to load besides the configured ones (repeatable).", valueName: "FILE")) var files: [String] = []

        func run() throws {
            let config = try loadConfig(self.config)
            guard let seconds = QueryCatalog.seconds(of: since) else { throw failure("--since \(since): a number with s, m, h or d", code: 64) }
            guard limit > 0 else { throw failure("--limit must be positive", code: 64) }
            var rulesConfig = config.rules
            rulesConfig.files += files
            // A running `run` holds an embedded store: ask it over its query socket.
            let dataDir = storage.resolvedDataDir(config)
            let held = storage.serverURL(config) == nil && FileManager.default.fileExists(atPath: QueryServer.socketPath(dataDir: dataDir))
            let store: EventStore? = held ? nil : try storage.open(config)
            defer { store?.close() }
            let evaluator = try RulesCommand.evaluator(for: held ? nil : store, config: config)
            defer { evaluator.close() }
            let set = RuleSet.load(rulesConfig, tables: ruleTables(store ?? RulesCommand.NoStore(), extra: []), check: evaluator.type)
            guard let found = set.rules.first(where: { $0.name == rule }) else {
                let problem = set.problems.first { $0.place.hasSuffix("(\(rule))") }
                throw failure(problem.map { "rule \(rule) cannot be used: \($0)" } ?? "no rule named \(rule) (see infrasight rules list)")
            }
            let table = ruleTables(store ?? RulesCommand.NoStore(), extra: [])[found.table]!
            let fromMs = Int64((Date().timeIntervalSince1970 - seconds) * 1000)
            let sql = Backtest.sql(found, table: table, fromMs: fromMs, limit: limit)
            let started = Date()
            let output: Data
            do {
                if held, let answer = try QueryServer.ask(dataDir: dataDir, sql: sql, format: format) {
                    output = answer
                } else {
                    output = try (store ?? storage.open(config)).readOnlyQuery(try ReadOnlyQuery(sql, format: format))
                }
            } catch let error as StorageError {
                throw failure(error.description)
            }
            FileHandle.standardOutput.write(output)
            printError(String(format: "%@: backtest over %@ of %@ in %.2f s", rule, since, found.table, Date().timeIntervalSince(started)))
        }
    }

    struct Baseline: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Drift detection's learned baselines.", subcommands: [Show.self])

        struct Show: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "What drift detection learned for an image (or host:NODE): executables, ports, domains, and when.")
            @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE")) var config: String?
            @OptionGroup var storage: StorageOptions
            @Argument(help: "A container image (as in container_image) or host:NODE.") var scope: String

            func run() throws {
                let config = try loadConfig(self.config)
                let output = try storage.readOnly(config) { () throws(StorageError) in try DriftDetector.baselineQuery(scope: scope) }
                guard output.split(separator: 0x0A).count > 1 else { throw failure("no baseline for \(scope) (drift detection has not seen it)") }
                FileHandle.standardOutput.write(output)
            }
        }
    }
}
