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
        @Option(help: ArgumentHelp("Emit ReplicatedMergeTree tables plus Distributed tables over them, ON CLUSTER NAME.", valueName: "NAME"))
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
            var databases = Set<String>()
            for t in tables {
                if let db = t.database, databases.insert(db).inserted {
                    print("CREATE DATABASE IF NOT EXISTS \(db)\(cluster.cluster.map { " ON CLUSTER \($0)" } ?? "");\n")
                }
                for statement in ClusterDDL.statements(for: t, cluster: cluster.cluster) { print(statement + ";\n") }
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
            let store = try storage.open(config)
            // A table the store has from an older release gets the columns it lacks: one line each.
            let say = { (migration: TableMigration) in printError("note: \(migration.note)") }
            do {
                if let name = cluster.cluster {
                    for db in Set(tables.compactMap(\.database)).sorted() {
                        _ = try store.query("CREATE DATABASE IF NOT EXISTS \(db) ON CLUSTER \(name)", format: "TSV")
                    }
                    for t in tables.map(store.holding) {
                        for s in ClusterDDL.statements(for: t, cluster: name) { _ = try store.query(s, format: "TSV") }
                        // The shards' tables first, then the Distributed table over them.
                        if let migration = try store.migrate(ClusterDDL.local(t), onCluster: name) { say(migration) }
                        try Self.migrateDistributed(ClusterDDL.distributed(t), cluster: name, store: store, say: say)
                    }
                } else {
                    _ = try store.prepare(tables, migrated: say)
                }
            } catch {
                throw failure("\(error)")
            }
            print("applied \(tables.count) table\(tables.count == 1 ? "" : "s") to \(store.summary): \(tables.map(\.qualifiedName).joined(separator: ", "))")
            store.close()
        }

        /// A Distributed table gets its columns ON CLUSTER. An older ClickHouse (18.16
        /// here) refuses ALTER ON CLUSTER of a table that is not replicated when the shards
        /// are (`internal_replication`, code 371): then this node's table is altered alone,
        /// and a warning says to run the same command against each other node (there the
        /// shards' tables are already done and only its Distributed table is altered).
        static func migrateDistributed(_ table: TableSchema, cluster: String, store: EventStore, say: (TableMigration) -> Void) throws {
            do {
                if let migration = try store.migrate(table, onCluster: cluster) { say(migration) }
            } catch .store(let refused) {
                guard let migration = try store.migrate(table, onCluster: nil) else { throw refused }
                printError("warning: \(migration.summary) on this node only: ALTER ... ON CLUSTER \(cluster) was refused (\(refused.description.prefix(300))); run this command against each other node of the cluster")
            }
        }
    }
}

/// DDL for deployments that outgrow one node: per shard a ReplicatedMergeTree table
/// `<name>_local`, and `<name>` as a Distributed table over them, so inserts and queries
/// keep using the same name.
enum ClusterDDL {
    static func statements(for table: TableSchema, cluster: String?) -> [String] {
        guard let cluster else { return [table.statement] }
        let db = table.database ?? "default"
        let localDDL = local(table).statement(onCluster: cluster)
        let distributed = "CREATE TABLE IF NOT EXISTS \(db).\(table.name) ON CLUSTER \(cluster) AS \(db).\(table.name)_local\nENGINE = Distributed(\(cluster), \(db), \(table.name)_local, rand())"
        return [localDDL, distributed]
    }

    /// The shard's table `<name>_local`: ReplicatedMergeTree, the same columns.
    static func local(_ table: TableSchema) -> TableSchema {
        let db = table.database ?? "default"
        return TableSchema(database: db, name: "\(table.name)_local", columns: table.columns, ddl: "",
                           tail: table.tail.replacingOccurrences(
                               of: "MergeTree()", with: "ReplicatedMergeTree('/clickhouse/tables/{shard}/\(db)/\(table.name)', '{replica}')"))
    }

    /// The Distributed table `<name>` over the shards' tables (their columns).
    static func distributed(_ table: TableSchema) -> TableSchema {
        TableSchema(database: table.database ?? "default", name: table.name, columns: table.columns, ddl: "", tail: "ENGINE = Distributed")
    }
}
