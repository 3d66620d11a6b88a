import Foundation
import Glibc
import InfraSightCore
import InfraSightSchema
@testable import InfraSightStorage
import InfraSightTestSupport
import Testing

/// Rows through the real stores: embedded ClickHouse (chdb) and Debian's ClickHouse server.
@Suite(.serialized) struct StorageTests {
    /// One embedded engine per test process (ClickHouse holds one data directory per process).
    static let embedded: EmbeddedStore = {
        let dir = try! makeTempDir(prefix: "embedded")
        return try! EmbeddedStore(dataDir: dir, library: nil)
    }()

    static let typesTable = try! TableSchema(ddl: """
        CREATE TABLE IF NOT EXISTS audit.types_test (
          u64 UInt64, i64 Int64, u32 UInt32, f Float64, s String, n Nullable(String),
          d DateTime64(3), j JSON, seq UInt32
        ) ENGINE = MergeTree() ORDER BY seq
        """)

    /// Rows covering every type's edge: max/min integers, empty and non-UTF-8 strings, NULL.
    static func typedRows(_ count: Int = 4) -> [RowBuffer] {
        (0..<count).map { i in
            let row = RowBuffer(schema: typesTable, tableIndex: 0)
            row.reset()
            row.setUInt(0, i == 0 ? UInt64.max : UInt64(i))
            row.setInt(1, i == 0 ? Int64.min : -Int64(i))
            row.setUInt(2, UInt64(UInt32.max))
            row.setFloat(3, 0.5 + Double(i))
            switch i {
            case 0: row.setString(4, "")
            case 1: ([0x61, 0xFF, 0x62] as [UInt8]).withUnsafeBytes { row.setString(4, $0.baseAddress, 3) } // a\xFFb
            default: row.setString(4, "tab\there \\ \"q\" é")
            }
            if i % 2 == 0 { row.setNull(5) } else { row.setString(5, "present") }
            row.setInt(6, 1_795_310_611_824 + Int64(i))
            row.setString(7, "{\"app\":\"demo\",\"n\":\(i)}")
            row.setUInt(8, UInt64(i))
            return row
        }
    }

    static func batch(_ rows: [RowBuffer], as table: TableSchema) -> Batch {
        let encoder = RowBinaryEncoder()
        let encodings = UnsafeMutablePointer<RowBuffer.Encoding>.allocate(capacity: table.columns.count)
        defer { encodings.deallocate() }
        for (i, c) in table.columns.enumerated() { (encodings + i).initialize(to: RowBuffer.Encoding(c.type)) }
        for r in rows { encoder.encode(r, as: encodings) }
        return Batch(table: table, bytes: Data(encoder.buffer), rows: rows.count, id: UUID().uuidString, plugin: "test")
    }

    func text(_ data: Data) -> String { String(decoding: data, as: UTF8.self) }

    /// Several ClickHouse URLs: a comma starts a new one only before http:// or https://.
    @Test func severalURLsAreSplitWhereTheNextURLBegins() {
        #expect(HTTPStore.split("http://a:8123/") == ["http://a:8123/"])
        #expect(HTTPStore.split("http://a:8123/, https://u:p@b:8443/") == ["http://a:8123/", "https://u:p@b:8443/"])
        #expect(HTTPStore.split("http://u:pa,ss@a:8123/,http://b:8123/") == ["http://u:pa,ss@a:8123/", "http://b:8123/"])
    }

    /// Two ClickHouse servers as the nodes of one store: the second takes over while the
    /// first is down, and the first is used again once it answers.
    @Test func aStoreOfSeveralNodesMovesToTheNextAndBackToTheFirst() throws {
        let first = try ClickHouseServer(), second = try ClickHouseServer()
        defer { first.stop(); second.stop() }
        let store = try HTTPStore(url: "\(first.url),\(second.url)")
        store.firstNodeCheckInterval = 0.5
        #expect(store.endpoint.port == first.httpPort)
        first.stop()
        #expect(try store.query("SELECT 2", format: "TabSeparated") == Data("2\n".utf8))
        #expect(store.endpoint.port == second.httpPort)
        #expect(store.failovers.load(ordering: .relaxed) == 1)
        try first.start()
        usleep(600_000)
        #expect(try store.query("SELECT 3", format: "TabSeparated") == Data("3\n".utf8))
        #expect(store.endpoint.port == first.httpPort)
        #expect(store.failovers.load(ordering: .relaxed) == 2)
        // Every node down: "unavailable", which callers retry.
        first.stop()
        second.stop()
        do {
            _ = try store.query("SELECT 4", format: "TabSeparated")
            Issue.record("no error with every node down")
        } catch {
            #expect(error.retryable, "\(error)")
        }
    }

