import Foundation
import InfraSightSchema
import InfraSightStorage
import InfraSightTestSupport
import Testing

/// InfraSight on a real ClickHouse 18.16 cluster: 2 shards × 2 replicas and ZooKeeper,
/// started on loopback by `ClickHouseCluster` (one per test process). Every test starts
/// from empty `audit` and `infrasight` databases.
@Suite(.serialized, .enabled(if: ZooKeeper.isInstalled, "needs Debian's zookeeper package"))
struct ClusterTests {
    let cluster: ClickHouseCluster

    init() throws {
        cluster = try ClickHouseCluster.shared()
        for db in ["audit", "infrasight"] {
            try cluster.query(cluster.nodes[0], "DROP DATABASE IF EXISTS \(db) ON CLUSTER \(ClickHouseCluster.name)")
        }
    }

    /// The first-party tables (each plugin's `<table>.sql`) as ClickHouse 18.16 holds
    /// them: DateTime for DateTime64, String for JSON.
    static func firstPartyTables() throws -> [TableSchema] {
        let plugins = "\(Paths.packageRoot)/Plugins"
        var tables: [TableSchema] = []
        for folder in try FileManager.default.contentsOfDirectory(atPath: plugins).sorted() {
            for file in try FileManager.default.contentsOfDirectory(atPath: "\(plugins)/\(folder)").sorted() where file.hasSuffix(".sql") {
                let table = try TableSchema(ddl: String(contentsOfFile: "\(plugins)/\(folder)/\(file)", encoding: .utf8))
                tables.append(table.mappingTypes { t in
                    switch t {
                    case .dateTime64: .dateTime
                    case .json: .string
                    default: t
                    }
                })
            }
        }
        return tables.sorted { $0.name < $1.name }
    }

    /// `schema apply --cluster` against one node creates every first-party table on all
    /// four, as a replicated table per shard and a Distributed table over them; rows
    /// inserted through one node's Distributed table land on both shards, both replicas
    /// of a shard hold the same, and every node reads them all back.
    @Test func schemaApplyOnAClusterCreatesEveryTableOnEveryNodeAndRowsSpreadOverTheShards() throws {
        let first = cluster.nodes[0]
        let r = try run(Paths.infrasight, ["schema", "apply", "--cluster", ClickHouseCluster.name, "--clickhouse-url", cluster.url(first)])
        #expect(r.status == 0, "\(r.stderr)")
        let tables = try Self.firstPartyTables()
        #expect(tables.map(\.name) == ["mmap_events", "mount_events", "network_events", "ptrace_events", "resource_events", "tracing_events"])
        let version = try cluster.query(first, "SELECT version()").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(r.stdout == "applied 6 tables to ClickHouse \(version) at \(cluster.url(first)): \(tables.map(\.qualifiedName).sorted().joined(separator: ", "))\n")
        #expect(r.stderr == "")

        let expectedEngines = tables.flatMap { ["\($0.name)\tDistributed", "\($0.name)_local\tReplicatedMergeTree"] }.sorted()
        for node in cluster.nodes {
            let engines = try cluster.query(node, "SELECT name, engine FROM system.tables WHERE database = 'audit' ORDER BY name")
            #expect(engines == expectedEngines.map { $0 + "\n" }.joined(), "\(node)")
            for table in tables {
                let expected = table.columns.map { "\($0.name)\t\($0.type)\n" }.joined()
                for name in [table.name, table.name + "_local"] {
                    let columns = try cluster.query(node, "SELECT name, type FROM system.columns WHERE database = 'audit' AND table = '\(name)'")
                    #expect(columns == expected, "audit.\(name) on \(node)")
                }
            }
        }

        // The shards' tables remember 10,000 blocks for deduplication (18.16 accepts the setting).
        let local = try cluster.query(cluster.nodes[3], "SHOW CREATE TABLE audit.tracing_events_local")
        #expect(local.contains("ENGINE = ReplicatedMergeTree(\\'/clickhouse/tables/{shard}/audit/tracing_events\\', \\'{replica}\\') ORDER BY wall_time_ms SETTINGS replicated_deduplication_window = 10000, index_granularity = 8192"), "\(local)")

        // A RowBinary batch of distinct rows, as an agent's batch reaches the store, into the
        // Distributed table of one node.
        let rows = 1000
        let tracing = tables.first { $0.name == "tracing_events" }!
        let batch = try rowBinaryBatch(tracing, rows: rows, from: 0)
        try insert(batch, into: tracing, on: first)
        let perShard = try replicatedCounts(tracing)
        #expect(perShard[0] > 0 && perShard[1] > 0, "rows on each shard: \(perShard)")
        #expect(perShard[0] + perShard[1] == rows)
        for node in cluster.nodes {
            #expect(try cluster.query(node, "SELECT count(), uniqExact(pid) FROM audit.tracing_events") == "\(rows)\t\(rows)\n", "\(node)")
        }
    }

