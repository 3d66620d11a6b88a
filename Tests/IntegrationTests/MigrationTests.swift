import Foundation
import Glibc
import InfraSightSchema
import InfraSightTestSupport
import Testing

/// Tables migrate: a store made by the previous release's DDL (audit.tracing_events
/// without its last columns, plus a column only that store has, holding rows) is upgraded
/// in place by `run`, `server` and `schema apply`, on embedded ClickHouse and on Debian's
/// ClickHouse 18.16 server, losing no rows; a type conflict is refused naming the column.
@Suite(.serialized) struct MigrationTests {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case embedded, clickhouse1816
        var testDescription: String { rawValue }
    }

    /// The columns the previous release did not have (the end of the current DDL): the
    /// tracing additions and the process identity every table has now.
    static let newColumns = ["syscall", "argv", "flags", "mode", "fd", "start_time_ns", "parent_start_time_ns"]
    static let added = "added columns syscall String, argv String, flags UInt64, mode UInt32, fd Int32, start_time_ns UInt64, parent_start_time_ns UInt64"
    static let oldRows = 1000

    /// The first-party DDL of `table`, as the built program prints it.
    static func currentDDL(_ table: String) throws -> TableSchema {
        let r = try run(Paths.infrasight, ["schema", "print", table])
        guard r.status == 0, let statement = r.stdout.components(separatedBy: ";\n").first(where: { $0.contains("CREATE TABLE") }) else {
            throw TestFailure("schema print \(table): \(r.stderr)")
        }
        return try TableSchema(ddl: statement)
    }

    /// A store holding audit.tracing_events as the previous release made it.
    final class OldStore {
        let kind: Kind
        let dataDir: String
        let server: ClickHouseServer?
        let current: TableSchema

        init(_ kind: Kind, table: (TableSchema) -> TableSchema = MigrationTests.previousRelease) throws {
            self.kind = kind
            dataDir = try makeTempDir(prefix: "migration-data")
            server = kind == .clickhouse1816 ? try ClickHouseServer() : nil
            current = try MigrationTests.currentDDL("tracing_events")
            var old = table(current)
            // What the HTTP store made on a server without DateTime64 and JSON.
            if kind == .clickhouse1816 {
                old = old.mappingTypes { t in t == .json ? .string : (t.base == .dateTime64(precision: 3) ? .dateTime : t) }
            }
            try sql("CREATE DATABASE audit")
            try sql(old.statement)
            if old.index(of: "legacy_note") != nil {
                try sql("""
                    INSERT INTO audit.tracing_events (pid, comm, event_type, filename, wall_time_ms, legacy_note)
                    SELECT toUInt32(number), 'old-release', 'open', 'old', 1700000000000 + number, 'kept' FROM system.numbers LIMIT \(MigrationTests.oldRows)
                    """)
            }
        }

        /// Flags and environment that point a command at this store.
        var arguments: [String] { kind == .embedded ? ["--data-dir", dataDir] : [] }
        var environment: [String: String]? { server.map { ["INFRASIGHT_CLICKHOUSE_URL": $0.url] } }

        /// Runs SQL on the store while no program holds it (curl for the server).
        @discardableResult
        func sql(_ text: String) throws -> String {
            if let server { return try server.query(text) }
            let r = try run(Paths.infrasight, ["query", "--data-dir", dataDir, text])
            guard r.status == 0 else { throw TestFailure("query failed: \(r.stderr)") }
            return r.stdout
        }

        func count(_ condition: String) throws -> Int {
            let text = try sql("SELECT count() FROM audit.tracing_events WHERE \(condition)")
            guard let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("count: \(text)") }
            return n
        }

        var columns: [String] {
            get throws {
                try sql("SELECT name FROM system.columns WHERE database = 'audit' AND table = 'tracing_events'").split(separator: "\n").map(String.init)
            }
        }

        /// The upgraded table: every column of the DDL in its order, the old store's own
        /// column kept, and every old row still there with the new columns' defaults.
        func expectUpgraded(_ sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(try columns == current.columns.map(\.name) + ["legacy_note"], sourceLocation: sourceLocation)
            #expect(try count("comm = 'old-release'") == MigrationTests.oldRows, sourceLocation: sourceLocation)
            #expect(try count("comm = 'old-release' AND legacy_note = 'kept' AND syscall = '' AND argv = '' AND flags = 0 AND mode = 0 AND fd = 0"
                              + " AND start_time_ns = 0 AND parent_start_time_ns = 0")
                    == MigrationTests.oldRows, sourceLocation: sourceLocation)
        }
    }

    /// The previous release's table: the current DDL without `newColumns`, plus a column
    /// the old store had and the DDL no longer has (left alone).
    static func previousRelease(_ current: TableSchema) -> TableSchema {
        TableSchema(database: current.database, name: current.name,
                    columns: current.columns.filter { !newColumns.contains($0.name) } + [Column(name: "legacy_note", type: .string)],
                    ddl: "", tail: current.tail)
    }

    /// The one line saying what was added.
    static let note = "infrasight: note: table audit.tracing_events: \(added) (the store had an older definition)\n"

    @Test(arguments: Kind.allCases) func runUpgradesTheStoreInPlace(kind: Kind) throws {
        let store = try OldStore(kind)
        #expect(try store.count("1") == Self.oldRows)
        let (helper, marker, dir) = try Fleet.openLoop()
        let p = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(dir)/agent.yaml", "--duration", "4"] + store.arguments, environment: store.environment)
        try p.waitForStderr("infrasight: note: started: ")
        try Fleet.openLoop(helper, marker, 100)
        let r = try p.wait(timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.components(separatedBy: Self.note).count == 2, "\(r.stderr)")
        let summary = try #require(summaryNumbers(r.stderr, plugin: "tracing"), "\(r.stderr)")
        #expect(summary["store drops"] == 0, "\(summary)")
        try store.expectUpgraded()
        // The new rows fill the added columns.
        #expect(try store.count("filename = '\(marker)' AND syscall = 'openat' AND start_time_ns > 0 AND parent_start_time_ns > 0") == 100)
        #expect(try store.count("1") == Self.oldRows + (summary["rows stored"] ?? -1))
    }

    @Test(arguments: Kind.allCases) func aServerUpgradesTheTableAnAgentDeclares(kind: Kind) throws {
        let store = try OldStore(kind)
        let (helper, marker, dir) = try Fleet.openLoop()
        let server = try Fleet.Server.start(store: store.arguments, environment: store.environment)
        let agent = try Fleet.agent(port: server.port, spool: "\(dir)/spool", dir: dir)
        try Fleet.openLoop(helper, marker, 500)
        let r = try agent.interrupt(after: 1.5)
        #expect(r.status == 0, "\(r.stderr)")
        let spooled = try FleetTests.checkConservation(r, total: 500)
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.components(separatedBy: Self.note).count == 2, "\(s.stderr)")
        try store.expectUpgraded()
        #expect(try store.count("filename = '\(marker)' AND syscall = 'openat'") == spooled)
        #expect(try store.count("1") == Self.oldRows + spooled)
    }

    @Test(arguments: Kind.allCases) func schemaApplyUpgradesTheStoreInPlace(kind: Kind) throws {
        let store = try OldStore(kind)
        let r = try run(Paths.infrasight, ["schema", "apply"] + store.arguments, environment: store.environment)
        #expect(r.status == 0, "\(r.stderr)")
        // One migration line; retention (the built-in default) spares the table an earlier
        // release filled and says so, and reaches the new tables where the store has TTL.
        let spared = "infrasight: note: audit.tracing_events: made before retention existed, its rows are kept until storage.retention is set (new tables: 90 days)\n"
        let notes = r.stderr.split(separator: "\n").filter { $0.hasPrefix("infrasight: note: ") }.map { String($0) + "\n" }
        if kind == .embedded {
            let ttl = ["mmap", "mount", "network", "ptrace", "resource"].map {
                "infrasight: note: audit.\($0)_events: rows are kept 90 days (TTL toDateTime(wall_time_dt) + toIntervalSecond(7776000))\n"
            }
            // The table an earlier release filled gets the codecs in place (ColumnCodecs):
            // its six time columns.
            let codecs = "infrasight: note: audit.tracing_events: 6 time columns now compressed with Delta and LZ4: new parts at once, older ones as they merge\n"
            #expect(notes.sorted() == ([Self.note, spared, codecs] + ttl).sorted(), "\(r.stderr)")
        } else {
            #expect(notes == [Self.note], "\(r.stderr)")
        }
        #expect(r.stdout.hasPrefix("applied 6 tables to "), "\(r.stdout)")
        try store.expectUpgraded()
        #expect(try store.count("1") == Self.oldRows)
        // Applied again: nothing to add, nothing changed; only the spared table is recalled.
        let again = try run(Paths.infrasight, ["schema", "apply"] + store.arguments, environment: store.environment)
        #expect(again.status == 0, "\(again.stderr)")
        let againNotes = again.stderr.split(separator: "\n").filter { $0.hasPrefix("infrasight: note: ") }.map { String($0) + "\n" }
        #expect(againNotes == (kind == .embedded ? [spared] : []), "\(again.stderr)")
    }

    /// A column present with another type is refused, naming it, and nothing is changed
    /// (the columns the table lacks are not added either).
    @Test(arguments: Kind.allCases) func aTypeConflictIsRefusedNamingTheColumnAndChangesNothing(kind: Kind) throws {
        let store = try OldStore(kind) { current in
            TableSchema(database: current.database, name: current.name,
                        columns: [Column(name: "pid", type: .uint32), Column(name: "comm", type: .uint64)], ddl: "", tail: "ENGINE = MergeTree() ORDER BY pid")
        }
        let apply = try run(Paths.infrasight, ["schema", "apply"] + store.arguments, environment: store.environment)
        #expect(apply.status == 1)
        #expect(apply.stderr.hasSuffix("infrasight: table audit.tracing_events conflicts with its DDL: column comm is UInt64 in the store, String in the DDL (a column's type is never changed in place: align the plugin versions, or rename or drop the table)\n"), "\(apply.stderr)")
        let (_, _, dir) = try Fleet.openLoop()
        let r = try run(Paths.infrasight, ["run", "--config", "\(dir)/agent.yaml", "--duration", "2"] + store.arguments, environment: store.environment)
        #expect(r.status == 1)
        #expect(r.stderr.contains("infrasight: table audit.tracing_events conflicts with its DDL: column comm is UInt64 in the store, String in the DDL"), "\(r.stderr)")
        #expect(try store.columns == ["pid", "comm"])
    }

    /// `schema apply --cluster` on a one-shard, one-replica cluster of ClickHouse 18.16
    /// (ReplicatedMergeTree through ZooKeeper): the shards' tables get the columns ON
    /// CLUSTER; 18.16 refuses ALTER ON CLUSTER of the Distributed table (not replicated, on
    /// a replicated shard), so this node's is altered alone with a warning saying to run
    /// the command against each other node. No row is lost; a second apply says nothing.
    @Test(.enabled(if: ZooKeeper.isInstalled, "needs Debian's zookeeper package"))
    func schemaApplyOnAClusterUpgradesTheShardsTablesAndTheDistributedOnes() throws {
        let zookeeper = try ZooKeeper()
        defer { zookeeper.stop() }
        let zkPort = zookeeper.port
        let server = try ClickHouseServer()
        server.stop()
        var config = try String(contentsOfFile: "\(server.dir)/config.xml", encoding: .utf8)
        for (from, to) in [
            ("<zookeeper incl=\"zookeeper-servers\" optional=\"true\" />", "<zookeeper><node><host>127.0.0.1</host><port>\(zkPort)</port></node></zookeeper>"),
            ("<macros incl=\"macros\" optional=\"true\" />", "<macros><shard>01</shard><replica>r1</replica></macros>"),
            ("<remote_servers incl=\"clickhouse_remote_servers\" >", "<remote_servers incl=\"clickhouse_remote_servers\" ><prod><shard><internal_replication>true</internal_replication><replica><host>127.0.0.1</host><port>\(server.tcpPort)</port></replica></shard></prod>"),
        ] {
            guard config.contains(from) else { throw TestFailure("config.xml has no \(from)") }
            config = config.replacingOccurrences(of: from, with: to)
        }
        try config.write(toFile: "\(server.dir)/config.xml", atomically: true, encoding: .utf8)
        try server.start()
        // /ping answers before 18.16's DDL worker has its ZooKeeper session (its own thread
        // connects after the server listens), and an ON CLUSTER statement in that gap crashes
        // the server (SIGSEGV, a null ZooKeeper handle in DDLWorker::enqueueQuery): the
        // "Empty reply from server" this test met under load. The worker's first act once
        // connected is creating the task queue in this fresh ZooKeeper.
        try waitUntil("the DDL worker has its ZooKeeper session (\(server.whatItSaw()))", timeout: 60) {
            (try? server.query("SELECT count() FROM system.zookeeper WHERE path = '/clickhouse/task_queue' AND name = 'ddl'")) == "1\n"
        }

        // The previous release's cluster: schema print --cluster's DDL without the new
        // columns, with 18.16's types, and rows in it.
        let current = try Self.currentDDL("tracing_events")
        let old = Self.previousRelease(current).mappingTypes { t in t == .json ? .string : (t == .dateTime64(precision: 3) ? .dateTime : t) }
        _ = try server.query("CREATE DATABASE audit ON CLUSTER prod")
        _ = try server.query(old.statement(onCluster: "prod").replacingOccurrences(of: "`tracing_events`", with: "`tracing_events_local`")
            .replacingOccurrences(of: "MergeTree()", with: "ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/tracing_events', '{replica}')"))
        _ = try server.query("CREATE TABLE audit.tracing_events ON CLUSTER prod AS audit.tracing_events_local ENGINE = Distributed(prod, audit, tracing_events_local, rand())")
        _ = try server.query("""
            INSERT INTO audit.tracing_events_local (pid, comm, wall_time_ms, legacy_note)
            SELECT toUInt32(number), 'old-release', 1700000000000 + number, 'kept' FROM system.numbers LIMIT \(Self.oldRows)
            """)

        let environment = ["INFRASIGHT_CLICKHOUSE_URL": server.url]
        let r = try run(Paths.infrasight, ["schema", "apply", "--cluster", "prod"], environment: environment)
        #expect(r.status == 0, "\(r.stderr)")
        let added = Self.added
        #expect(r.stderr.contains("infrasight: note: table audit.tracing_events_local on cluster prod: \(added) (the store had an older definition)\n"), "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: warning: table audit.tracing_events: \(added) on this node only: ALTER ... ON CLUSTER prod was refused ("), "\(r.stderr)")
        #expect(r.stderr.contains("); run this command against each other node of the cluster\n"), "\(r.stderr)")
        for table in ["tracing_events_local", "tracing_events"] {
            let columns = try server.query("SELECT name FROM system.columns WHERE database = 'audit' AND table = '\(table)'")
            #expect(columns.split(separator: "\n").map(String.init) == current.columns.map(\.name) + ["legacy_note"], "\(table)")
        }
        // Through the Distributed table: every old row, the new columns' defaults.
        #expect(try server.query("SELECT count() FROM audit.tracing_events WHERE comm = 'old-release' AND legacy_note = 'kept' AND syscall = '' AND fd = 0") == "\(Self.oldRows)\n")
        #expect(try server.query("SELECT count() FROM audit.tracing_events") == "\(Self.oldRows)\n")
        // The other tables were created ON CLUSTER; applied again, nothing is said.
        #expect(try server.query("EXISTS TABLE audit.network_events_local") == "1\n")
        let again = try run(Paths.infrasight, ["schema", "apply", "--cluster", "prod"], environment: environment)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(!again.stderr.contains("infrasight: note: ") && !again.stderr.contains("warning"), "\(again.stderr)")
    }
}
