import Foundation
import InfraSightCore
import InfraSightSchema
import InfraSightTestSupport
import Testing

/// The original schema (seeds/database-schema.md): every table must start with exactly
/// these columns, types and order.
let originalColumns: [String: String] = [
    "tracing_events": "pid UInt32, uid UInt32, gid UInt32, ppid UInt32, user_pid UInt32, user_ppid UInt32, cgroup_id UInt64, cgroup_name String, comm String, filename String, monotonic_ts_enter_ns UInt64, monotonic_ts_exit_ns UInt64, return_code Int64, latency_ns UInt64, event_type String, node_name String, user String, latency_ms Float64, wall_time_ms Int64, wall_time_dt DateTime64(3), container_id String, container_image String, container_labels_json JSON",
    "network_events": "pid UInt32, uid UInt32, gid UInt32, ppid UInt32, user_pid UInt32, user_ppid UInt32, cgroup_id UInt64, cgroup_name String, comm String, sa_family String, saddr_ipv4 String, daddr_ipv4 String, sport String, dport String, saddr_ipv6 String, daddr_ipv6 String, resolved_domain Nullable(String), monotonic_ts_enter_ns UInt64, monotonic_ts_exit_ns UInt64, return_code Int64, latency_ns UInt64, event_type String, node_name String, user String, latency_ms Float64, wall_time_ms Int64, wall_time_dt DateTime64(3), container_id String, container_image String, container_labels_json JSON",
    "ptrace_events": "pid UInt32, uid UInt32, gid UInt32, ppid UInt32, user_pid UInt32, user_ppid UInt32, cgroup_id UInt64, cgroup_name String, comm String, request Int64, target_pid Int64, addr UInt64, data UInt64, request_name String, monotonic_ts_enter_ns UInt64, monotonic_ts_exit_ns UInt64, return_code Int64, latency_ns UInt64, event_type String, node_name String, user String, latency_ms Float64, wall_time_ms Int64, wall_time_dt DateTime64(3), container_id String, container_image String, container_labels_json JSON",
    "mmap_events": "pid UInt32, uid UInt32, gid UInt32, ppid UInt32, user_pid UInt32, user_ppid UInt32, cgroup_id UInt64, cgroup_name String, comm String, addr UInt64, len UInt64, prot UInt64, flags UInt64, fd UInt64, off UInt64, monotonic_ts_enter_ns UInt64, monotonic_ts_exit_ns UInt64, return_code Int64, latency_ns UInt64, event_type String, node_name String, user String, latency_ms Float64, wall_time_ms Int64, wall_time_dt DateTime64(3), container_id String, container_image String, container_labels_json JSON",
    "mount_events": "pid UInt32, uid UInt32, gid UInt32, ppid UInt32, user_pid UInt32, user_ppid UInt32, cgroup_id UInt64, cgroup_name String, comm String, dev_name String, dir_name String, type String, flags UInt64, monotonic_ts_enter_ns UInt64, monotonic_ts_exit_ns UInt64, return_code Int64, latency_ns UInt64, event_type String, node_name String, user String, latency_ms Float64, wall_time_ms Int64, wall_time_dt DateTime64(3), container_id String, container_image String, container_labels_json JSON",
    "resource_events": "pid UInt32, comm String, uid UInt32, gid UInt32, ppid UInt32, user_pid UInt32, user_ppid UInt32, cgroup_id UInt64, cgroup_name String, user String, cpu_ns UInt64, user_faults UInt64, kernel_faults UInt64, vm_mmap_bytes UInt64, vm_munmap_bytes UInt64, vm_brk_grow_bytes UInt64, vm_brk_shrink_bytes UInt64, bytes_written UInt64, bytes_read UInt64, isActive UInt32, wall_time_dt DateTime64(3), wall_time_ms Int64, container_id String, container_image String, container_labels_json JSON",
]