    /// The same batch inserted twice (an agent resending to another server after a crash
    /// between insert and acknowledgement), each time through a different node's
    /// Distributed table with `insert_distributed_sync = 1`, is stored once: the sharding
    /// key is a hash of the row, so the batch splits into the same per-shard blocks, which
    /// the replicated tables recognise as duplicates. Another batch is still stored.
    @Test func aBatchInsertedTwiceThroughDifferentNodesIsStoredOnce() throws {
        let r = try run(Paths.infrasight, ["schema", "apply", "--cluster", ClickHouseCluster.name, "--clickhouse-url", cluster.url(cluster.nodes[0])])
        #expect(r.status == 0, "\(r.stderr)")
        let tracing = try Self.firstPartyTables().first { $0.name == "tracing_events" }!
        let rows = 500
        let batch = try rowBinaryBatch(tracing, rows: rows, from: 0)

        try insert(batch, into: tracing, on: cluster.node(shard: 1, replica: 1))
        let once = try replicatedCounts(tracing)
        #expect(once[0] + once[1] == rows)
        let duplicatesBefore = try duplicatedBlocks()
        try insert(batch, into: tracing, on: cluster.node(shard: 2, replica: 2))
        // One duplicate block per shard, recognised where the insert was written.
        #expect(try duplicatedBlocks() - duplicatesBefore == 2)
        #expect(try replicatedCounts(tracing) == once)

        let other = try rowBinaryBatch(tracing, rows: rows, from: rows)
        try insert(other, into: tracing, on: cluster.node(shard: 2, replica: 2))
        let twice = try replicatedCounts(tracing)
        #expect(twice[0] + twice[1] == 2 * rows)
        for node in cluster.nodes {
            #expect(try cluster.query(node, "SELECT count(), uniqExact(pid) FROM audit.tracing_events") == "\(2 * rows)\t\(2 * rows)\n", "\(node)")
        }
    }

    /// Retention on a cluster of ClickHouse 18.16 (no TTL): a written storage.retention
    /// deletes each shard's expired rows in its `_local` table, ON CLUSTER, on both
    /// replicas; rows inside the policy stay, read the same from every node.
    @Test func retentionDeletesExpiredRowsOnEveryShard() throws {
        let http = try HTTPStore(url: cluster.url(cluster.nodes[0]))
        let store = try ClusterStore(http, cluster: ClickHouseCluster.name) { _ in }
        let aging = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.retention_test (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime64(3)) ENGINE = MergeTree() ORDER BY wall_time_ms")
        _ = try store.prepare([aging])
        // Written straight into each shard (one replica; replication copies it).
        try cluster.query(cluster.node(shard: 1, replica: 1), "INSERT INTO audit.retention_test_local VALUES (1, 0, now() - 8 * 86400), (2, 0, now() - 6 * 86400), (3, 0, now())")
        try cluster.query(cluster.node(shard: 2, replica: 1), "INSERT INTO audit.retention_test_local VALUES (4, 0, now() - 30 * 86400), (5, 0, now())")
        for node in cluster.nodes {
            try waitUntil("\(node) reads every row", timeout: 30) {
                try cluster.query(node, "SELECT count() FROM audit.retention_test") == "5\n"
            }
        }
        http.retention.policy = RetentionPolicy(seconds: 7 * 86400)
        _ = try store.prepare([aging])
        for node in cluster.nodes {
            try waitUntil("\(node)'s expired rows are deleted", timeout: 90) {
                try cluster.query(node, "SELECT groupArray(seq) FROM (SELECT seq FROM audit.retention_test_local ORDER BY seq)") == (node.shard == 1 ? "[2,3]\n" : "[5]\n")
            }
            #expect(try cluster.query(node, "SELECT groupArray(seq) FROM (SELECT seq FROM audit.retention_test ORDER BY seq)") == "[2,3,5]\n", "\(node)")
        }
    }

    /// A table placed on every node (as the servers' ledger `infrasight.pipeline_batches`
    /// is): one ZooKeeper path for the whole cluster, each node its own replica
    /// (`{shard}-{replica}`), so a row written on one node is read on all four. Applied
    /// again while a node is down, `ClusterSchema.apply` finds everything in place on the
    /// node it talks to and sends no ON CLUSTER statement (one would wait for the node that
    /// is down, 180 s).
    @Test func aTableOnEveryNodeHoldsEveryRowAndApplyingAgainWithANodeDownSendsNoDDL() throws {
        let ledger = TableSchema(
            database: "infrasight", name: "pipeline_batches",
            columns: [Column(name: "batch_id", type: .string), Column(name: "agent_id", type: .string), Column(name: "rows", type: .uint64)],
            ddl: "", tail: "ENGINE = ReplacingMergeTree() ORDER BY batch_id")
        let store = try HTTPStore(url: cluster.url(cluster.nodes[0]))
        var notes: [String] = []
        let tables = try Self.firstPartyTables()
        let created = try ClusterSchema.apply([ledger], placement: .everyNode, cluster: ClickHouseCluster.name, store: store,
                                              migrated: { notes.append($0.note) }, warning: { notes.append($0) })
        #expect(created.map(\.qualifiedName) == ["infrasight.pipeline_batches"])
        let sharded = try ClusterSchema.apply(tables, cluster: ClickHouseCluster.name, store: store, migrated: { notes.append($0.note) }, warning: { notes.append($0) })
        #expect(sharded.map(\.qualifiedName) == tables.map(\.qualifiedName))
        #expect(sharded.allSatisfy { $0.tail.hasPrefix("ENGINE = Distributed(`infrasight`, `audit`, `\($0.name)_local`, cityHash64(") })
        #expect(notes == [])
        for node in cluster.nodes {
            #expect(try cluster.query(node, "SELECT replica_name, zookeeper_path FROM system.replicas WHERE database = 'infrasight'")
                    == "\(node.shard)-\(node)\t/clickhouse/tables/all/infrasight/pipeline_batches\n")
        }
        try cluster.query(cluster.node(shard: 2, replica: 2), "INSERT INTO infrasight.pipeline_batches VALUES ('b1', 'agent', 7)")
        for node in cluster.nodes {
            try waitUntil("\(node) holds the row written on s2r2", timeout: 30) {
                try cluster.query(node, "SELECT batch_id, agent_id, rows FROM infrasight.pipeline_batches") == "b1\tagent\t7\n"
            }
        }

