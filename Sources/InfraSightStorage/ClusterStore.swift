import Foundation
import InfraSightSchema

/// A ClickHouse cluster reached through one or more of its nodes (`HTTPStore`): every
/// table is prepared as `ClusterSchema` does it (a replicated table per shard and a
/// Distributed table of the same name over them, ON CLUSTER, and nothing issued when the
/// node already has them), inserts go through the Distributed tables and wait for every
/// shard (`insert_distributed_sync`), queries read the Distributed tables.
///
/// Waiting for every shard makes an acknowledged batch durable on its shards (not queued on
/// one node's disk), and with the deterministic sharding key of `ClusterDDL` a batch always
/// splits into the same per-shard blocks: a resend, through any node, is deduplicated by
/// the shards' replicated tables. While a shard cannot be reached the insert fails as
/// unavailable and the caller retries.
public final class ClusterStore: EventStore, Sendable {
    public let inner: HTTPStore
    public let cluster: String
    let warning: @Sendable (String) -> Void

    /// `warning`: what cannot be done cluster-wide on an older server (see `ClusterSchema`).
    public init(_ inner: HTTPStore, cluster: String, warning: @escaping @Sendable (String) -> Void) throws(StorageError) {
        if let problem = ClusterDDL.clusterNameProblem(cluster) { throw StorageError(problem) }
        self.inner = inner
        self.cluster = cluster
        self.warning = warning
        inner.insertSettings["insert_distributed_sync"] = "1"
    }

    public var summary: String { "\(inner.summary), cluster \(cluster)" }

    public func prepare(_ tables: [TableSchema], migrated: (TableMigration) -> Void) throws(PrepareError) -> [TableSchema] {
        try prepare(tables, placement: .sharded, migrated: migrated)
    }

    /// `prepare`, with tables placed on the shards (`.sharded`) or whole on every node
    /// (`.everyNode`: bookkeeping any node must be able to read alone).
    public func prepare(_ tables: [TableSchema], placement: ClusterDDL.Placement, migrated: (TableMigration) -> Void) throws(PrepareError) -> [TableSchema] {
        let prepared = try ClusterSchema.apply(tables, placement: placement, cluster: cluster, store: inner, migrated: migrated, warning: warning)
        // The rows live in each node's first table (`NAME_local` under a Distributed one):
        // the TTL goes there, ON CLUSTER; the inner store's retention policy applies.
        var locals: [TableSchema] = []
        for t in tables {
            do {
                locals.append(try ClusterDDL.tables(inner.holding(t), placement: placement, cluster: cluster)[0])
            } catch {
                throw .store(StorageError(error.description))
            }
        }
        try inner.applyRetention(tables.map(inner.holding), targets: locals, cluster: ClusterDDL.quotedCluster(cluster))
        return prepared
    }

    public func holding(_ table: TableSchema) -> TableSchema { inner.holding(table) }

    public func migrate(_ table: TableSchema, onCluster cluster: String?) throws(PrepareError) -> TableMigration? {
        try inner.migrate(table, onCluster: cluster ?? self.cluster)
    }

    public func insert(_ batch: Batch) throws(StorageError) { try inner.insert(batch) }

    public func query(_ sql: String, format: String) throws(StorageError) -> Data { try inner.query(sql, format: format) }

    public func readOnlyQuery(_ query: ReadOnlyQuery) throws(StorageError) -> Data { try inner.readOnlyQuery(query) }

    public func close() { inner.close() }
}
