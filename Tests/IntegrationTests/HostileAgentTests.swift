import Foundation
import Glibc
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import InfraSightPipelineProto
import InfraSightSchema
import InfraSightTestSupport
import Testing

/// The server trusts no agent: a hand-driven gRPC client plays a hostile agent against
/// the real `infrasight server` (embedded ClickHouse) and every attack is refused with a
/// named reason, runs nothing, and leaves the server and its data serving the next agent.
@Suite(.serialized) struct HostileAgentTests {
    typealias Server = Fleet.Server

    /// Sends `messages` on one stream and returns the first `count` answers (fewer when
    /// the server ends the stream).
    static func converse(port: Int, token: String? = nil, _ messages: [Infrasight_V1_AgentMessage], expecting count: Int) async throws -> [Infrasight_V1_ServerMessage] {
        let transport = try HTTP2ClientTransport.Posix(
            target: ResolvableTargets.IPv4(addresses: [.init(host: "127.0.0.1", port: port)]), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            let pipeline = Infrasight_V1_Pipeline.Client(wrapping: client)
            var metadata: Metadata = [:]
            if let token { metadata.addString("Bearer \(token)", forKey: "authorization") }
            var options = CallOptions.defaults
            options.maxRequestMessageBytes = 32 << 20
            return try await pipeline.stream(
                metadata: metadata, options: options,
                requestProducer: { writer in
                    for message in messages { try await writer.write(message) }
                    // Hold the stream open until the answers are in (the call then ends
                    // and cancels this wait).
                    do { try await Task.sleep(nanoseconds: 60_000_000_000) } catch {}
                },
                onResponse: { response in
                    var answers: [Infrasight_V1_ServerMessage] = []
                    for try await message in response.messages {
                        answers.append(message)
                        if answers.count == count { break }
                    }
                    return answers
                })
        }
    }

    static func hello(node: String = "hostile-node", id: String = "hostile", tables: [(String, String)]) -> Infrasight_V1_AgentMessage {
        .with {
            $0.hello = .with { h in
                h.agentID = id
                h.nodeName = node
                h.version = "0"
                h.tables = tables.map { t in .with { $0.name = t.0; $0.ddl = t.1 } }
            }
        }
    }

    static let table = ("audit.hostile", "CREATE TABLE IF NOT EXISTS audit.hostile (a UInt32, node_name String) ENGINE = MergeTree ORDER BY a")