        let ddlQueue = "SELECT count() FROM system.zookeeper WHERE path = '/clickhouse/task_queue/ddl'"
        let queued = try cluster.query(cluster.nodes[0], ddlQueue)
        // (A test failing before the restart below leaves the node to the next test's
        // `ClickHouseCluster.shared()`, which starts every node that is down.)
        let down = cluster.node(shard: 2, replica: 1)
        try cluster.stop(down)
        let started = Date()
        let again = try ClusterSchema.apply(tables, cluster: ClickHouseCluster.name, store: store, migrated: { notes.append($0.note) }, warning: { notes.append($0) })
        _ = try ClusterSchema.apply([ledger], placement: .everyNode, cluster: ClickHouseCluster.name, store: store, migrated: { notes.append($0.note) }, warning: { notes.append($0) })
        #expect(again == sharded)
        #expect(notes == [])
        #expect(Date().timeIntervalSince(started) < 10)
        // Nothing reached the cluster's DDL queue.
        #expect(try cluster.query(cluster.nodes[0], ddlQueue) == queued)
        try cluster.start(down)
    }

    /// `rows` rows of `table` in RowBinary, row i (from `from`) holding i in every column
    /// (as the column's type), written by the cluster itself into a file.
    func rowBinaryBatch(_ table: TableSchema, rows: Int, from: Int) throws -> String {
        let file = try makeTempDir(prefix: "batch") + "/rows.bin"
        let columns = table.columns.map { "CAST(number AS \($0.type)) AS \(quoteIdentifier($0.name))" }.joined(separator: ", ")
        let sql = "SELECT \(columns) FROM system.numbers LIMIT \(from), \(rows) FORMAT RowBinary"
        let r = try run("/usr/bin/curl", ["-s", "-S", "--fail-with-body", "-o", file, "--data-binary", sql, cluster.url(cluster.nodes[0])])
        guard r.status == 0 else { throw TestFailure("generating rows: \(r.stderr) \((try? String(contentsOfFile: file, encoding: .utf8)) ?? "")") }
        return file
    }

    /// Inserts the RowBinary file into the Distributed table on `node`, returning once
    /// every shard has stored its part (`insert_distributed_sync`).
    func insert(_ file: String, into table: TableSchema, on node: ClickHouseCluster.Node) throws {
        try cluster.insert(node, "INSERT INTO \(table.qualifiedName) \(table.columnList) FORMAT RowBinary", bodyFile: file,
                           settings: ["insert_distributed_sync": "1"])
    }

    /// Rows (matching `condition`, when given) in each shard's `_local` table, once both its
    /// replicas hold the same count (replication is asynchronous: waits at most `timeout`
    /// seconds for them to agree).
    func replicatedCounts(_ table: TableSchema, where condition: String? = nil, timeout: Double = 30) throws -> [Int] {
        try [1, 2].map { shard in
            var counts: [Int] = []
            try waitUntil("both replicas of shard \(shard) hold the same rows of \(table.name)_local", timeout: timeout) {
                counts = try [1, 2].map { replica in
                    let text = try cluster.query(cluster.node(shard: shard, replica: replica),
                                                 "SELECT count() FROM \(table.qualifiedName)_local" + (condition.map { " WHERE \($0)" } ?? ""))
                    guard let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("count() answered \(text)") }
                    return n
                }
                return counts[0] == counts[1]
            }
            return counts[0]
        }
    }

    /// Inserted blocks the nodes recognised as duplicates since they started, summed.
    func duplicatedBlocks() throws -> Int {
        try cluster.nodes.reduce(0) { sum, node in
            let text = try cluster.query(node, "SELECT sum(value) FROM system.events WHERE event = 'DuplicatedInsertedBlocks'")
            guard let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("system.events answered \(text)") }
            return sum + n
        }
    }
}
