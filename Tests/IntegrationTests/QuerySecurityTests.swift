import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// Who can read captured data and what a query can do, on the real binary: the query
/// socket of a running `infrasight run` (checked statements under ClickHouse's readonly,
/// SO_PEERCRED), and the modes of the data directory, its files and the agent's spool.
@Suite(.serialized) struct QuerySecurityTests {
    let refusedFile = "infrasight: refused: file() reads or writes files on this host; queries here read only the stored tables\n"
    let refusedOutfile = "infrasight: refused: INTO OUTFILE writes a file on this host; queries here only read (use --format and redirect the output)\n"

    /// `infrasight run` on `data` with only the tracing plugin, tracing only `comm`.
    static func startRun(data: String, comm: String, dir: String) throws -> BackgroundProcess {
        try writeTracingConfig(comm: comm, to: "\(dir)/run.yaml")
        let p = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(dir)/run.yaml", "--data-dir", data])
        try p.waitForStderr("infrasight: note: started: ")
        return p
    }

    static func query(_ data: String, _ sql: String, format: String? = nil, as user: UnprivilegedUser? = nil) throws -> ProcessResult {
        let args = ["query", "--data-dir", data] + (format.map { ["--format", $0] } ?? []) + [sql]
        return try user?.run(Paths.infrasight, args) ?? run(Paths.infrasight, args)
    }