    /// A batch of `audit.hostile` rows (a, node_name).
    static func batch(_ rows: [(UInt32, String)], table: String = "audit.hostile", edit: (inout Infrasight_V1_Batch) -> Void = { _ in }) -> Infrasight_V1_AgentMessage {
        var bytes = Data()
        for (a, node) in rows {
            withUnsafeBytes(of: a.littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(UInt8(node.utf8.count))
            bytes.append(contentsOf: node.utf8)
        }
        var b = Infrasight_V1_Batch()
        b.batchID = UUID().uuidString.lowercased()
        b.table = table
        b.columns = [.with { $0.name = "a"; $0.type = "UInt32" }, .with { $0.name = "node_name"; $0.type = "String" }]
        b.rows = bytes
        b.rowCount = UInt64(rows.count)
        b.plugin = "hostile"
        edit(&b)
        return .with { $0.batch = b }
    }

    static func query(_ dataDir: String, _ sql: String) throws -> String {
        let r = try run(Paths.infrasight, ["query", "--data-dir", dataDir, sql])
        guard r.status == 0 else { throw TestFailure("query \(sql): \(r.stderr)") }
        return r.stdout
    }

    @Test func aHelloThatInjectsSQLIsRefusedWithANamedReasonAndRunsNothing() async throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let marker = "\(data)/../hostile-marker-\(getpid())"
        let server = try Server.start(store: ["--data-dir", data])
        let attacks: [(String, String, String)] = [
            ("audit.evil1", "CREATE TABLE audit.evil1 (`x String) ENGINE = File(TSV, '\(marker)') /*` String) ENGINE = MergeTree ORDER BY tuple()",
             "is not a plain identifier"),
            ("audit.evil2", "CREATE TABLE audit.evil2 (a String) ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM file('/etc/passwd', 'LineAsString')",
             "is not accepted in the engine clause"),
            ("audit.evil3", "CREATE TABLE audit.evil3 (a String) ENGINE = File(TSV, '\(marker)')", "character ''' is not accepted"),
            ("audit.evil4", "CREATE TABLE audit.evil4 (a String) ENGINE = Log", "engine Log is not accepted"),
            ("audit.evil5", "CREATE TABLE audit.evil5 (a String) ENGINE = MergeTree ORDER BY a; DROP TABLE audit.tracing_events", "character ';' is not accepted"),
            ("audit.evil6", "CREATE TABLE audit.evil6 (a String) ENGINE = MergeTree ORDER BY a SETTINGS storage_policy = 1", "setting storage_policy is not accepted"),
            ("audit.evil7", "CREATE TABLE audit.evil7 (a String) ENGINE = MergeTree ORDER BY (a, readFile(a))", "function readFile is not accepted"),
            ("audit.evil8", "CREATE TABLE audit.evil8 (a Array(String)) ENGINE = MergeTree ORDER BY tuple()", "unsupported type Array(String)"),
            ("infrasight.pipeline_batches", "CREATE TABLE infrasight.pipeline_batches (batch_id String) ENGINE = MergeTree ORDER BY batch_id",
             "agents' tables live in the database audit"),
            ("system.evil", "CREATE TABLE system.evil (a String) ENGINE = MergeTree ORDER BY a", "agents' tables live in the database audit"),
            ("audit.other", "CREATE TABLE audit.evil9 (a String) ENGINE = MergeTree ORDER BY a", "the DDL declared for audit.other creates audit.evil9"),
        ]
        for (name, ddl, reason) in attacks {
            let answers = try await Self.converse(port: server.port, [Self.hello(tables: [(name, ddl)])], expecting: 1)
            let refusal = try #require(answers.first?.refusal, "\(name): \(answers)")
            #expect(refusal.fatal)
            #expect(refusal.reason.contains(reason), "\(name): \(refusal.reason)")
            #expect(!refusal.reason.contains("root:"), "\(refusal.reason)")
        }
        #expect(!FileManager.default.fileExists(atPath: marker))
        let tables = try Self.query(data, "SELECT database || '.' || name FROM system.tables WHERE database IN ('audit', 'infrasight') ORDER BY 1")
        // Only the server's own tables: its ledger, and detection's alerts and drift baseline.
        #expect(tables == "audit.alerts\naudit.drift_baseline\ninfrasight.pipeline_batches\n", "\(tables)")

        // The server is still there for an honest agent.
        let answers = try await Self.converse(port: server.port, [Self.hello(tables: [Self.table]), Self.batch([(7, "n")])], expecting: 2)
        #expect(answers.count == 2 && answers[0].welcome.serverVersion != "" && answers[1].ack.rowsStored == 1, "\(answers)")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.contains("refused agent hostile at"), "\(s.stderr)")
        #expect(try Self.query(data, "SELECT count() FROM audit.hostile") == "1\n")
    }

    /// An agent's PARTITION BY and TTL are not the store's policy: one partition per row
    /// would swamp the server, and a table declared first with a one-second TTL would
    /// expire every other agent's rows in it. The server keeps its own: rows partitioned by
    /// day on their time column, and storage.retention's TTL.
    @Test func anAgentsPartitionKeyAndTTLAreReplacedByTheServersPolicy() async throws {
        let data = try makeTempDir(prefix: "hostile-policy")
        let server = try Server.start(store: ["--data-dir", data])
        let ddl = """
            CREATE TABLE IF NOT EXISTS audit.hostile_policy (a UInt32, node_name String, wall_time_dt DateTime64(3))
            ENGINE = MergeTree PARTITION BY a ORDER BY a TTL toDateTime(wall_time_dt) + INTERVAL 1 SECOND
            """
        var rows = Data()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for a in [UInt32(1), 2, 3] {
            withUnsafeBytes(of: a.littleEndian) { rows.append(contentsOf: $0) }
            rows.append(1)
            rows.append(contentsOf: "n".utf8)
            withUnsafeBytes(of: now.littleEndian) { rows.append(contentsOf: $0) }
        }
        let batch = Self.batch([], table: "audit.hostile_policy") { b in
            b.columns.append(.with { $0.name = "wall_time_dt"; $0.type = "DateTime64(3)" })
            b.rows = rows
            b.rowCount = 3
        }
        let answers = try await Self.converse(port: server.port, [Self.hello(tables: [("audit.hostile_policy", ddl)]), batch], expecting: 2)
        #expect(answers.count == 2 && answers[1].ack.rowsStored == 3, "\(answers)")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        let engine = try Self.query(data, "SELECT engine_full FROM system.tables WHERE database = 'audit' AND name = 'hostile_policy'")
        #expect(engine.contains("PARTITION BY toDate(wall_time_dt)"), "\(engine)")
        #expect(engine.contains(" TTL toDateTime(wall_time_dt) + toIntervalSecond(7776000)") && !engine.contains("INTERVAL 1 SECOND") && !engine.contains("toIntervalSecond(1)"), "\(engine)")
        #expect(try Self.query(data, "SELECT uniqExact(partition_id) FROM system.parts WHERE database = 'audit' AND table = 'hostile_policy' AND active") == "1\n")
        #expect(try Self.query(data, "SELECT count() FROM audit.hostile_policy") == "3\n")
    }

