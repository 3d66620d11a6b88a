import ArgumentParser
import Foundation
import InfraSightCore
import InfraSightSchema
import InfraSightStorage

struct SchemaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema",
        abstract: "Print or apply the DDL of the enabled plugins' tables.",
        subcommands: [Print.self, Apply.self])

    struct ClusterOption: ParsableArguments {
        @Option(help: ArgumentHelp("Emit replicated tables (<table>_local) plus Distributed tables over them, sharded by a hash of the row, ON CLUSTER NAME.", valueName: "NAME"))
        var cluster: String?
    }

    static func tables(_ source: PluginSourceOptions) throws -> (InfraSightConfig, [TableSchema]) {
        let config = try source.loadConfig()
        let catalog = source.catalog(config)
        let plugins: [LoadedPlugin]
        do {
            plugins = try catalog.active(names: nil)
        } catch {
            throw failure(error.description)
        }
        return (config, plugins.flatMap(\.tables))
    }

    struct Print: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print CREATE statements (all tables, or TABLE).")
        @OptionGroup var source: PluginSourceOptions
        @OptionGroup var cluster: ClusterOption
        @Argument(help: "A table (`tracing_events` or `audit.tracing_events`).") var table: String?

        func run() throws {
            var (_, tables) = try SchemaCommand.tables(source)
            if let table {
                tables = tables.filter { $0.name == table || $0.qualifiedName == table }
                guard !tables.isEmpty else { throw failure("no enabled plugin has a table \(table)") }
            }
            if let name = cluster.cluster, let problem = ClusterDDL.clusterNameProblem(name) { throw failure(problem) }
            var databases = Set<String>()
            for t in tables {
                if let db = t.database, databases.insert(db).inserted {
                    print((cluster.cluster.map { ClusterDDL.createDatabase(db, cluster: $0) } ?? "CREATE DATABASE IF NOT EXISTS \(db)") + ";\n")
                }
                let statements: [String]
                do {
                    statements = try ClusterDDL.statements(for: t, cluster: cluster.cluster)
                } catch {
                    throw failure(error.description)
                }
                for statement in statements { print(statement + ";\n") }
            }
        }
    }

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the database and tables in the store.")
        @OptionGroup var source: PluginSourceOptions
        @OptionGroup var storage: StorageOptions
        @OptionGroup var cluster: ClusterOption

        func run() throws {
            let (config, tables) = try SchemaCommand.tables(source)
            let store = try storage.open(config, notice: { printError("note: \($0)") })
            // A table the store has from an older release gets the columns it lacks: one line each.
            let say = { (migration: TableMigration) in printError("note: \(migration.note)") }
            let http = store as? HTTPStore
            if cluster.cluster != nil && http == nil { throw failure("--cluster needs --clickhouse-url (a node of the cluster)", code: 2) }
            do {
                if let name = cluster.cluster, let http {
                    _ = try ClusterStore(http, cluster: name, warning: { printError("warning: \($0)") }).prepare(tables, migrated: say)
                } else {
                    _ = try store.prepare(tables, migrated: say)
                }
            } catch {
                throw failure("\(error)")
            }
            print("applied \(tables.count) table\(tables.count == 1 ? "" : "s") to \(store.summary): \(tables.map(\.qualifiedName).joined(separator: ", "))")
            store.close()
        }
    }
}