@Suite struct SchemaTests {
    @Test(arguments: originalColumns.keys.sorted())
    func schemaFileStartsWithTheOriginalColumnsInOrder(table: String) throws {
        let text = try String(contentsOfFile: "\(Paths.packageRoot)/schema/\(table).sql", encoding: .utf8)
        let schema = try TableSchema(ddl: text)
        #expect(schema.database == "audit")
        #expect(schema.name == table)
        let expected = originalColumns[table]!.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let actual = schema.columns.map { "\($0.name) \($0.type)" }
        #expect(Array(actual.prefix(expected.count)) == expected)
    }

    /// schema/ is the complete DDL for people who apply it by hand: what each built plugin
    /// library hands the host (its descriptor's DDL, embedded at build time) must be
    /// schema/'s file, verbatim.
    @Test(arguments: originalColumns.keys.sorted())
    func schemaFileIsTheDDLItsPluginEmbeds(table: String) throws {
        let plugin = String(table.dropLast("_events".count))
        let mine = try String(contentsOfFile: "\(Paths.packageRoot)/schema/\(table).sql", encoding: .utf8)
        let path = "\(Paths.realBinDir)/libinfrasight-\(plugin).so"
        guard FileManager.default.fileExists(atPath: path) else { throw TestFailure("\(path) does not exist: run `swift build` before the tests") }
        var loader = PluginLoader(pluginDirs: [Paths.realBinDir], pins: [:])
        let loaded = try loader.load(path)
        let embedded = try #require(loaded.tables.first { $0.name == table }, "\(path) has no table \(table)")
        #expect(embedded.ddl == mine, "the DDL libinfrasight-\(plugin).so embeds differs from schema/\(table).sql")
    }

    /// Every row names its process across pid reuse (docs/process-identity.md): the last
    /// two columns of every table, filled by the host from the record header.
    @Test(arguments: originalColumns.keys.sorted())
    func schemaFileEndsWithTheProcessIdentity(table: String) throws {
        let schema = try TableSchema(ddl: try String(contentsOfFile: "\(Paths.packageRoot)/schema/\(table).sql", encoding: .utf8))
        #expect(schema.columns.suffix(2).map { "\($0.name) \($0.type)" } == ["start_time_ns UInt64", "parent_start_time_ns UInt64"])
    }

    @Test func everyTableIsMergeTreeOrderedByWallTime() throws {
        for table in originalColumns.keys {
            let text = try String(contentsOfFile: "\(Paths.packageRoot)/schema/\(table).sql", encoding: .utf8)
            #expect(text.contains("ENGINE = MergeTree()"))
            #expect(text.contains("ORDER BY wall_time_ms"))
        }
    }

    @Test func parsesTypesItKnows() {
        #expect(ColumnType(parsing: "Nullable(String)") == .nullable(.string))
        #expect(ColumnType(parsing: "DateTime64(3)") == .dateTime64(precision: 3))
        #expect(ColumnType(parsing: "DateTime64(3, 'UTC')") == .dateTime64(precision: 3))
        #expect(ColumnType(parsing: "JSON") == .json)
        #expect(ColumnType(parsing: "Array(String)") == .other("Array(String)"))
    }

    @Test func refusesMalformedDDL() {
        #expect(throws: DDLError.self) { try TableSchema(ddl: "SELECT 1") }
        #expect(throws: DDLError.self) { try TableSchema(ddl: "CREATE TABLE t ENGINE = Memory") }
        #expect(throws: DDLError.self) { try TableSchema(ddl: "CREATE TABLE t (a UInt32, a String) ENGINE = Memory") }
        #expect(throws: DDLError.self) { try TableSchema(ddl: "CREATE TABLE t (a Array(UInt8)) ENGINE = Memory") }
        #expect(throws: DDLError.self) { try TableSchema(ddl: "CREATE TABLE t () ENGINE = Memory") }
    }

