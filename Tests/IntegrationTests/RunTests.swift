import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// `infrasight run` end to end: real syscalls → kernel → plugin → ClickHouse → `infrasight query`.
@Suite(.serialized) struct RunTests {
    func query(_ args: [String], _ sql: String) throws -> String {
        let r = try run(Paths.infrasight, ["query"] + args + [sql])
        guard r.status == 0 else { throw TestFailure("query failed (\(r.status)): \(r.stderr)") }
        return r.stdout
    }

    @Test func runStoresKnownCommandsIntoEmbeddedClickHouseQueryableDuringAndAfter() throws {
        let data = try makeTempDir(prefix: "rundata")
        let dir = try makeTempDir(prefix: "runwork")
        let file = "\(dir)/secret.txt"
        try "x\n".write(toFile: file, atomically: true, encoding: .utf8)
        let me = getpid()
        // Every plugin, tracing filtered in the kernel to the test's programs (their execs
        // under the test's own comm, then cat and chmod): its exact rows must not share a
        // ring buffer with other suites' floods (see TraceTests.startTrace(comms:)).
        let comm = uniqueComm()
        let config = "\(dir)/run.yaml"
        try commFilterConfig(["tracing"], comms: [comm, "cat", "chmod"]).write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--data-dir", data, "--config", config])
        try agent.waitForStderr("infrasight: note: started: ")
        let (catPid, missingPid, chmodPid) = try withThreadComm(comm) {
            (try spawnAndWait("/bin/cat", [file]), try spawnAndWait("/bin/cat", ["\(dir)/missing"]), try spawnAndWait("/bin/chmod", ["600", file]))
        }
        // Something for every other plugin: a traced process, a mount, a connection.
        _ = try spawnAndWait("/usr/bin/strace", ["-o", "/dev/null", "/bin/true"])
        _ = try spawnAndWait("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "run-test", dir])
        _ = try spawnAndWait("/bin/umount", [dir])
        _ = try spawnAndWait("/usr/bin/curl", ["-s", "-m", "1", "http://127.0.0.1:1/"])
        // While run holds the data directory, queries go through its socket.
        var during = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            during = try query(["--data-dir", data], "SELECT count() FROM audit.tracing_events WHERE pid = \(chmodPid) AND event_type = 'chmod'")
            if during != "0\n" { break }
            usleep(300_000)
        }
        #expect(during == "1\n")
        #expect(throws: TestFailure.self) { try query(["--data-dir", data], "DROP TABLE audit.tracing_events") }
        agent.signal(SIGTERM)
        let r = try agent.wait(timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try #require(r.stderr.split(separator: "\n").first { $0.hasPrefix("infrasight: tracing: received ") })
        #expect(summary.contains("queue drops 0, store drops 0"))

        // After: the engine opened directly.
        let rows = try query(["--data-dir", data], """
            SELECT pid, ppid, uid, comm, event_type, filename, return_code, latency_ns > 0, user, container_id FROM audit.tracing_events
            WHERE pid IN (\(catPid), \(missingPid), \(chmodPid)) AND event_type != 'execve' AND filename LIKE '\(dir)/%'
            ORDER BY monotonic_ts_enter_ns
            """)
        let user = getuid() == 0 ? "root" : String(getuid())
        let lines = rows.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(rows)")
        #expect(lines.first?.hasPrefix("\(catPid)\t\(me)\t\(getuid())\tcat\topen\t\(file)\t") == true)
        #expect(lines.first?.hasSuffix("\t1\t\(user)\t") == true)
        #expect(lines.dropFirst().first == "\(missingPid)\t\(me)\t\(getuid())\tcat\topen\t\(dir)/missing\t-2\t1\t\(user)\t")
        #expect(lines.last == "\(chmodPid)\t\(me)\t\(getuid())\tchmod\tchmod\t\(file)\t0\t1\t\(user)\t")
        // The stored count equals what the agent says it stored.
        let stored = try #require(summaryNumbers(r.stderr, plugin: "tracing")?["rows stored"])
        #expect(try query(["--data-dir", data], "SELECT count() FROM audit.tracing_events") == "\(stored)\n")
        #expect(try query(["--data-dir", data, "--format", "JSONEachRow"], "SELECT event_type FROM audit.tracing_events WHERE pid = \(chmodPid) AND event_type = 'chmod'") == "{\"event_type\":\"chmod\"}\n")
        // Every plugin's table has rows.
        for table in ["tracing_events", "network_events", "ptrace_events", "mmap_events", "mount_events", "resource_events"] {
            let n = Int(try query(["--data-dir", data], "SELECT count() FROM audit.\(table)").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            #expect(n > 0, "\(table) is empty")
        }
        let groups = try query(["--data-dir", data], "SELECT event_type, count() FROM audit.tracing_events GROUP BY event_type ORDER BY event_type")
        #expect(groups.contains("chmod\t") && groups.contains("execve\t") && groups.contains("open\t"))
    }

    @Test func runWritesToAClickHouseServer() throws {
        let server = try ClickHouseServer()
        // tracing filtered in the kernel to cat (one exact row below), as above.
        let config = "\(try makeTempDir(prefix: "runserver"))/run.yaml"
        try commFilterConfig(["tracing"], comms: ["cat"]).write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--duration", "4", "--config", config], environment: ["INFRASIGHT_CLICKHOUSE_URL": server.url])
        try agent.waitForStderr("infrasight: note: started: ")
        let pid = try spawnAndWait("/bin/cat", ["/etc/hostname"])
        let r = try agent.wait(timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("ClickHouse 18.16"))
        let row = try server.query("SELECT comm, event_type, return_code FROM audit.tracing_events WHERE pid = \(pid) AND filename = '/etc/hostname' FORMAT TSV")
        #expect(row == "cat\topen\t3\n")
        let viaCLI = try run(Paths.infrasight, ["query", "SELECT count() FROM audit.tracing_events WHERE pid = \(pid) AND filename = '/etc/hostname'"], environment: ["INFRASIGHT_CLICKHOUSE_URL": server.url])
        #expect(viaCLI.stdout == "1\n", "\(viaCLI.stderr)")
        // The server holds the mapped types: DateTime for DateTime64, String for JSON.
        let types = try server.query("SELECT name, type FROM system.columns WHERE database = 'audit' AND table = 'tracing_events' AND name IN ('wall_time_dt', 'container_labels_json') ORDER BY name FORMAT TSV")
        #expect(types == "container_labels_json\tString\nwall_time_dt\tDateTime\n")
    }

    @Test func schemaPrintsTheSameDDLAsTheSchemaFiles() throws {
        let r = try run(Paths.infrasight, ["schema", "print", "tracing_events"])
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("CREATE DATABASE IF NOT EXISTS audit;\n\nCREATE TABLE IF NOT EXISTS `audit`.`tracing_events` (\n  `pid` UInt32,\n  `uid` UInt32,"), "\(r.stdout)")
        #expect(r.stdout.contains("`container_labels_json` JSON,\n  `syscall` String"))
        let cluster = try run(Paths.infrasight, ["schema", "print", "--cluster", "prod"])
        #expect(cluster.stdout.contains("CREATE DATABASE IF NOT EXISTS audit ON CLUSTER prod;"))
        #expect(cluster.stdout.contains("CREATE TABLE IF NOT EXISTS `audit`.`tracing_events_local` ON CLUSTER prod ("), "\(cluster.stdout)")
        // The plugin's engine, replicated per shard, remembering enough blocks to recognise
        // a batch resent minutes later.
        #expect(cluster.stdout.contains("\n)\nENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/tracing_events', '{replica}') ORDER BY `wall_time_ms` SETTINGS replicated_deduplication_window = 10000;\n"), "\(cluster.stdout)")
        // The Distributed table has the columns and shards by a hash of the row: every
        // column but the JSON one (it does not hash on every version), in order.
        let columns = ["pid", "uid", "gid", "ppid", "user_pid", "user_ppid", "cgroup_id", "cgroup_name", "comm", "filename", "monotonic_ts_enter_ns", "monotonic_ts_exit_ns",
                       "return_code", "latency_ns", "event_type", "node_name", "user", "latency_ms", "wall_time_ms", "wall_time_dt", "container_id", "container_image",
                       "syscall", "argv", "flags", "mode", "fd", "start_time_ns", "parent_start_time_ns"]
        #expect(cluster.stdout.contains("CREATE TABLE IF NOT EXISTS `audit`.`tracing_events` ON CLUSTER prod (\n  `pid` UInt32,"), "\(cluster.stdout)")
        #expect(cluster.stdout.contains("\n)\nENGINE = Distributed(`prod`, `audit`, `tracing_events_local`, cityHash64(\(columns.map { "`\($0)`" }.joined(separator: ", "))));\n"), "\(cluster.stdout)")
        let refused = try run(Paths.infrasight, ["schema", "print", "--cluster", "a`b"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "infrasight: a cluster name is 1 to 128 characters without backquotes or control characters (got a`b)\n")
        let missing = try run(Paths.infrasight, ["schema", "print", "nosuch"])
        #expect(missing.status == 1)
        #expect(missing.stderr == "infrasight: no enabled plugin has a table nosuch\n")
    }

    @Test func schemaApplyCreatesTheTablesInEmbeddedClickHouse() throws {
        let data = try makeTempDir(prefix: "schemadata")
        let r = try run(Paths.infrasight, ["schema", "apply", "--data-dir", data])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("applied 6 tables to embedded ClickHouse at \(data): audit.mmap_events, audit.mount_events, audit.network_events, audit.ptrace_events, audit.resource_events, audit.tracing_events"))
        #expect(try query(["--data-dir", data], "SHOW TABLES FROM audit") == "mmap_events\nmount_events\nnetwork_events\nptrace_events\nresource_events\ntracing_events\n")
    }

    @Test func aMissingChdbLibraryIsOneLineSayingHowToInstallIt() throws {
        let data = try makeTempDir(prefix: "nolib")
        let r = try run(Paths.infrasight, ["query", "--data-dir", data, "SELECT 1"], environment: ["INFRASIGHT_CHDB_LIBRARY": "/nonexistent/_chdb.abi3.so"])
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("infrasight: embedded ClickHouse library /nonexistent/_chdb.abi3.so does not exist; install it with `sudo scripts/setup.sh`"))
        #expect(r.stderr.split(separator: "\n").count == 1)
    }
}
