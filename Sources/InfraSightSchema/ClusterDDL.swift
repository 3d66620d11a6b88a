import Foundation

/// DDL for deployments that outgrow one node: the tables of a ClickHouse cluster whose
/// shards are replicated through ZooKeeper (`internal_replication` true).
///
/// A table is placed one of two ways (`Placement`):
/// - `.sharded` (events): per shard a `Replicated<Family>` table `<name>_local`, and
///   `<name>` as a Distributed table over them, so inserts and queries keep the same name.
///   The Distributed table shards by `shardingKey`, a hash of the row: the same batch
///   always splits into the same per-shard blocks, so the replicated tables' block
///   deduplication stores a batch resent through any node once (with
///   `insert_distributed_sync = 1` an insert returns after every shard has its block).
/// - `.everyNode` (the servers' ledger): one `Replicated<Family>` table whose ZooKeeper
///   path has no `{shard}`, so every node of the cluster holds all of it.
///
/// The engine comes from the table's own clause through `EngineClause` (so
/// `ReplacingMergeTree(ver)` becomes `ReplicatedReplacingMergeTree(path, replica, ver)`),
/// never from text replacement; a table whose clause is outside that grammar is refused.
/// Needs the `{shard}` and `{replica}` macros on every node, `{replica}` unique per shard
/// (and `{shard}-{replica}` unique in the cluster, for `.everyNode`).
public enum ClusterDDL {
    public enum Placement: Sendable {
        case sharded
        case everyNode
    }

    /// Blocks each replicated table remembers for deduplication (ClickHouse's default is
    /// 100: under load a batch resent minutes later would no longer be recognised).
    public static let deduplicationWindow = 10_000

    /// The cluster's name as DDL writes it after `ON CLUSTER`: backquoted unless it is a
    /// plain identifier (`clusterNameProblem` must have accepted it).
    public static func quotedCluster(_ cluster: String) -> String {
        isPlainIdentifier(cluster) ? cluster : quoteIdentifier(cluster)
    }

    /// Why `cluster` cannot name a cluster in DDL, or nil when it can.
    public static func clusterNameProblem(_ cluster: String) -> String? {
        guard !cluster.isEmpty, cluster.utf8.count <= 128, !cluster.contains("`"),
            !cluster.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { return "a cluster name is 1 to 128 characters without backquotes or control characters (got \(cluster.prefix(40)))" }
        return nil
    }

    public static func createDatabase(_ database: String, cluster: String) -> String {
        "CREATE DATABASE IF NOT EXISTS \(database) ON CLUSTER \(quotedCluster(cluster))"
    }

    /// The tables `table` becomes on the cluster, in creation order: the shards' table then
    /// the Distributed table over it (`.sharded`), or the one table on every node.
    public static func tables(_ table: TableSchema, placement: Placement, cluster: String) throws(DDLError) -> [TableSchema] {
        switch placement {
        case .sharded: [try local(table), try distributed(table, cluster: cluster)]
        case .everyNode: [try everyNode(table)]
        }
    }

    /// The CREATE statements of `tables(...)`, ON CLUSTER; `[table.statement]` without a cluster.
    public static func statements(for table: TableSchema, cluster: String?, placement: Placement = .sharded) throws(DDLError) -> [String] {
        guard let cluster else { return [table.statement] }
        return try tables(table, placement: placement, cluster: cluster).map { $0.statement(onCluster: quotedCluster(cluster)) }
    }

    /// The shard's table `<name>_local`: the table's engine replicated under
    /// `/clickhouse/tables/{shard}/<db>/<name>`, the same columns.
    public static func local(_ table: TableSchema) throws(DDLError) -> TableSchema {
        let db = table.database ?? "default"
        return TableSchema(database: db, name: "\(table.name)_local", columns: table.columns, ddl: "",
                           tail: try replicated(table, path: "/clickhouse/tables/{shard}/\(db)/\(table.name)", replica: "{replica}"))
    }

    /// The Distributed table `<name>` over the shards' `<name>_local`, sharding by `shardingKey`.
    public static func distributed(_ table: TableSchema, cluster: String) throws(DDLError) -> TableSchema {
        let db = table.database ?? "default"
        let arguments = [quoteIdentifier(cluster), quoteIdentifier(db), quoteIdentifier("\(table.name)_local"), try shardingKey(table)]
        return TableSchema(database: db, name: table.name, columns: table.columns, ddl: "",
                           tail: "ENGINE = Distributed(\(arguments.joined(separator: ", ")))")
    }

    /// The table replicated to every node: ZooKeeper path `/clickhouse/tables/all/<db>/<name>`
    /// (no `{shard}`), replica `{shard}-{replica}`.
    public static func everyNode(_ table: TableSchema) throws(DDLError) -> TableSchema {
        let db = table.database ?? "default"
        return TableSchema(database: db, name: table.name, columns: table.columns, ddl: "",
                           tail: try replicated(table, path: "/clickhouse/tables/all/\(db)/\(table.name)", replica: "{shard}-{replica}"))
    }

    /// `cityHash64` of every column that is not Nullable or JSON (a Nullable hash is
    /// Nullable, which a sharding key may not be; JSON does not hash on every version): a
    /// function of the row alone, so a batch splits the same way on every node and every
    /// time, and rows spread over the shards even when they share their sorting key.
    public static func shardingKey(_ table: TableSchema) throws(DDLError) -> String {
        let hashed = table.columns.filter { column in
            switch column.type {
            case .nullable, .json, .other: false
            default: true
            }
        }
        guard !hashed.isEmpty else { throw DDLError("table \(table.qualifiedName) has no column to shard by (all are Nullable or JSON)") }
        return "cityHash64(\(hashed.map { quoteIdentifier($0.name) }.joined(separator: ", ")))"
    }

    /// The engine clause with its family replicated, the ZooKeeper path and replica name
    /// first among its arguments, and the deduplication window; the non-replicated window
    /// (a setting the replicated engines do not take) is dropped.
    static func replicated(_ table: TableSchema, path: String, replica: String) throws(DDLError) -> String {
        let engine: EngineClause
        do {
            engine = try EngineClause(parsing: table.tail, columns: table.columns.map(\.name))
        } catch {
            throw DDLError("table \(table.qualifiedName) cannot be replicated: \(error)")
        }
        let arguments = ["'\(path)'", "'\(replica)'"] + engine.arguments.map(quoteIdentifier)
        var text = "ENGINE = Replicated\(engine.family)(\(arguments.joined(separator: ", ")))"
        var settings: [String] = []
        for (keyword, value) in engine.parts {
            if keyword == "SETTINGS" {
                settings = value.components(separatedBy: ", ").filter { !$0.hasPrefix("non_replicated_deduplication_window ") }
            } else {
                text += " \(keyword) \(value)"
            }
        }
        if !settings.contains(where: { $0.hasPrefix("replicated_deduplication_window ") }) {
            settings.append("replicated_deduplication_window = \(deduplicationWindow)")
        }
        return text + " SETTINGS " + settings.joined(separator: ", ")
    }
}