    @Test func skipsCommentsAndIndexClauses() throws {
        let schema = try TableSchema(ddl: """
            -- a comment (with, commas)
            CREATE TABLE IF NOT EXISTS `db`.`t` (
              a UInt32, -- trailing, comment
              `b` Nullable(String),
              INDEX ia a TYPE minmax GRANULARITY 1
            ) ENGINE = MergeTree() ORDER BY a
            """)
        #expect(schema.qualifiedName == "db.t")
        #expect(schema.columns == [Column(name: "a", type: .uint32), Column(name: "b", type: .nullable(.string))])
    }

    @Test func refusesNamesThatAreNotPlainIdentifiers() {
        #expect(throws: DDLError("column name 'x String) ENGINE = Log /*' is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")) {
            try TableSchema(ddl: "CREATE TABLE t (`x String) ENGINE = Log /*` String) ENGINE = MergeTree ORDER BY tuple()")
        }
        #expect(throws: DDLError.self) { try TableSchema(ddl: "CREATE TABLE `a b`.t (x String) ENGINE = MergeTree ORDER BY x") }
        #expect(throws: DDLError.self) { try TableSchema(ddl: "CREATE TABLE t (x DateTime64(12)) ENGINE = MergeTree ORDER BY x") }
    }

    @Test func theStatementBackquotesEveryName() throws {
        let schema = try TableSchema(ddl: "CREATE TABLE audit.t (a UInt32, b String) ENGINE = MergeTree() ORDER BY a")
        #expect(schema.statement == "CREATE TABLE IF NOT EXISTS `audit`.`t` (\n  `a` UInt32,\n  `b` String\n)\nENGINE = MergeTree() ORDER BY a")
    }

    @Test func theEngineClauseIsRebuiltFromItsGrammar() throws {
        let columns = ["a", "t", "v"]
        let clause = try EngineClause(parsing: "ENGINE = ReplacingMergeTree(v) PARTITION BY toYYYYMM(t) ORDER BY (a, intHash64(a)) TTL t + INTERVAL 30 day SETTINGS index_granularity = 8192", columns: columns)
        #expect(clause.canonical == "ENGINE = ReplacingMergeTree(`v`) PARTITION BY toYYYYMM(`t`) ORDER BY (`a`, intHash64(`a`)) TTL `t` + INTERVAL 30 DAY SETTINGS index_granularity = 8192")
        #expect(try EngineClause(parsing: "ENGINE = MergeTree() ORDER BY tuple()", columns: columns).canonical == "ENGINE = MergeTree() ORDER BY tuple()")
        #expect(clause.setting("non_replicated_deduplication_window", 1000).canonical.hasSuffix("SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000"))
        let refused: [(String, String)] = [
            ("ENGINE = MergeTree ORDER BY a AS SELECT 1", "unexpected AS after the engine (expected PARTITION BY, ORDER BY, PRIMARY KEY, SAMPLE BY, TTL, SETTINGS)"),
            ("ENGINE = File(TSV, '/etc/passwd')", "character ''' is not accepted in the engine clause"),
            ("ENGINE = ReplicatedMergeTree ORDER BY a", "engine ReplicatedMergeTree is not accepted (one of AggregatingMergeTree, CollapsingMergeTree, MergeTree, ReplacingMergeTree, SummingMergeTree, VersionedCollapsingMergeTree)"),
            ("ENGINE = MergeTree ORDER BY nope", "the engine clause names nope, which is not a column of the table"),
            ("ENGINE = MergeTree ORDER BY a ORDER BY a", "ORDER BY appears twice"),
            ("ENGINE = MergeTree ORDER BY a -- x", "comments are not accepted in the engine clause"),
            ("ENGINE = MergeTree ORDER BY a SETTINGS disk = 1", "setting disk is not accepted"),
            ("ENGINE = MergeTree", "a MergeTree table needs ORDER BY"),
            ("ENGINE = MergeTree ORDER BY url(a)", "function url is not accepted in the engine clause"),
        ]
        for (tail, reason) in refused {
            #expect(throws: DDLError(reason), "\(tail)") { try EngineClause(parsing: tail, columns: columns) }
        }
    }

    /// The cluster's tables keep the table's engine (replicated, arguments after the
    /// ZooKeeper path and replica), its clauses and settings (the non-replicated window
    /// dropped: the replicated engines refuse it) and add the replicated dedup window.
    @Test func aClusterReplicatesTheTablesOwnEngineAndShardsByAHashOfTheRow() throws {
        let table = try TableSchema(ddl: """
            CREATE TABLE audit.t (a UInt32, v UInt64, s String, n Nullable(String), j JSON, d DateTime64(3))
            ENGINE = ReplacingMergeTree(v) PARTITION BY toYYYYMM(d) ORDER BY (a, s) SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 1000
            """)
        let local = try ClusterDDL.local(table)
        #expect(local.qualifiedName == "audit.t_local")
        #expect(local.columns == table.columns)
        #expect(local.tail == "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/audit/t', '{replica}', `v`) PARTITION BY toYYYYMM(`d`) ORDER BY (`a`, `s`) SETTINGS index_granularity = 1024, replicated_deduplication_window = 10000")
        let distributed = try ClusterDDL.distributed(table, cluster: "prod")
        #expect(distributed.qualifiedName == "audit.t")
        #expect(distributed.columns == table.columns)
        // Nullable and JSON columns are left out of the hash (a Nullable hash cannot shard).
        #expect(distributed.tail == "ENGINE = Distributed(`prod`, `audit`, `t_local`, cityHash64(`a`, `v`, `s`, `d`))")
        let ledger = try ClusterDDL.everyNode(TableSchema(database: "infrasight", name: "pipeline_batches", columns: [Column(name: "batch_id", type: .string)], ddl: "",
                                                          tail: "ENGINE = ReplacingMergeTree() ORDER BY batch_id"))
        #expect(ledger.qualifiedName == "infrasight.pipeline_batches")
        #expect(ledger.tail == "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/infrasight/pipeline_batches', '{shard}-{replica}') ORDER BY `batch_id` SETTINGS replicated_deduplication_window = 10000")
        #expect(try ClusterDDL.statements(for: table, cluster: "my-cluster").map { $0.components(separatedBy: " (\n").first! }
                == ["CREATE TABLE IF NOT EXISTS `audit`.`t_local` ON CLUSTER `my-cluster`", "CREATE TABLE IF NOT EXISTS `audit`.`t` ON CLUSTER `my-cluster`"])
        #expect(try ClusterDDL.statements(for: table, cluster: nil) == [table.statement])
        #expect(ClusterDDL.createDatabase("audit", cluster: "prod") == "CREATE DATABASE IF NOT EXISTS audit ON CLUSTER prod")
        #expect(ClusterDDL.clusterNameProblem("a`b") != nil)
        #expect(ClusterDDL.clusterNameProblem("my-cluster") == nil)

        let log = TableSchema(database: "audit", name: "l", columns: [Column(name: "a", type: .uint32)], ddl: "", tail: "ENGINE = Log")
        #expect(throws: DDLError("table audit.l cannot be replicated: engine Log is not accepted (one of AggregatingMergeTree, CollapsingMergeTree, MergeTree, ReplacingMergeTree, SummingMergeTree, VersionedCollapsingMergeTree)")) {
            try ClusterDDL.local(log)
        }
        let onlyNullable = TableSchema(database: "audit", name: "n", columns: [Column(name: "a", type: .nullable(.string))], ddl: "", tail: "ENGINE = MergeTree() ORDER BY tuple()")
        #expect(throws: DDLError("table audit.n has no column to shard by (all are Nullable or JSON)")) { try ClusterDDL.distributed(onlyNullable, cluster: "prod") }
    }
}
