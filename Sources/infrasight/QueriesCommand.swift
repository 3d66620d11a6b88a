import ArgumentParser
import Foundation
import InfraSightCatalog
import InfraSightCore
import InfraSightStorage

/// `infrasight queries`: the catalog of named queries the console and the Grafana
/// dashboards are made of, listed, shown and run from the command line.
struct QueriesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queries",
        abstract: "List, show and run the catalog's named queries (the console's and the dashboards').",
        subcommands: [List.self, Show.self, Run.self, Grafana.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The catalog: each query's name and title.")
        @Flag(help: "A JSON array: name, title, shows, parameters (name, type, default, about).") var json = false

        func run() throws {
            let queries = QueryCatalog.builtIn.queries
            guard json else {
                let width = queries.map(\.name.count).max() ?? 0
                for q in queries { print(q.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + q.title) }
                return
            }
            print(String(decoding: try JSONSerialization.data(withJSONObject: queries.map(\.jsonObject), options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One query's file: header and SQL.")
        @Argument(help: "The query's name (see `queries list`).") var name: String

        func run() throws {
            guard let q = QueryCatalog.builtIn.query(named: name) else { throw failure("no query named '\(name)' (see infrasight queries list)") }
            print("-- \(q.title)\n-- \(q.shows)")
            for p in q.parameters {
                print("-- {\(p.name):\(p.type)}" + (p.defaultValue.map { " = '\($0)'" } ?? " (required)") + (p.about.isEmpty ? "" : "  \(p.about)"))
            }
            print(q.sql)
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a named query with its parameters bound by ClickHouse (never pasted into the SQL).",
            discussion: "from and to default to the last --since; other parameters to their defaults (`queries show NAME`).")
        @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE")) var config: String?
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The query's name (see `queries list`).") var name: String
        @Option(name: .customLong("param"), help: ArgumentHelp("A parameter's value (repeatable).", valueName: "NAME=VALUE")) var params: [String] = []
        @Option(help: ArgumentHelp("from = now minus this (30s, 15m, 2h, 7d) unless --param from= is given.", valueName: "DURATION")) var since = "1h"
        @Option(help: "Any ClickHouse output format.") var format = "TSVWithNames"

        func run() throws {
            let config = try loadConfig(self.config)
            guard let seconds = QueryCatalog.seconds(of: since) else { throw failure("--since \(since): a number with s, m, h or d", code: 64) }
            var values = QueryCatalog.timeRange(lastSeconds: seconds)
            for p in params {
                guard let equals = p.firstIndex(of: "=") else { throw failure("--param \(p): NAME=VALUE", code: 64) }
                values[String(p[..<equals])] = String(p[p.index(after: equals)...])
            }
            let output = try storage.readOnly(config) { () throws(StorageError) in try QueryCatalog.builtIn.bind(name, values, format: format) }
            FileHandle.standardOutput.write(output)
        }
    }

    struct Grafana: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the Grafana dashboards made from the catalog (deploy/grafana/dashboards holds them, committed).",
            discussion: "One JSON file per dashboard; each catalog query's `-- grafana:` lines say where it goes. See docs/grafana.md.")
        @Option(help: ArgumentHelp("The directory to write <dashboard>.json into (created if missing).", valueName: "DIR")) var out: String

        func run() throws {
            let files: [String: String]
            do {
                files = try GrafanaDashboards.files(from: QueryCatalog.builtIn)
            } catch {
                throw failure(error.description)
            }
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                for (name, text) in files.sorted(by: { $0.key < $1.key }) {
                    // Not atomically: a temporary file is made 0600, and Grafana runs as another user.
                    try Data(text.utf8).write(to: URL(fileURLWithPath: "\(out)/\(name)"))
                }
            } catch {
                throw failure("cannot write the dashboards into \(out): \(error.localizedDescription)")
            }
            print("wrote \(files.count) dashboards to \(out): \(files.keys.sorted().joined(separator: ", "))")
        }
    }
}