    @Test func everyTypeRoundTripsThroughEmbeddedClickHouse() throws {
        let store = Self.embedded
        let tables = try store.prepare([Self.typesTable])
        _ = try store.query("TRUNCATE TABLE audit.types_test", format: "TSV")
        try store.insert(Self.batch(Self.typedRows(), as: tables[0]))
        let out = text(try store.query("SELECT u64, i64, u32, f, s, n, d, seq FROM audit.types_test ORDER BY seq", format: "TSV"))
        #expect(out == """
            18446744073709551615\t-9223372036854775808\t4294967295\t0.5\t\t\\N\t2026-11-22 01:23:31.824\t0
            1\t-1\t4294967295\t1.5\ta\u{FFFD}b\tpresent\t2026-11-22 01:23:31.825\t1
            2\t-2\t4294967295\t2.5\ttab\\there \\\\ "q" é\t\\N\t2026-11-22 01:23:31.826\t2
            3\t-3\t4294967295\t3.5\ttab\\there \\\\ "q" é\tpresent\t2026-11-22 01:23:31.827\t3

            """)
        // Labels JSON is queryable by path on the embedded engine.
        let byPath = text(try store.query("SELECT j.app::String, count() FROM audit.types_test GROUP BY 1", format: "TSV"))
        #expect(byPath == "demo\t4\n")
        let count = text(try store.query("SELECT count() FROM audit.types_test FORMAT JSONEachRow", format: "TSV"))
        #expect(count.contains("\"count()\":\"4\"") || count.contains("\"count()\":4"))
    }

    @Test func nonSelectStatementsComeBackAsTSV() throws {
        _ = try Self.embedded.prepare([Self.typesTable])
        let tables = text(try Self.embedded.query("SHOW TABLES FROM audit", format: "TSV"))
        #expect(tables.split(separator: "\n").contains("types_test"))
        #expect(throws: StorageError.self) { try Self.embedded.query("SHOW TABLES FROM audit", format: "JSON") }
        do {
            _ = try Self.embedded.query("SELECT nosuchcolumn FROM audit.types_test", format: "TSV")
            Issue.record("no error")
        } catch {
            #expect(error.description.contains("UNKNOWN_IDENTIFIER"))
            #expect(!error.description.contains("\n"))
        }
    }

    /// The guarded session and the program's are separate chdb sessions: `SET readonly =
    /// 1` on one leaves the other writing (measured here through the real engine).
    @Test func theReadOnlySessionRefusesEveryWriteWhileTheProgramsSessionKeepsWriting() throws {
        let store = Self.embedded
        let tables = try store.prepare([Self.typesTable])
        #expect(text(try store.readOnlyQuery(ReadOnlyQuery("SELECT toString(getSetting('readonly'))"))) == "1\n")
        #expect(text(try store.query("SELECT toString(getSetting('readonly'))", format: "TSV")) == "0\n")
        // ClickHouse's own readonly, with no lexical check in front of it.
        let target = "\(try makeTempDir(prefix: "readonly"))/written"
        for sql in [
            "INSERT INTO FUNCTION file('\(target)', 'TSV') SELECT 1", "INSERT INTO audit.types_test (seq) VALUES (99)",
            "CREATE TABLE audit.readonly_test (x UInt8) ENGINE = Memory", "SET readonly = 0",
            "SELECT * FROM file('/etc/hostname', 'LineAsString')", "SELECT * FROM url('http://127.0.0.1:1/', TSV, 'a String')",
        ] {
            do {
                try store.engine.run(sql, readOnly: true)
                Issue.record("ran on the read-only session: \(sql)")
            } catch {
                #expect(error.description.hasSuffix("(READONLY)"), "\(sql): \(error)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: target))
        #expect(text(try store.query("EXISTS TABLE audit.readonly_test", format: "TSV")) == "0\n")
        let before = Int(text(try store.query("SELECT count() FROM audit.types_test", format: "TSV")).dropLast())!
        try store.insert(Self.batch(Self.typedRows(), as: tables[0]))
        let after = text(try store.readOnlyQuery(ReadOnlyQuery("SELECT count() AS n FROM audit.types_test", format: "JSONEachRow")))
        #expect(after == "{\"n\":\(before + 4)}\n")
        #expect(text(try store.readOnlyQuery(ReadOnlyQuery("SHOW TABLES FROM audit"))).split(separator: "\n").contains("types_test"))
        do {
            _ = try store.readOnlyQuery(ReadOnlyQuery("SHOW TABLES FROM audit", format: "JSON"))
            Issue.record("SHOW answered in JSON")
        } catch {
            #expect(error.description == "--format JSON needs a SELECT query; SHOW output is TSV only")
        }
    }

    @Test func embeddedDirectoriesAndScratchFilesArePrivateWhateverTheUmask() throws {
        let store = Self.embedded
        // makeTempDir made it 0755: opening the store tightened it in place.
        #expect(mode(store.engine.dataDir) == 0o700)
        #expect(mode(store.scratch) == 0o700)
        let old = umask(0o022)
        defer { umask(old) }
        let file = try store.writeScratch(Data([1, 2, 3]), suffix: "test")
        defer { unlink(file) }
        #expect(mode(file) == 0o600)
        #expect(FileManager.default.contents(atPath: file) == Data([1, 2, 3]))
    }

    @Test func aClickHouseServerRunsGuardedQueriesUnderReadonly() throws {
        let server = try ClickHouseServer()
        let store = try HTTPStore(url: server.url)
        #expect(text(try store.readOnlyQuery(ReadOnlyQuery("SELECT 1 AS x", format: "JSONEachRow"))) == "{\"x\":1}\n")
        #expect(text(try store.readOnlyQuery(ReadOnlyQuery("SELECT value FROM system.settings WHERE name = 'readonly'"))) == "1\n")
        #expect(text(try store.readOnlyQuery(ReadOnlyQuery("SHOW DATABASES FORMAT TSV"))).split(separator: "\n").contains("system"))
        // The server refuses a write and a setting change in the request readOnlyQuery sends.
        for attempt in ["CREATE DATABASE readonly_test", "SELECT 1 SETTINGS max_threads = 1"] {
            do {
                _ = try store.send(sql: "\(attempt)\nFORMAT TSV", body: nil, parameters: ["readonly": "1"])
                Issue.record("ran under readonly=1: \(attempt)")
            } catch {
                #expect(error.description.contains("Code: 164"), "\(attempt): \(error)")
            }
        }
        #expect(try server.query("SELECT count() FROM system.databases WHERE name = 'readonly_test'") == "0\n")
        // The limits travel with every statement, beside readonly=1, and bind it.
        let bounded = try HTTPStore(url: server.url, limits: QueryLimits(seconds: 1, maxResultRows: 10))
        for (sql, code) in [("SELECT count() FROM system.numbers", "Code: 159"), ("SELECT number FROM system.numbers LIMIT 100", "Code: 396")] {
            do {
                _ = try bounded.readOnlyQuery(ReadOnlyQuery(sql))
                Issue.record("ran past its limits: \(sql)")
            } catch {
                #expect(error.description.contains(code), "\(sql): \(error)")
            }
        }
        #expect(text(try bounded.readOnlyQuery(ReadOnlyQuery("SELECT number FROM system.numbers LIMIT 5"))) == "0\n1\n2\n3\n4\n")
    }

    /// A table whose rows age by `wall_time_dt`, as every plugin's table does.
    static let agingTable = try! TableSchema(ddl: """
        CREATE TABLE IF NOT EXISTS audit.retention_test (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime64(3))
        ENGINE = MergeTree() ORDER BY wall_time_ms
        """)

    /// Lines a store's retention said, kept for a test to read.
    final class Notes: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
        func take() -> [String] { lock.lock(); defer { lines.removeAll(); lock.unlock() }; return lines }
    }

    /// Embedded: retention is a TTL on the table's time column, set again only when the
    /// policy changes; a merge removes the expired rows; `forever` removes the TTL; a table
    /// without a time column has none.
    @Test func retentionIsATTLThatRemovesExpiredRowsOnTheEmbeddedEngine() throws {
        let store = Self.embedded
        let notes = Notes()
        store.retention.notice = { notes.add($0) }
        defer { store.retention.policy = .forever; store.retention.notice = { _ in } }
        func engineFull(_ name: String) throws -> String {
            text(try store.query("SELECT engine_full FROM system.tables WHERE database = 'audit' AND name = '\(name)'", format: "TabSeparated"))
        }
        store.retention.policy = RetentionPolicy(seconds: 7 * 86400)
        _ = try store.prepare([Self.agingTable])
        #expect(try engineFull("retention_test").contains(" TTL toDateTime(wall_time_dt) + toIntervalSecond(604800)"))
        #expect(notes.take() == ["audit.retention_test: rows are kept 7 days (TTL toDateTime(wall_time_dt) + toIntervalSecond(604800))"])
        _ = try store.prepare([Self.agingTable])
        #expect(notes.take() == [], "an unchanged policy alters nothing")

        _ = try store.query("""
            INSERT INTO audit.retention_test VALUES (1, 0, now64(3) - INTERVAL 8 DAY), (2, 0, now64(3) - INTERVAL 30 DAY),
              (3, 0, now64(3) - INTERVAL 6 DAY), (4, 0, now64(3))
            """, format: "TabSeparated")
        _ = try store.query("OPTIMIZE TABLE audit.retention_test FINAL", format: "TabSeparated")
        #expect(text(try store.query("SELECT groupArray(seq) FROM (SELECT seq FROM audit.retention_test ORDER BY seq)", format: "TabSeparated")) == "[3,4]\n")

        // Per table: this one kept 1 day, then forever (the TTL goes).
        store.retention.policy = RetentionPolicy(seconds: 7 * 86400, perTable: ["retention_test": 86400])
        _ = try store.prepare([Self.agingTable])
        #expect(try engineFull("retention_test").contains(" TTL toDateTime(wall_time_dt) + toIntervalSecond(86400)"))
        #expect(notes.take() == ["audit.retention_test: rows are kept 1 day (TTL toDateTime(wall_time_dt) + toIntervalSecond(86400))"])
        store.retention.policy = RetentionPolicy(seconds: 7 * 86400, perTable: ["retention_test": Int?.none])
        _ = try store.prepare([Self.agingTable])
        #expect(try !engineFull("retention_test").contains(" TTL "))
        #expect(notes.take() == ["audit.retention_test: rows are kept forever (TTL removed)"])

        // The built-in default (no storage.retention written) spares a table an earlier
        // release filled, saying so once; an empty or new table gets it.
        store.retention.policy = RetentionPolicy(seconds: 90 * 86400, sparesExistingTables: true)
        _ = try store.prepare([Self.agingTable])
        _ = try store.prepare([Self.agingTable])
        #expect(try !engineFull("retention_test").contains(" TTL "))
        #expect(notes.take() == ["audit.retention_test: made before retention existed, its rows are kept until storage.retention is set (new tables: 90 days)"])
        let fresh = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.retention_fresh (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime64(3)) ENGINE = MergeTree() ORDER BY seq")
        _ = try store.prepare([fresh])
        #expect(try engineFull("retention_fresh").contains(" TTL toDateTime(wall_time_dt) + toIntervalSecond(7776000)"))
        #expect(notes.take() == ["audit.retention_fresh: rows are kept 90 days (TTL toDateTime(wall_time_dt) + toIntervalSecond(7776000))"])

        // No time column: state, not events; never expires.
        let state = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.retention_state (k String, v UInt64) ENGINE = MergeTree() ORDER BY k")
        _ = try store.prepare([state])
        #expect(try !engineFull("retention_state").contains(" TTL "))
        #expect(notes.take() == [])
    }

    /// ClickHouse 18.16 has no TTL: expired rows go at prepare (and hourly after). A table
    /// InfraSight made (partitioned by day) loses each day whose rows all expired, whole;
    /// one an earlier release made (no partitions) gets a DELETE mutation on the time column.
    @Test func retentionDeletesExpiredRowsOnAServerWithoutTTL() throws {
        let server = try ClickHouseServer()
        let store = try HTTPStore(url: server.url)
        #expect(!store.supportsTTL)
        let notes = Notes()
        store.retention.notice = { notes.add($0) }
        let unpartitioned = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.retention_old (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime64(3)) ENGINE = MergeTree() ORDER BY wall_time_ms")
        _ = try server.query("CREATE DATABASE IF NOT EXISTS audit")
        _ = try server.query("CREATE TABLE audit.retention_old (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime) ENGINE = MergeTree() ORDER BY wall_time_ms")
        _ = try store.prepare([Self.agingTable, unpartitioned])
        for table in ["retention_test", "retention_old"] {
            _ = try server.query("INSERT INTO audit.\(table) VALUES (1, 0, now() - 8 * 86400), (2, 0, now() - 6 * 86400), (3, 0, now())")
        }
        // The built-in default deletes nothing on such a server (it cannot tell an
        // earlier release's rows from new ones); a retention the operator set does.
        store.retention.policy = RetentionPolicy(seconds: 7 * 86400, sparesExistingTables: true)
        _ = try store.prepare([Self.agingTable, unpartitioned])
        sleep(2)
        #expect(try server.query("SELECT count() FROM system.mutations WHERE table LIKE 'retention_%'") == "0\n")
        #expect(try server.query("SELECT count() FROM audit.retention_test") == "3\n")
        store.retention.policy = RetentionPolicy(seconds: 7 * 86400)
        _ = try store.prepare([Self.agingTable, unpartitioned])
        // Both run in the background: wait for them.
        try waitUntil("the expired rows' removal", timeout: 60) {
            try server.query("SELECT count() FROM system.mutations WHERE table = 'retention_old' AND is_done = 0") == "0\n"
                && server.query("SELECT count() FROM system.mutations WHERE table = 'retention_old'") == "1\n"
                && server.query("SELECT count() FROM audit.retention_test") == "2\n"
        }
        #expect(try server.query("SELECT groupArray(seq) FROM (SELECT seq FROM audit.retention_test ORDER BY seq)") == "[2,3]\n")
        #expect(try server.query("SELECT groupArray(seq) FROM (SELECT seq FROM audit.retention_old ORDER BY seq)") == "[2,3]\n")
        // The partitioned table: a whole day dropped, no rewrite; said in one line.
        #expect(try server.query("SELECT count() FROM system.mutations WHERE table = 'retention_test'") == "0\n")
        let lines = notes.take().filter { $0.hasPrefix("retention: dropped audit.retention_test's partition ") }
        #expect(lines.count == 1 && lines[0].hasSuffix(", whose rows are all older than 7 days"), "\(lines)")
    }

    static let budgetTable = try! TableSchema(ddl: """
        CREATE TABLE IF NOT EXISTS audit.budget_test (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime64(3))
        ENGINE = MergeTree() ORDER BY wall_time_ms
        """)

    /// storage.max_disk on the embedded engine: new tables are partitioned by day; over the
    /// budget whole parts go, oldest first by the newest row each holds (not by when they
    /// were inserted), until the store is under it; each table's newest part stays; each
    /// drop is one line and counted.
    @Test func theDiskBudgetDropsTheOldestPartsFirstOnTheEmbeddedEngine() throws {
        let store = Self.embedded
        let notes = Notes()
        store.budget.notice = { notes.add($0) }
        store.budget.limit = .bytes(1 << 50)
        defer { store.budget.limit = .none; store.budget.notice = { _ in } }
        _ = try store.prepare([Self.budgetTable])
        let engineFull = text(try store.query("SELECT engine_full FROM system.tables WHERE database = 'audit' AND name = 'budget_test'", format: "TabSeparated"))
        #expect(engineFull.contains("PARTITION BY toDate(wall_time_dt)"), "\(engineFull)")
        _ = try store.query("SYSTEM STOP MERGES audit.budget_test", format: "TabSeparated")
        defer { _ = try? store.query("SYSTEM START MERGES audit.budget_test", format: "TabSeparated") }
        // Six parts of 1,000 rows, H hours old (seq H*1000+n), inserted out of age order.
        for hours in [1, 6, 3, 5, 2, 4] {
            _ = try store.query("""
                INSERT INTO audit.budget_test SELECT \(hours) * 1000 + number, 0, now64(3) - INTERVAL \(hours) HOUR + number / 1000 FROM numbers(1000)
                """, format: "TabSeparated")
        }
        func bytes(_ hours: Int) throws -> Int64 {
            Int64(text(try store.query("SELECT bytes_on_disk FROM system.parts WHERE database = 'audit' AND table = 'budget_test' AND active AND name IN (SELECT _part FROM audit.budget_test WHERE seq = \(hours * 1000))", format: "TabSeparated")).trimmingCharacters(in: .whitespacesAndNewlines))!
        }
        let total = Int64(text(try store.query("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'audit' AND active", format: "TabSeparated")).trimmingCharacters(in: .whitespacesAndNewlines))!
        func hoursLeft() throws -> String {
            text(try store.query("SELECT arraySort(groupUniqArray(intDiv(seq, 1000))) FROM audit.budget_test", format: "TabSeparated"))
        }
        #expect(try hoursLeft() == "[1,2,3,4,5,6]\n")
        // Over by one byte less than the two oldest parts hold: those two go, no more.
        let (sixHours, fiveHours) = (try bytes(6), try bytes(5))
        store.budget.limit = .bytes(total - sixHours - fiveHours + 1)
        store.budget.enforce()
        #expect(try hoursLeft() == "[1,2,3,4]\n")
        #expect(store.budget.dropped["audit.budget_test"] == StoreBudget.Dropped(rows: 2000, parts: 2, bytes: UInt64(sixHours + fiveHours)))
        let lines = notes.take()
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.allSatisfy { $0.hasPrefix("disk budget (storage.max_disk ") && $0.contains("; dropped the oldest 1000 rows of audit.budget_test (part ") }, "\(lines)")
        // Nothing fits: everything but the part written last goes (whatever times its
        // rows claim: 4 hours old here), said once.
        store.budget.limit = .bytes(1)
        store.budget.enforce()
        store.budget.enforce()
        #expect(try hoursLeft() == "[4]\n")
        #expect(store.budget.dropped["audit.budget_test"]?.rows == 5000)
        let last = notes.take()
        #expect(last.filter { $0.contains("nothing older is left to drop") }.count == 1, "\(last)")
        #expect(last.filter { $0.contains("dropped the oldest 1000 rows") }.count == 3, "\(last)")
    }

    /// Event tables' time columns are compressed with Delta and LZ4 (ColumnCodecs), the
    /// seed's types untouched; a table an earlier release made gets them in place, its
    /// rows intact, said once; a state table keeps the default.
    @Test func eventTablesGetTheirCodecsInPlace() throws {
        let store = Self.embedded
        let notes = Notes()
        store.retention.notice = { notes.add($0) }
        defer { store.retention.notice = { _ in } }
        func codecs(_ table: String) throws -> String {
            text(try store.query("SELECT name, type, compression_codec FROM system.columns WHERE database = 'audit' AND table = '\(table)' ORDER BY position", format: "TabSeparated"))
        }
        let table = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.codec_test (seq UInt32, comm String, wall_time_ms Int64, wall_time_dt DateTime64(3), j JSON) ENGINE = MergeTree() ORDER BY wall_time_ms")
        _ = try store.query("CREATE TABLE audit.codec_test (seq UInt32, comm String, wall_time_ms Int64, wall_time_dt DateTime64(3), j JSON) ENGINE = MergeTree() ORDER BY wall_time_ms", format: "TabSeparated")
        _ = try store.query("INSERT INTO audit.codec_test (seq, comm, wall_time_ms, wall_time_dt) SELECT number, 'x', number, now64(3) FROM numbers(1000)", format: "TabSeparated")
        _ = try store.prepare([table])
        #expect(try codecs("codec_test") == """
            seq\tUInt32\t
            comm\tString\t
            wall_time_ms\tInt64\tCODEC(Delta(8), LZ4)
            wall_time_dt\tDateTime64(3)\tCODEC(Delta(8), LZ4)
            j\tJSON\t

            """)
        #expect(notes.take() == ["audit.codec_test: 2 time columns now compressed with Delta and LZ4: new parts at once, older ones as they merge"])
        #expect(text(try store.query("SELECT count(), sum(seq) FROM audit.codec_test", format: "TabSeparated")) == "1000\t499500\n")
        #expect(text(try store.query("SELECT count() FROM system.mutations WHERE table = 'codec_test'", format: "TabSeparated")) == "0\n", "metadata only: nothing rewritten")
        _ = try store.prepare([table])
        #expect(notes.take() == [], "nothing to change, nothing said")
        let state = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.codec_state (k String) ENGINE = MergeTree() ORDER BY k")
        _ = try store.prepare([state])
        #expect(try codecs("codec_state") == "k\tString\t\n")
    }

    /// docs/storage.md's path for a table an earlier release made without partitions:
    /// renamed aside, prepared again (partitioned by day, with codecs), its rows copied
    /// back, the old one dropped — no row lost.
    @Test func theDocumentedRepartitionPathKeepsEveryRow() throws {
        let store = Self.embedded
        func q(_ sql: String) throws -> String { text(try store.query(sql, format: "TabSeparated")) }
        let ddl = "CREATE TABLE IF NOT EXISTS audit.repart_test (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime64(3)) ENGINE = MergeTree() ORDER BY wall_time_ms"
        _ = try q(ddl.replacingOccurrences(of: "IF NOT EXISTS ", with: ""))
        // 150 days: more partitions than one insert may make by default (100).
        _ = try q("INSERT INTO audit.repart_test SELECT number, number, now64(3) - INTERVAL (number % 150) DAY FROM numbers(30000)")
        #expect(try q("SELECT partition_key FROM system.tables WHERE database = 'audit' AND name = 'repart_test'") == "\n")
        _ = try q("RENAME TABLE audit.repart_test TO audit.repart_test_old")
        _ = try store.prepare([try TableSchema(ddl: ddl)])
        _ = try q("INSERT INTO audit.repart_test SELECT * FROM audit.repart_test_old SETTINGS max_partitions_per_insert_block = 0")
        _ = try q("DROP TABLE audit.repart_test_old")
        #expect(try q("SELECT partition_key FROM system.tables WHERE database = 'audit' AND name = 'repart_test'") == "toDate(wall_time_dt)\n")
        #expect(try q("SELECT count(), sum(seq), uniqExact(_partition_id) FROM audit.repart_test") == "30000\t449985000\t150\n")
    }

    /// storage.max_disk on ClickHouse 18.16, which cannot drop a part: new tables are
    /// partitioned by day and the oldest days go whole; a table an earlier release made
    /// without partitions is said once and left alone; a percent budget, which needs
    /// `system.disks` (19.15), is said once and not kept.
    @Test func theDiskBudgetDropsTheOldestDaysOnClickHouse1816() throws {
        let server = try ClickHouseServer()
        let store = try HTTPStore(url: server.url)
        #expect(!store.dropsParts)
        let notes = Notes()
        store.budget.notice = { notes.add($0) }
        store.budget.limit = .bytes(1 << 50)
        _ = try server.query("CREATE DATABASE IF NOT EXISTS audit")
        _ = try server.query("CREATE TABLE audit.budget_old (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime) ENGINE = MergeTree() ORDER BY wall_time_ms")
        let old = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.budget_old (seq UInt32, wall_time_ms Int64, wall_time_dt DateTime64(3)) ENGINE = MergeTree() ORDER BY wall_time_ms")
        _ = try store.prepare([Self.budgetTable, old])
        #expect(try server.query("SELECT partition_key FROM system.tables WHERE database = 'audit' AND name = 'budget_test'") == "toDate(wall_time_dt)\n")
        for days in [2, 4, 1, 3] {
            _ = try server.query("INSERT INTO audit.budget_test SELECT \(days) * 1000 + number, 0, now() - \(days * 86400) FROM system.numbers LIMIT 1000")
            _ = try server.query("INSERT INTO audit.budget_old SELECT \(days) * 1000 + number, 0, now() - \(days * 86400) FROM system.numbers LIMIT 1000")
        }
        func daysLeft(_ table: String) throws -> String {
            try server.query("SELECT arraySort(groupUniqArray(intDiv(seq, 1000))) FROM audit.\(table)")
        }
        store.budget.limit = .bytes(1)
        store.budget.enforce()
        store.budget.enforce()
        // Every day but the partition written last (3 days old).
        #expect(try daysLeft("budget_test") == "[3]\n")
        #expect(try daysLeft("budget_old") == "[1,2,3,4]\n")
        #expect(store.budget.dropped["audit.budget_test"] == StoreBudget.Dropped(rows: 3000, parts: 3, bytes: store.budget.dropped["audit.budget_test"]!.bytes))
        let lines = notes.take()
        #expect(lines.filter { $0.contains("dropped the oldest 1000 rows of audit.budget_test (partition ") }.count == 3, "\(lines)")
        #expect(lines.filter { $0.hasPrefix("disk budget: audit.budget_old has no partitions (made by an earlier release)") }.count == 1, "\(lines)")
        store.budget.limit = .percent(80)
        store.budget.enforce()
        store.budget.enforce()
        #expect(notes.take() == ["storage.max_disk 80%: this store cannot say how full its disk is (ClickHouse 19.15 and later can); the budget is not kept — give a size (storage.max_disk: 50GB)"])
    }

    @Test func everyTypeRoundTripsThroughAnOldClickHouseServer() throws {
        let server = try ClickHouseServer()
        let store = try HTTPStore(url: server.url)
        #expect(store.version.major == 18)
        let tables = try store.prepare([Self.typesTable])
        // 18.16 has neither DateTime64 nor JSON: mapped, same columns in the same order.
        #expect(tables[0].columns.map(\.name) == Self.typesTable.columns.map(\.name))
        #expect(tables[0].columns[6].type == .dateTime)
        #expect(tables[0].columns[7].type == .string)
        try store.insert(Self.batch(Self.typedRows(), as: tables[0]))
        let out = try server.query("SELECT u64, i64, u32, f, s, n, toUnixTimestamp(d), j, seq FROM audit.types_test ORDER BY seq FORMAT TSV")
        #expect(out == """
            18446744073709551615\t-9223372036854775808\t4294967295\t0.5\t\t\\N\t1795310611\t{"app":"demo","n":0}\t0
            1\t-1\t4294967295\t1.5\ta\u{FFFD}b\tpresent\t1795310611\t{"app":"demo","n":1}\t1
            2\t-2\t4294967295\t2.5\ttab\\there \\\\ "q" é\t\\N\t1795310611\t{"app":"demo","n":2}\t2
            3\t-3\t4294967295\t3.5\ttab\\there \\\\ "q" é\tpresent\t1795310611\t{"app":"demo","n":3}\t3

            """)
        // A big batch goes gzip-compressed; rows written == rows read.
        let many = (0..<20_000).map { i -> RowBuffer in
            let r = Self.typedRows(2)[1]
            r.setUInt(8, UInt64(100 + i))
            return r
        }
        let big = Self.batch(many, as: tables[0])
        #expect(big.bytes.count > 64 * 1024)
        try store.insert(big)
        #expect(try server.query("SELECT count() FROM audit.types_test") == "20004\n")
    }

    @Test func aWrongPasswordOrUnreachableServerIsOneClearError() throws {
        let server = try ClickHouseServer()
        do {
            _ = try HTTPStore(url: "http://default:wrong@127.0.0.1:\(server.httpPort)/")
            Issue.record("no error")
        } catch {
            #expect(error.description.hasPrefix("ClickHouse at http://127.0.0.1:\(server.httpPort)/ refused the credentials for user default"))
            #expect(!error.retryable)
        }
        server.stop()
        do {
            _ = try HTTPStore(url: server.url)
            Issue.record("no error")
        } catch {
            #expect(error.description.hasPrefix("unavailable: cannot reach ClickHouse at http://127.0.0.1:\(server.httpPort)/"))
            #expect(error.retryable)
        }
        let cli = try run(Paths.infrasight, ["query", "--clickhouse-url", "http://default:wrong@127.0.0.1:\(server.httpPort)/", "SELECT 1"])
        #expect(cli.status == 1)
        #expect(cli.stderr.split(separator: "\n").count == 1)
        #expect(!cli.stderr.contains("wrong"), "the password must not be echoed")
        let bad = try run(Paths.infrasight, ["query", "--clickhouse-url", "ftp://x", "SELECT 1"])
        #expect(bad.status == 1)
        #expect(bad.stderr == "infrasight: --clickhouse-url must look like http://user:password@host:8123/ (got ftp://x)\n")
        // A URL that does not parse shows neither its credentials nor its query.
        let unparseable = try run(Paths.infrasight, ["query", "--clickhouse-url", "http://admin:S3cretPw@[bad/?password=QueryPw", "SELECT 1"])
        #expect(unparseable.status == 1)
        #expect(unparseable.stderr == "infrasight: --clickhouse-url must look like http://user:password@host:8123/ (got http://***@[bad/?***)\n", "\(unparseable.stderr)")
    }

    @Test func aServerStoppedDuringABatchGetsItOnceWhenItComesBack() throws {
        let server = try ClickHouseServer()
        let store = try HTTPStore(url: server.url)
        let tables = try store.prepare([Self.typesTable])
        let errors = ErrorLog()
        let writer = BatchWriter(store: store, maxRows: 1000, maxDelayMs: 50, queueMaxBytes: 64 << 20, onError: { errors.add($0) })
        let counters = StorageCounters(plugin: "test")
        writer.start()
        server.stop()
        // Hand the writer batches while the server is down.
        for _ in 0..<3 { try writer.enqueueForTesting(Self.batch(Self.typedRows(), as: tables[0]), counters: counters) }
        sleep(2)
        #expect(errors.lines.contains { $0.contains("retrying") })
        try server.start()
        writer.finish(timeout: 60)
        #expect(counters.stored.load(ordering: .relaxed) == 12)
        #expect(counters.storeDrops.load(ordering: .relaxed) == 0)
        #expect(try server.query("SELECT count(), uniqExact(seq) FROM audit.types_test FORMAT TSV") == "12\t4\n")
    }
}

final class ErrorLog: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    func add(_ s: String) { lock.lock(); _lines.append(s); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return _lines }
}
