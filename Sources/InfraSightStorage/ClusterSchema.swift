import Foundation
import InfraSightSchema

/// Creating and upgrading tables on a ClickHouse cluster (`ClusterDDL`'s tables), for
/// `schema apply --cluster` and for a server that stores into a cluster.
///
/// ON CLUSTER DDL waits for every node (up to `distributed_ddl_task_timeout`, 180 s by
/// default) and blocks while one is down, so `apply` first reads the node it talks to:
/// when every table it would create already exists there with every column, it issues no
/// DDL at all. That is the common case of a server applying the agents' tables on every
/// hello; DDL then runs only when something is new.
public enum ClusterSchema {
    /// Creates `tables` on `cluster` through `store` (one node of it) and returns what to
    /// insert into and query, as the store holds it: the Distributed tables (`.sharded`)
    /// or the replicated tables (`.everyNode`), in the order given.
    ///
    /// Unless the node already has them all (see the type's comment): each database
    /// `CREATE ... IF NOT EXISTS ON CLUSTER`, then per table its shards' table and its
    /// Distributed table, then the columns either lacks (`store.migrate(_:onCluster:)`,
    /// `migrated` called once per table altered). A column present with another type is a
    /// `PrepareError.conflict`, found before any DDL is sent. Blocks for as long as the
    /// cluster's DDL takes; call it off any event loop.
    ///
    /// An older ClickHouse (18.16) refuses ALTER ON CLUSTER of a Distributed table over
    /// replicated shards (code 371): that node's Distributed table is then altered alone
    /// and `warning` says to apply against each other node.
    @discardableResult
    public static func apply(
        _ tables: [TableSchema], placement: ClusterDDL.Placement = .sharded, cluster: String, store: EventStore,
        migrated: (TableMigration) -> Void, warning: (String) -> Void
    ) throws(PrepareError) -> [TableSchema] {
        if let problem = ClusterDDL.clusterNameProblem(cluster) { throw .store(StorageError(problem)) }
        let planned: [[TableSchema]]
        do {
            planned = try tables.map { t throws(DDLError) in try ClusterDDL.tables(store.holding(t), placement: placement, cluster: cluster) }
        } catch {
            throw .store(StorageError(error.description))
        }
        let created = planned.flatMap { $0 }
        guard try !complete(created, store: store) else { return planned.map { $0.last! } }

        let name = ClusterDDL.quotedCluster(cluster)
        do {
            for db in Set(created.compactMap(\.database)).sorted() {
                _ = try store.query(ClusterDDL.createDatabase(db, cluster: cluster), format: "TabSeparated")
            }
            for t in created { _ = try store.query(t.statement(onCluster: name), format: "TabSeparated") }
        } catch {
            throw .store(error)
        }
        for t in created {
            if t.tail.hasPrefix("ENGINE = Distributed(") {
                try migrateDistributed(t, cluster: name, store: store, migrated: migrated, warning: warning)
            } else if let migration = try store.migrate(t, onCluster: name) {
                migrated(migration)
            }
        }
        return planned.map { $0.last! }
    }

    /// Whether the store's node has every table of `tables` with every column (one read of
    /// `system.columns`). A column present with another type throws the conflict.
    static func complete(_ tables: [TableSchema], store: EventStore) throws(PrepareError) -> Bool {
        let databases = Set(tables.map { $0.database ?? "default" }).sorted().map(sqlStringLiteral).joined(separator: ", ")
        let output: Data
        do {
            output = try store.query("SELECT database, table, name, type FROM system.columns WHERE database IN (\(databases))", format: "TabSeparated")
        } catch {
            throw .store(error)
        }
        var stored: [String: [String: String]] = [:]
        for line in String(decoding: output, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            if fields.count >= 4 { stored["\(fields[0]).\(fields[1])", default: [:]][fields[2]] = fields[3] }
        }
        var complete = true
        for t in tables {
            guard let columns = stored["\(t.database ?? "default").\(t.name)"] else {
                complete = false
                continue
            }
            do {
                if try TableMigration(t, stored: columns) != nil { complete = false }
            } catch {
                throw .conflict(error)
            }
        }
        return complete
    }

    /// A Distributed table gets its columns ON CLUSTER, or, where the server refuses that
    /// (18.16: code 371, the table is not replicated but its shards are), on this node only
    /// with a `warning` (on each other node the shards' tables are then already done and
    /// applying there alters only its Distributed table).
    static func migrateDistributed(
        _ table: TableSchema, cluster: String, store: EventStore, migrated: (TableMigration) -> Void, warning: (String) -> Void
    ) throws(PrepareError) {
        do {
            if let migration = try store.migrate(table, onCluster: cluster) { migrated(migration) }
        } catch .store(let refused) {
            guard let migration = try store.migrate(table, onCluster: nil) else { throw .store(refused) }
            warning("\(migration.summary) on this node only: ALTER ... ON CLUSTER \(cluster) was refused (\(refused.description.prefix(300))); run this command against each other node of the cluster")
        }
    }
}