    @Test func everyBypassOfTheQuerySocketIsRefusedWithANamedReasonAndReadsStillWork() throws {
        let (helper, marker, dir, comm) = try buildOpenLoop()
        let data = try makeTempDir(prefix: "querysec") // 0755: run tightens it
        let agent = try Self.startRun(data: data, comm: comm, dir: dir)
        #expect(mode(data) == 0o700)
        #expect(mode("\(data)/infrasight-tmp") == 0o700)
        #expect(mode("\(data)/query.sock") == 0o600)
        #expect(mode("\(data)/metadata/audit.sql") == 0o600, "the engine's own files, under umask 077")

        func refused(_ sql: String, format: String? = nil) throws -> String {
            let r = try Self.query(data, sql, format: format)
            #expect(r.status == 1, "\(sql): \(r.stdout)")
            #expect(r.stdout == "")
            return r.stderr
        }
        let outfile = "\(dir)/outfile"
        #expect(try refused("SHOW TABLES FROM audit INTO OUTFILE '\(outfile)'") == refusedOutfile)
        // Measured in chdb: with readonly = 1 in the query this still writes the file.
        #expect(try refused("SELECT 1 INTO OUTFILE '\(outfile)' SETTINGS readonly = 1") == refusedOutfile)
        #expect(!FileManager.default.fileExists(atPath: outfile))
        #expect(try refused("SELECT 1; CREATE TABLE audit.pwned (x UInt8) ENGINE = Memory")
            == "infrasight: refused: more than one statement (one statement per query; a ';' or \\G ends it)\n")
        #expect(try Self.query(data, "EXISTS TABLE audit.pwned").stdout == "0\n")
        #expect(try refused("SELECT * FROM file('/etc/shadow', 'LineAsString')") == refusedFile)
        #expect(try refused("SELECT file('/etc/shadow')") == refusedFile)
        #expect(try refused("SELECT * FROM `fi\\x6ce` /* */ ('/etc/shadow')") == refusedFile)
        #expect(try refused("SELECT * FROM url('http://127.0.0.1:1/', TSV, 'a String')")
            == "infrasight: refused: url() connects to other servers; queries here read only the stored tables\n")
        #expect(try refused("SELECT * FROM executable('id', TSV, 'a String')")
            == "infrasight: refused: executable() runs programs on this host; queries here read only the stored tables\n")
        #expect(try refused("SELECT 1", format: "TSV') SELECT 1 --")
            == "infrasight: refused: 'TSV') SELECT 1 --' is not a ClickHouse format name (letters, digits and _ only)\n")
        #expect(try refused("DROP TABLE audit.tracing_events")
            == "infrasight: refused: only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) are accepted here; got DROP\n")
        // What passes the checks still runs under ClickHouse's own readonly = 1.
        #expect(try refused("SELECT 1 SETTINGS readonly = 0").contains("Cannot modify 'readonly' setting in readonly mode"))
        #expect(try refused("SELECT * FROM format(TSV, 'x String', 'a')").hasPrefix("infrasight: refused: table function format() reaches beyond the stored tables"))
        #expect(try refused("SHOW TABLES FROM audit", format: "JSON") == "infrasight: --format JSON needs a SELECT query; SHOW output is TSV only\n")

        // Reads work, in any format, and a ';' inside a string is text.
        // The plugin's table, and detection's alerts and drift baseline.
        #expect(try Self.query(data, "SHOW TABLES FROM audit").stdout == "alerts\ndrift_baseline\ntracing_events\n")
        #expect(try Self.query(data, "SELECT 'a;b' AS s FORMAT JSONEachRow").stdout == "{\"s\":\"a;b\"}\n")
        #expect(try Self.query(data, "DESCRIBE TABLE audit.tracing_events", format: "CSV").stdout.hasPrefix("\"pid\",\"UInt32\","))
        // The program's own session still writes: rows traced after the guarded queries are stored.
        _ = try BackgroundProcess(helper, [marker, "50"]).wait()
        var count = ""
        try waitUntil("the 50 opens are stored", timeout: 30) {
            count = try Self.query(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'", format: "JSONEachRow").stdout
            return count == "{\"count()\":50}\n"
        }
        let r = try agent.interrupt(after: 0)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("queue drops 0, store drops 0, rows stored "), "\(r.stderr)")
    }

    /// `infrasight run` tracing nothing in particular, with `storage:` limits for queries.
    static func startRun(data: String, dir: String, limits: String) throws -> BackgroundProcess {
        try writeTracingConfig(comm: uniqueComm(), to: "\(dir)/run.yaml")
        let config = try String(contentsOfFile: "\(dir)/run.yaml", encoding: .utf8) + "storage:\n" + limits
        try config.write(toFile: "\(dir)/run.yaml", atomically: true, encoding: .utf8)
        let p = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(dir)/run.yaml", "--data-dir", data])
        try p.waitForStderr("infrasight: note: started: ")
        return p
    }

    @Test func readOnlyQueriesAreBoundedByTheEngineAndCannotRaiseTheirLimits() throws {
        let dir = try makeTempDir(prefix: "bounded")
        let data = try makeTempDir(prefix: "bounded-data")
        let agent = try Self.startRun(data: data, dir: dir, limits: """
              query_timeout: 2
              query_max_result_rows: 1000
              query_max_result_bytes: 1048576
              query_max_memory: 268435456

            """)
        func failed(_ sql: String) throws -> String {
            let r = try Self.query(data, sql)
            #expect(r.status == 1 && r.stdout.isEmpty, "\(sql): \(r.stdout.prefix(200))")
            return r.stderr
        }
        // A scan with no end stops at the time limit.
        #expect(try failed("SELECT count() FROM system.numbers").contains("(TIMEOUT_EXCEEDED)"))
        // A result past the row limit is refused by the engine, before it is all made.
        #expect(try failed("SELECT number FROM numbers(5000)").contains("(TOO_MANY_ROWS_OR_BYTES)"))
        #expect(try Self.query(data, "SELECT count() FROM (SELECT number FROM numbers(5000))").stdout == "5000\n")
        // The output itself is bounded, not only the engine's blocks: a constant column is
        // counted once in them but written on every row.
        #expect(try failed("SELECT repeat('x', 100000) AS s FROM numbers(100)")
            == "infrasight: the result is larger than 1048576 bytes (storage.query_max_result_bytes); narrow it (LIMIT, fewer or shorter columns)\n")
        #expect(try Self.query(data, "SELECT length(repeat('x', 100000)) AS s FROM numbers(2)").stdout == "100000\n100000\n")
        // Working memory past its limit.
        #expect(try failed("SELECT length(groupArray(randomString(1000))) FROM numbers(1000000)").contains("(MEMORY_LIMIT_EXCEEDED)"))
        // No statement raises a limit: they were fixed before readonly = 1.
        for setting in ["max_execution_time = 0", "max_result_rows = 0", "max_memory_usage = 0", "result_overflow_mode = 'break'"] {
            let stderr = try failed("SELECT number FROM numbers(5000) SETTINGS \(setting)")
            #expect(stderr.contains("in readonly mode"), "\(setting): \(stderr)")
        }
        let r = try agent.interrupt(after: 0)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func aSlowQueryDoesNotHoldUpOthersAndStopsWhenItsAskerGoesAway() throws {
        let dir = try makeTempDir(prefix: "abandoned")
        let data = try makeTempDir(prefix: "abandoned-data")
        // Long enough that only cancellation can end the slow query within this test.
        let agent = try Self.startRun(data: data, dir: dir, limits: "  query_timeout: 600\n")
        let marker = "slow_\(UInt32.random(in: 0...UInt32.max))"
        let running = "SELECT count() FROM system.processes WHERE query LIKE '%\(marker)%' AND query NOT LIKE '%system.processes%'"
        let slow = try BackgroundProcess(Paths.infrasight, ["query", "--data-dir", data, "SELECT count() AS \(marker) FROM system.numbers"])
        // Other queries are answered while it runs (each on a session of its own).
        try waitUntil("the slow query runs", timeout: 30) { try Self.query(data, running).stdout == "1\n" }
        for _ in 0..<5 { #expect(try Self.query(data, "SELECT 40 + 2").stdout == "42\n") }
        #expect(slow.isRunning, "the slow query ended on its own: \(slow.stderr)")
        // Its asker goes away: the query is stopped, long before its 600 s.
        slow.signal(SIGKILL)
        _ = slow.wait()
        try waitUntil("the abandoned query is stopped", timeout: 60) { try Self.query(data, running).stdout == "0\n" }
        let r = try agent.interrupt(after: 0)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func onlyRootAndTheOwnerOfTheDataDirectoryCanReadItOrQueryIt() throws {
        let owner = try UnprivilegedUser()
        defer { owner.remove() }
        let other = try UnprivilegedUser()
        defer { other.remove() }
        let (_, _, dir, comm) = try buildOpenLoop()
        let data = try makeTempDir(prefix: "querysec-owned")
        #expect(chown(data, owner.uid, owner.gid) == 0)
        let agent = try Self.startRun(data: data, comm: comm, dir: dir)
        let socket = "\(data)/query.sock"
        // The socket belongs to the directory's owner, so the owner can connect to it.
        #expect(ownerUID(of: socket) == owner.uid)
        #expect(try Self.query(data, "SELECT 1", as: owner).stdout == "1\n")
        #expect(try Self.query(data, "SELECT 1").stdout == "1\n")

        // Anyone else can neither list the directory, read a file in it, nor reach the socket.
        let listing = try other.run("/bin/ls", [data])
        #expect(listing.status != 0 && listing.stderr.contains("Permission denied"), "\(listing)")
        let reading = try other.run("/bin/cat", ["\(data)/metadata/audit.sql"])
        #expect(reading.status != 0 && reading.stderr.contains("Permission denied"), "\(reading)")
        let blocked = try Self.query(data, "SELECT 1", as: other)
        #expect(blocked.status == 1)
        #expect(blocked.stderr == "infrasight: cannot reach \(socket): Permission denied (only root and the owner of \(data) may query it)\n")

        // With the modes loosened by hand, the socket is reachable: the peer's credentials,
        // taken by the kernel at connect, still refuse.
        #expect(chmod(data, 0o711) == 0 && chmod(socket, 0o666) == 0)
        let refused = try Self.query(data, "SELECT 1", as: other)
        #expect(refused.status == 1)
        #expect(refused.stderr == "infrasight: refused: uid \(other.uid) may not query \(data); only root and its owner (uid \(owner.uid)) may\n")
        #expect(chmod(data, 0o700) == 0 && chmod(socket, 0o600) == 0)
        let r = try agent.interrupt(after: 0)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func theAgentsSpoolIsReadableOnlyByItsOwner() throws {
        let other = try UnprivilegedUser()
        defer { other.remove() }
        let (helper, marker, dir, comm) = try buildOpenLoop()
        try writeTracingConfig(comm: comm, to: "\(dir)/agent.yaml")
        let spool = "\(dir)/spool"
        #expect(mkdir(spool, 0o755) == 0 && chmod(spool, 0o755) == 0) // as an older version left it
        // No server listens there: every batch stays in the spool.
        let nowhere = try freeLoopbackPort()
        let agent = try BackgroundProcess(Paths.infrasight, [
            "agent", "--server", "127.0.0.1:\(nowhere)", "--config", "\(dir)/agent.yaml",
            "--spool-dir", spool, "--drain-timeout", "1",
        ])
        try agent.waitForStderr("infrasight: note: started: ")
        _ = try BackgroundProcess(helper, [marker, "200"]).wait()
        var batches: [String] = []
        try waitUntil("a batch is spooled", timeout: 30) {
            batches = try FileManager.default.contentsOfDirectory(atPath: spool).filter { $0.hasSuffix(".batch") }
            return !batches.isEmpty
        }
        #expect(mode(spool) == 0o700)
        for name in batches { #expect(mode("\(spool)/\(name)") == 0o600, "\(name)") }
        let listing = try other.run("/bin/ls", [spool])
        #expect(listing.status != 0 && listing.stderr.contains("Permission denied"), "\(listing)")
        let reading = try other.run("/bin/cat", ["\(spool)/\(batches[0])"])
        #expect(reading.status != 0 && reading.stderr.contains("Permission denied"), "\(reading)")
        let r = try agent.interrupt(after: 0)
        #expect(r.status == 0, "\(r.stderr)")
    }
}