    /// The DDL InfraSight ships for `table` (schema/), as its own code writes it.
    static func shipped(_ table: String) throws -> String {
        try TableSchema(ddl: String(contentsOfFile: "\(Paths.packageRoot)/schema/\(table).sql", encoding: .utf8)).statement
    }

    /// The server's own tables are no agent's: detection's alerts and drift baseline are
    /// refused by name, with their real DDL or any other, and nothing reaches them.
    @Test func theServersOwnTablesAreRefusedByName() async throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let server = try Server.start(store: ["--data-dir", data])
        let alerts = "table audit.alerts is refused: it is detection's alerts table, which only the server writes"
        let baseline = "table audit.drift_baseline is refused: it is drift detection's baseline, which only the server writes"
        let attacks: [(String, String, String)] = [
            ("audit.alerts", try Self.shipped("alerts"), alerts),
            ("audit.drift_baseline", try Self.shipped("drift_baseline"), baseline),
            // A declaration that would add a column to the alerts table.
            ("audit.alerts", "CREATE TABLE audit.alerts (rule String, output String, forged String) ENGINE = MergeTree ORDER BY rule", alerts),
        ]
        // A forged alert, in columns the alerts table has.
        var row = Data()
        for text in ["forged_rule", "forged"] {
            row.append(UInt8(text.utf8.count))
            row.append(contentsOf: text.utf8)
        }
        for (name, ddl, reason) in attacks {
            let forged = Self.batch([], table: name) {
                $0.columns = [.with { $0.name = "rule"; $0.type = "String" }, .with { $0.name = "output"; $0.type = "String" }]
                $0.rows = row
                $0.rowCount = 1
            }
            let answers = try await Self.converse(port: server.port, [Self.hello(tables: [Self.table, (name, ddl)]), forged], expecting: 2)
            #expect(answers.count == 1 && answers[0].refusal.fatal, "\(name): \(answers)")
            #expect(answers.first?.refusal.reason == reason, "\(name): \(answers)")
        }
        // An honest agent is still served.
        let honest = try await Self.converse(port: server.port, [Self.hello(tables: [Self.table]), Self.batch([(7, "n")])], expecting: 2)
        #expect(honest.last?.ack.rowsStored == 1, "\(honest)")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.components(separatedBy: "which only the server writes").count - 1 == attacks.count, "\(s.stderr)")
        #expect(try Self.query(data, "SELECT (SELECT count() FROM audit.alerts), (SELECT count() FROM audit.drift_baseline)") == "0\t0\n")
        #expect(try Self.query(data, "SELECT count(), countIf(name = 'forged') FROM system.columns WHERE database = 'audit' AND table = 'alerts'") == "14\t0\n")
    }

    /// One agent's declaration never changes what another's batches are checked against:
    /// node A's two-column tracing_events, declared before node B connects (it creates
    /// the table; B's hello adds the rest) and again while B streams, leaves every row of
    /// B, a real agent with the full declaration, stored; and A's own rows too.
    @Test func aNarrowDeclarationOfASharedTableDoesNotChangeAnotherAgentsBatches() async throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "hostile-data")
        let server = try Server.start(store: ["--data-dir", data])
        let narrow = ("audit.tracing_events", "CREATE TABLE audit.tracing_events (pid UInt32, filename String) ENGINE = MergeTree ORDER BY pid")
        let fromA = { (n: UInt32) in
            Self.batch([(n, "/forged-by-a")], table: "audit.tracing_events") {
                $0.columns = [.with { $0.name = "pid"; $0.type = "UInt32" }, .with { $0.name = "filename"; $0.type = "String" }]
            }
        }
        let first = try await Self.converse(port: server.port, [Self.hello(node: "node-a", tables: [narrow]), fromA(1)], expecting: 2)
        #expect(first.last?.ack.rowsStored == 1, "\(first)")

        let b = try Fleet.agent(port: server.port, spool: "\(dir)/spool", dir: dir)
        try b.waitForStderr("connected to server", timeout: 30)
        let again = try await Self.converse(port: server.port, [Self.hello(node: "node-a", tables: [narrow]), fromA(2)], expecting: 2)
        #expect(again.last?.ack.rowsStored == 1, "\(again)")
        try Fleet.openLoop(helper, marker, 1000)
        let r = try b.interrupt(after: 1.5)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try FleetTests.checkConservation(r, total: 1000) == 1000)
        #expect(r.stderr.contains("rows delivered 1000, rows refused by the server 0, spool evicted 0\n"), "\(r.stderr)")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(!s.stderr.contains("refused"), "\(s.stderr)")
        #expect(s.stderr.contains("table audit.tracing_events: added columns uid UInt32, gid UInt32,"), "\(s.stderr)")
        #expect(try Self.query(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == "1000\n")
        #expect(try Self.query(data, "SELECT groupArray(pid) FROM (SELECT pid FROM audit.tracing_events WHERE filename = '/forged-by-a' ORDER BY pid)") == "[1,2]\n")
    }

    @Test func derivedColumnDeclarationsFromTheWireAreCheckedLikeTheDDL() async throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let server = try Server.start(store: ["--data-dir", data])
        let cases: [((inout Infrasight_V1_DerivedColumn) -> Void, String)] = [
            ({ $0.column = "node_name"; $0.source = "a"; $0.kind = "shell_command" }, "derived column node_name has the unknown kind 'shell_command'"),
            ({ $0.column = "x) ENGINE = Log"; $0.source = "a"; $0.kind = "milliseconds_from_nanoseconds" }, "not plain names"),
            ({ $0.column = "node_name"; $0.source = "a"; $0.kind = "code_name"; $0.codeTable = "etc_passwd" }, "cannot be computed here"),
        ]
        for (edit, reason) in cases {
            var hello = Self.hello(tables: [Self.table])
            var derived = Infrasight_V1_DerivedColumn()
            edit(&derived)
            hello.hello.tables[0].derivedColumns = [derived]
            let answers = try await Self.converse(port: server.port, [hello], expecting: 1)
            let refusal = try #require(answers.first?.refusal, "\(answers)")
            #expect(refusal.fatal)
            #expect(refusal.reason.contains(reason), "\(refusal.reason)")
        }
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
    }

    @Test func batchesThatLieAreRefusedOneAtATimeAndTheStreamGoesOn() async throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let server = try Server.start(store: ["--data-dir", data])
        let attacks: [(Infrasight_V1_AgentMessage, String)] = [
            (Self.batch([(1, "n")]) { $0.rowCount = UInt64(1) << 63 }, "claims 9223372036854775808 rows in 6 bytes"),
            (Self.batch([(1, "n")]) { $0.rowCount = .max }, "claims 18446744073709551615 rows"),
            (Self.batch([]) { $0.columns = []; $0.rowCount = 1 << 40 }, "batch has 0 columns"),
            (Self.batch([(1, "n")]) { $0.rows.removeLast(2) }, "malformed batch: row 0 ends inside column node_name"),
            (Self.batch([(1, "n")]) { $0.rows.append(0) }, "malformed batch: 1 bytes after 1 rows"),
            (Self.batch([(1, "n")]) { $0.rows = Data(count: 9 << 20); $0.rowCount = 1 }, "batch of 9437184 bytes is over the limit"),
            (Self.batch([(1, "n")], table: "audit.tracing_events"), "a table this agent did not declare"),
            (Self.batch([(1, "n")], table: "infrasight.pipeline_batches"), "a table this agent did not declare"),
            (Self.batch([(1, "n")], table: "audit.alerts"), "a table this agent did not declare"),
            (Self.batch([(1, "n")]) { $0.columns[0].name = "a) ENGINE = Log --" }, "is not a plain name with a supported type"),
            (Self.batch([(1, "n")]) { $0.batchID = "'; DROP TABLE audit.hostile; --" }, "is not a UUID"),
        ]
        var messages = [Self.hello(tables: [Self.table])]
        messages += attacks.map(\.0)
        messages.append(Self.batch([(1, "a"), (2, "b"), (3, "c")]))
        let answers = try await Self.converse(port: server.port, messages, expecting: messages.count)
        try #require(answers.count == messages.count, "\(answers)")
        #expect(answers[0].welcome.serverVersion != "")
        for (i, (message, reason)) in attacks.enumerated() {
            let refusal = answers[i + 1].refusal
            #expect(!refusal.fatal)
            #expect(refusal.batchID == String(message.batch.batchID.prefix(64)))
            #expect(refusal.reason.contains(reason), "\(i): \(refusal.reason)")
        }
        #expect(answers.last?.ack.rowsStored == 3, "\(answers.last!)")
        #expect(try Self.query(data, "SELECT count(), sum(a) FROM audit.hostile") == "3\t6\n")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.components(separatedBy: "refused a batch from agent hostile").count - 1 == attacks.count, "\(s.stderr)")
    }

    @Test func aPerAgentTokenNamesTheAgentAndItsRowsAndAForgedNodeIsRefused() async throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let dir = try makeTempDir(prefix: "hostile-tokens")
        try "# name token\nnode-a aaaaaaaaaaaaaaaaaaaaaaaa\nnode-b bbbbbbbbbbbbbbbbbbbbbbbb\n".write(toFile: "\(dir)/agents", atomically: true, encoding: .utf8)
        chmod("\(dir)/agents", 0o600)
        let server = try Server.start(store: ["--data-dir", data], extra: ["--agent-tokens", "\(dir)/agents"])
        // node-a's token, claiming to be node-b.
        let forged = try await Self.converse(port: server.port, token: "aaaaaaaaaaaaaaaaaaaaaaaa", [Self.hello(node: "node-b", tables: [Self.table])], expecting: 1)
        #expect(forged.first?.refusal.reason == "the agent says it is node 'node-b' but its token belongs to 'node-a'", "\(forged)")
        // No token, and an unknown one.
        for token in [nil, "cccccccccccccccccccccccc"] as [String?] {
            await #expect(throws: RPCError.self) {
                _ = try await Self.converse(port: server.port, token: token, [Self.hello(node: "node-a", tables: [Self.table])], expecting: 1)
            }
        }
        // node-a as itself, its rows claiming node-b: stored as node-a.
        let honest = try await Self.converse(port: server.port, token: "aaaaaaaaaaaaaaaaaaaaaaaa", [Self.hello(node: "node-a", tables: [Self.table]), Self.batch([(1, "node-b"), (2, "node-b")])], expecting: 2)
        #expect(honest.last?.ack.rowsStored == 2, "\(honest)")
        #expect(try Self.query(data, "SELECT node_name, count() FROM audit.hostile GROUP BY node_name") == "node-a\t2\n")
        #expect(try Self.query(data, "SELECT DISTINCT agent_id FROM infrasight.pipeline_batches") == "node-a\n")
        let s = try server.stop()
        #expect(s.stderr.contains("refused agent hostile at") && s.stderr.contains("its token belongs to 'node-a'"), "\(s.stderr)")
        #expect(s.stderr.contains("refused agent at") && s.stderr.contains("a wrong bearer token") && s.stderr.contains("no bearer token"), "\(s.stderr)")
        #expect(!s.stderr.contains("aaaaaaaaaaaaaaaa"), "a token reached the log")
    }

    /// Beside per-agent tokens, a shared token admits agents that name themselves: never
    /// with a name the agent tokens file lists, in the hello or in their rows.
    @Test func aSharedTokenBesideAgentTokensCannotClaimAListedName() async throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let dir = try makeTempDir(prefix: "hostile-tokens")
        try "node-a aaaaaaaaaaaaaaaaaaaaaaaa\nnode-b bbbbbbbbbbbbbbbbbbbbbbbb\n".write(toFile: "\(dir)/agents", atomically: true, encoding: .utf8)
        try "shared-shared-shared-shared\n".write(toFile: "\(dir)/shared", atomically: true, encoding: .utf8)
        for file in ["agents", "shared"] { chmod("\(dir)/\(file)", 0o600) }
        let server = try Server.start(store: ["--data-dir", data], extra: ["--agent-tokens", "\(dir)/agents", "--token-file", "\(dir)/shared"])
        let shared = "shared-shared-shared-shared"
        let asNode = try await Self.converse(port: server.port, token: shared, [Self.hello(node: "node-b", tables: [Self.table])], expecting: 1)
        #expect(asNode.first?.refusal.fatal == true)
        #expect(asNode.first?.refusal.reason == "the agent gives the node 'node-b' without its token, but the agent tokens file lists node-b: only node-b's own token may use that name", "\(asNode)")
        let asID = try await Self.converse(port: server.port, token: shared, [Self.hello(node: "elsewhere", id: "node-a", tables: [Self.table])], expecting: 1)
        #expect(asID.first?.refusal.reason == "the agent gives the agent id 'node-a' without its token, but the agent tokens file lists node-a: only node-a's own token may use that name", "\(asID)")
        // A name of its own is served; its rows get that name, even those claiming node-a.
        let own = try await Self.converse(port: server.port, token: shared, [Self.hello(node: "shared-1", tables: [Self.table]), Self.batch([(1, "node-a"), (2, "shared-1")])], expecting: 2)
        #expect(own.last?.ack.rowsStored == 2, "\(own)")
        // node-b's own token still makes it node-b.
        let b = try await Self.converse(port: server.port, token: "bbbbbbbbbbbbbbbbbbbbbbbb", [Self.hello(node: "node-b", tables: [Self.table]), Self.batch([(3, "node-b")])], expecting: 2)
        #expect(b.last?.ack.rowsStored == 1, "\(b)")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.components(separatedBy: "without its token, but the agent tokens file lists").count - 1 == 2, "\(s.stderr)")
        #expect(!s.stderr.contains(shared) && !s.stderr.contains("bbbbbbbbbbbbbbbb"), "a token reached the log")
        #expect(try Self.query(data, "SELECT node_name, count(), sum(a) FROM audit.hostile GROUP BY node_name ORDER BY node_name") == "node-b\t1\t3\nshared-1\t2\t3\n")
        #expect(try Self.query(data, "SELECT agent_id, count() FROM infrasight.pipeline_batches GROUP BY agent_id ORDER BY agent_id") == "hostile\t1\nnode-b\t1\n")
    }

    @Test func aClientCertificateNamesTheAgentAndAForgedNodeIsRefused() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        try Fleet.makeCertificates(dir) // agent1.pem: CN=agent1, SAN DNS:localhost
        let data = try makeTempDir(prefix: "hostile-data")
        let server = try Server.start(store: ["--data-dir", data], extra: ["--tls-cert", "\(dir)/server.pem", "--tls-key", "\(dir)/server.key", "--tls-ca", "\(dir)/ca1.pem", "--cert-identity"])
        let tls = ["--tls-ca", "\(dir)/ca1.pem", "--tls-cert", "\(dir)/agent1.pem", "--tls-key", "\(dir)/agent1.key"]
        let forger = try Fleet.agent(port: server.port, spool: "\(dir)/spool-f", extra: ["--duration", "30"] + tls, environment: ["NODE_NAME": "somebody-else"], dir: dir)
        let f = try forger.wait(timeout: 120)
        #expect(f.status == 1)
        #expect(f.stderr.contains("the agent says it is node 'somebody-else' but its certificate names localhost, agent1"), "\(f.stderr)")

        let member = try Fleet.agent(port: server.port, spool: "\(dir)/spool", extra: tls, environment: ["NODE_NAME": "agent1"], dir: dir)
        try member.waitForStderr("connected to server", timeout: 30)
        try Fleet.openLoop(helper, marker, 100)
        let m = try member.interrupt(after: 1.5)
        #expect(m.status == 0, "\(m.stderr)")
        let s = try server.stop()
        #expect(s.stderr.contains("refused agent") && s.stderr.contains("somebody-else"), "\(s.stderr)")
        #expect(try Self.query(data, "SELECT node_name, count() FROM audit.tracing_events WHERE filename = '\(marker)' GROUP BY node_name") == "agent1\t100\n")
    }

    @Test func theServerStaysOnLoopbackUnlessEveryAgentMustAuthenticateOrItIsToldItIsInsecure() throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let exposed = try run(Paths.infrasight, ["server", "--listen", "0.0.0.0:0", "--data-dir", data, "--duration", "1"])
        #expect(exposed.status == 2)
        #expect(exposed.stderr == "infrasight: refusing to listen on 0.0.0.0:0 in plaintext with no agent authentication: anyone who reaches it could write rows; add --token-file, --agent-tokens or --tls-ca (mutual TLS), or --insecure to accept that\n")
        // TLS alone encrypts: anyone can still open a TLS connection and write rows.
        let dir = try makeTempDir(prefix: "hostile-secret")
        try Fleet.makeCertificates(dir)
        let tls = ["--tls-cert", "\(dir)/server.pem", "--tls-key", "\(dir)/server.key"]
        let tlsOnly = try run(Paths.infrasight, ["server", "--listen", "0.0.0.0:0", "--data-dir", data, "--duration", "1"] + tls)
        #expect(tlsOnly.status == 2)
        #expect(tlsOnly.stderr == "infrasight: refusing to listen on 0.0.0.0:0 with TLS but no agent authentication (TLS alone encrypts, it does not tell who the agent is): anyone who reaches it could write rows; add --token-file, --agent-tokens or --tls-ca (mutual TLS), or --insecure to accept that\n")
        // The same from the config file alone.
        try "server: { listen: \"0.0.0.0:0\", tls_cert: \(dir)/server.pem, tls_key: \(dir)/server.key }\n".write(toFile: "\(dir)/server.yaml", atomically: true, encoding: .utf8)
        let configured = try run(Paths.infrasight, ["server", "--config", "\(dir)/server.yaml", "--data-dir", data, "--duration", "1"])
        #expect(configured.status == 2)
        #expect(configured.stderr == tlsOnly.stderr, "\(configured.stderr)")
        // --insecure (or server.insecure) overrides, and the log says so.
        let warning = "--insecure: listening on 0.0.0.0:0 with no agent authentication: anyone who reaches it can write rows"
        let insecure = try run(Paths.infrasight, ["server", "--listen", "0.0.0.0:0", "--data-dir", data, "--duration", "1", "--insecure"])
        #expect(insecure.status == 0, "\(insecure.stderr)")
        #expect(insecure.stderr.contains(warning) && insecure.stderr.contains("listening on 0.0.0.0:"), "\(insecure.stderr)")
        try "server: { listen: \"0.0.0.0:0\", tls_cert: \(dir)/server.pem, tls_key: \(dir)/server.key, insecure: true }\n".write(toFile: "\(dir)/insecure.yaml", atomically: true, encoding: .utf8)
        let insecureTLS = try run(Paths.infrasight, ["server", "--config", "\(dir)/insecure.yaml", "--data-dir", data, "--duration", "1"])
        #expect(insecureTLS.status == 0, "\(insecureTLS.stderr)")
        #expect(insecureTLS.stderr.contains(warning) && insecureTLS.stderr.contains("listening on 0.0.0.0:") && insecureTLS.stderr.contains("(TLS)"), "\(insecureTLS.stderr)")
        // Client certificates from --tls-ca authenticate every agent: no override needed.
        let mutual = try run(Paths.infrasight, ["server", "--listen", "0.0.0.0:0", "--data-dir", data, "--duration", "1", "--tls-ca", "\(dir)/ca1.pem"] + tls)
        #expect(mutual.status == 0, "\(mutual.stderr)")
        #expect(mutual.stderr.contains("(mutual TLS)") && !mutual.stderr.contains("no agent authentication"), "\(mutual.stderr)")
        // The default address is loopback.
        let defaults = try run(Paths.infrasight, ["server", "--data-dir", data, "--duration", "1"])
        #expect(defaults.stderr.contains("listening on 127.0.0.1:50051") || defaults.stderr.contains("cannot listen on 127.0.0.1:50051"), "\(defaults.stderr)")

        // A token over plaintext beyond loopback: allowed, and said.
        try "sesame-sesame-sesame\n".write(toFile: "\(dir)/token", atomically: true, encoding: .utf8)
        chmod("\(dir)/token", 0o600)
        let token = try run(Paths.infrasight, ["server", "--listen", "0.0.0.0:0", "--data-dir", data, "--duration", "1", "--token-file", "\(dir)/token"])
        #expect(token.status == 0, "\(token.stderr)")
        #expect(token.stderr.contains("bearer tokens travel in plaintext") && !token.stderr.contains("no agent authentication"), "\(token.stderr)")

        // Secrets others can read are refused, on both sides.
        chmod("\(dir)/token", 0o644)
        let loose = try run(Paths.infrasight, ["server", "--data-dir", data, "--duration", "1", "--token-file", "\(dir)/token"])
        #expect(loose.status == 2)
        #expect(loose.stderr == "infrasight: the token file \(dir)/token is accessible by group or others (mode 0644); run chmod 600 on it\n", "\(loose.stderr)")
        let agent = try run(Paths.infrasight, ["agent", "--server", "127.0.0.1:1", "--token-file", "\(dir)/token", "--duration", "1"])
        #expect(agent.status == 2)
        #expect(agent.stderr.contains("the token file \(dir)/token is accessible by group or others (mode 0644)"), "\(agent.stderr)")
    }

    /// A token that whoever reaches the port could guess is refused in every token file:
    /// the shared one (server and agent), the console's, and each per-agent token.
    @Test func everyTokenFileNeedsSixteenBytes() throws {
        let data = try makeTempDir(prefix: "hostile-data")
        let dir = try makeTempDir(prefix: "hostile-secret")
        for (name, text) in [("short", "fifteen-bytes!!\n"), ("enough", "sixteen-bytes!!!\n"), ("agents", "node-a aaaaaaaaaaaaaaaa\nnode-b fifteen-bytes!!\n")] {
            try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
            chmod("\(dir)/\(name)", 0o600)
        }
        let short = "the token in \(dir)/short is 15 bytes, under the 16 a token needs (head -c 24 /dev/urandom | base64 makes one)"
        let server = try run(Paths.infrasight, ["server", "--data-dir", data, "--duration", "1", "--token-file", "\(dir)/short"])
        #expect(server.status == 2)
        #expect(server.stderr == "infrasight: \(short)\n", "\(server.stderr)")
        let agent = try run(Paths.infrasight, ["agent", "--server", "127.0.0.1:1", "--token-file", "\(dir)/short", "--duration", "1"])
        #expect(agent.status == 2)
        #expect(agent.stderr == "infrasight: \(short)\n", "\(agent.stderr)")
        let console = try run(Paths.infrasight, ["server", "--data-dir", data, "--duration", "1", "--ui-listen", "127.0.0.1:0", "--ui-token-file", "\(dir)/short"])
        #expect(console.status == 2)
        #expect(console.stderr == "infrasight: \(short)\n", "\(console.stderr)")
        let agents = try run(Paths.infrasight, ["server", "--data-dir", data, "--duration", "1", "--agent-tokens", "\(dir)/agents"])
        #expect(agents.status == 2)
        #expect(agents.stderr == "infrasight: \(dir)/agents:2: the token of node-b is shorter than 16 bytes\n", "\(agents.stderr)")
        // Sixteen bytes are enough.
        let enough = try run(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--data-dir", data, "--duration", "1", "--token-file", "\(dir)/enough"])
        #expect(enough.status == 0, "\(enough.stderr)")
        #expect(enough.stderr.contains("bearer token)"), "\(enough.stderr)")
    }

    @Test func aBatchTheServerRefusesIsSetAsideAndTheAgentGoesOn() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "hostile-data")
        // A batch left in the spool by an earlier run that no server can store.
        let spool = "\(dir)/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        var bad = Infrasight_V1_Batch()
        bad.batchID = UUID().uuidString.lowercased()
        bad.table = "audit.tracing_events"
        bad.columns = [.with { $0.name = "pid"; $0.type = "UInt32" }]
        bad.rows = Data([1, 2, 3])
        bad.rowCount = 1
        bad.plugin = "tracing"
        bad.sequence = 1
        try Data(bad.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: String(format: "%@/%020d.batch", spool, 1)))

        let server = try Server.start(store: ["--data-dir", data])
        let agent = try Fleet.agent(port: server.port, spool: spool, dir: dir)
        try agent.waitForStderr("server refused a batch of 1 tracing rows", timeout: 30)
        try Fleet.openLoop(helper, marker, 500)
        let r = try agent.interrupt(after: 1.5)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("malformed batch: row 0 ends inside column pid"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: String(format: "%@/%020d.batch.rejected", spool, 1)))
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool).filter { $0.hasSuffix(".batch") }.isEmpty)
        _ = try server.stop()
        #expect(try Self.query(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == "500\n")
    }
}
