import Foundation
import Glibc
import InfraSightPipelineProto
import InfraSightTestSupport
import Testing

/// Fleet mode on real processes: `infrasight agent` tracing this host → gRPC →
/// `infrasight server` → ClickHouse (embedded, or Debian's server), through server
/// crashes, ClickHouse outages and agent crashes, with tokens and (mutual) TLS.
@Suite(.serialized) struct FleetTests {
    /// The agent's summary: every event received or dropped in the kernel, every received
    /// one spooled or counted, every spooled one delivered.
    static func checkConservation(_ r: ProcessResult, total: Int) throws -> Int {
        let n = try #require(summaryNumbers(r.stderr, plugin: "tracing"), "\(r.stderr)")
        let received = n["received"] ?? -1, kernel = n["kernel drops"] ?? -1, decode = n["decode errors"] ?? -1
        let queue = n["queue drops"] ?? -1, spoolDrops = n["spool drops"] ?? -1, spooled = n["rows spooled"] ?? -1
        #expect(received + kernel == total, "\(n)")
        #expect(spooled + queue + spoolDrops + decode == received, "\(n)")
        #expect(n["rows delivered"] == spooled, "\(n)")
        return spooled
    }

    @Test func rowsReachEmbeddedClickHouseWithDerivedColumnsAndNothingLost() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "fleet-data")
        let (agentMetrics, serverMetrics) = (try freeLoopbackPort(), try freeLoopbackPort())
        let server = try Fleet.Server.start(store: ["--data-dir", data], extra: ["--metrics-listen", "127.0.0.1:\(serverMetrics)"])
        let agent = try Fleet.agent(port: server.port, spool: "\(dir)/spool", extra: ["--metrics-listen", "127.0.0.1:\(agentMetrics)"], dir: dir)
        let total = 200_000
        try Fleet.openLoop(helper, marker, total)
        usleep(1_500_000)
        let a = try Fleet.metrics(agentMetrics)
        for line in ["infrasight_grpc_connected 1", "infrasight_spool_bytes ", "infrasight_spool_drops_total{plugin=\"tracing\"} 0\n",
                     "infrasight_rows_delivered_total{plugin=\"tracing\"}", "infrasight_enrichment_cache_hits_total{cache=\"cgroup\"}",
                     "infrasight_insert_seconds_count ", "infrasight_batch_rows_sum "] {
            #expect(a.contains(line), "\(line)")
        }
        #expect(try Fleet.metrics(serverMetrics).contains("infrasight_server_agents_connected 1"))
        agent.signal(SIGINT)
        let r = try agent.wait(timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let spooled = try Self.checkConservation(r, total: total)
        #expect(Fleet.value(try Fleet.metrics(serverMetrics), "infrasight_server_rows_stored_total{table=\"audit.tracing_events\"}") == spooled)
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.contains("rows stored \(spooled)"), "\(s.stderr)")
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == spooled)
        // The agent leaves latency_ms and wall_time_dt out; the server derives them.
        #expect(try Fleet.count(data, """
            SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'
              AND latency_ms = latency_ns / 1e6 AND toUnixTimestamp64Milli(wall_time_dt) = wall_time_ms AND latency_ns > 0
            """) == spooled)
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)' AND node_name != '' AND comm = '\(URL(fileURLWithPath: helper).lastPathComponent)'") == spooled)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/spool").filter { $0.hasSuffix(".batch") }.isEmpty)
    }

    @Test func aServerKilledMidStreamAndRestartedGetsEveryRowOnce() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "fleet-data")
        var server: Fleet.Server? = try Fleet.Server.start(store: ["--data-dir", data])
        let port = server!.port
        let agent = try Fleet.agent(port: port, spool: "\(dir)/spool", dir: dir)
        var total = 0
        for round in 0..<8 {
            try Fleet.openLoop(helper, marker, 20_000)
            total += 20_000
            usleep(400_000)
            if round == 2 {
                server!.process.signal(SIGKILL)
                _ = server!.process.wait()
                server = nil
            }
            if round == 5 { server = try Fleet.Server.start(port: port, store: ["--data-dir", data]) }
        }
        let r = try agent.interrupt(after: 1.5)
        #expect(r.status == 0, "\(r.stderr)")
        let spooled = try Self.checkConservation(r, total: total)
        #expect(r.stderr.contains("retrying"), "\(r.stderr)")
        _ = try server!.stop()
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == spooled)
        #expect(try Fleet.count(data, "SELECT count() - uniqExact(batch_id) FROM infrasight.pipeline_batches FINAL") == 0)
    }

    @Test func anAgentKilledWithUnsentBatchesSendsThemAfterARestart() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "fleet-data")
        // No server yet: everything waits in the spool.
        let port = try freeLoopbackPort()
        let metrics = try freeLoopbackPort()
        let first = try Fleet.agent(port: port, spool: "\(dir)/spool", extra: ["--metrics-listen", "127.0.0.1:\(metrics)"], dir: dir)
        let total = 50_000
        try Fleet.openLoop(helper, marker, total)
        // Killed once every event is in the spool or counted as dropped in the kernel (rows
        // still in memory die with a kill -9; a debug build may not keep up with the loop).
        var spooled = 0
        try waitUntil("the agent has spooled or counted all \(total) events", timeout: 60) {
            let text = (try? Fleet.metrics(metrics)) ?? ""
            spooled = Fleet.value(text, "infrasight_rows_spooled_total{plugin=\"tracing\"}")
            return spooled + Fleet.value(text, "infrasight_kernel_drops_total{plugin=\"tracing\"}") == total
        }
        #expect(spooled > 0)
        first.signal(SIGKILL)
        _ = first.wait()
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/spool").filter { $0.hasSuffix(".batch") }
        #expect(!files.isEmpty)

        let server = try Fleet.Server.start(port: port, store: ["--data-dir", data])
        let second = try Fleet.agent(port: port, spool: "\(dir)/spool", dir: dir)
        try second.waitForStderr("connected to server", timeout: 30)
        let r = try second.interrupt(after: 1)
        #expect(r.status == 0, "\(r.stderr)")
        _ = try server.stop()
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == spooled)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/spool").filter { $0.hasSuffix(".batch") }.isEmpty)
    }

    /// A full spool keeps the newest: the oldest spooled batches go, counted and said once.
    @Test func aFullSpoolDropsTheOldestAndCountsThem() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        // No server, a 4 MiB spool: 150,000 rows (~28 MB) cannot all wait, even when a busy
        // machine has the kernel drop two thirds of them (seen once in CI: 50,881 received).
        let agent = try Fleet.agent(port: try freeLoopbackPort(), spool: "\(dir)/spool",
                                   extra: ["--spool-max-mb", "4", "--drain-timeout", "1"], dir: dir)
        let total = 150_000
        try Fleet.openLoop(helper, marker, total)
        let r = try agent.interrupt(after: 2)
        #expect(r.status == 0, "\(r.stderr)")
        let n = try #require(summaryNumbers(r.stderr, plugin: "tracing"), "\(r.stderr)")
        let received = n["received"] ?? -1, spooled = n["rows spooled"] ?? -1, spoolDrops = n["spool drops"] ?? -1
        #expect(received + (n["kernel drops"] ?? -1) == total, "\(n)")
        #expect(spooled + spoolDrops + (n["queue drops"] ?? -1) + (n["decode errors"] ?? -1) == received, "\(n)")
        let evicted = n["spool evicted"] ?? -1
        #expect(spoolDrops == 0 && evicted > 0 && spooled > evicted, "\(n)")
        #expect(n["rows delivered"] == 0)
        #expect(r.stderr.components(separatedBy: "the spool is full (4 MiB at ").count == 2, "\(r.stderr)")
        // What is left is the newest: the spool's files hold the rows spooled last.
        let left = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/spool").filter { $0.hasSuffix(".batch") }.compactMap {
            FileManager.default.contents(atPath: "\(dir)/spool/\($0)").flatMap { try? Infrasight_V1_Batch(serializedBytes: $0) }
        }
        #expect(left.reduce(0) { $0 + Int($1.rowCount) } == spooled - evicted, "\(n)")
        // ...and they are the last sequences the spool gave out, one after the other.
        let sequences = left.map(\.sequence).sorted()
        #expect(sequences.last.map { $0 - sequences[0] + 1 } == UInt64(sequences.count), "\(sequences)")
        let bytes = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/spool").reduce(0) { sum, name in
            sum + ((try? FileManager.default.attributesOfItem(atPath: "\(dir)/spool/\(name)")[.size] as? Int) ?? 0)
        }
        #expect(bytes > 0 && bytes <= 4 << 20)
    }

    @Test func clickHouseDownForTenSecondsLosesNothingAndOldTypesAreMapped() throws {
        let clickhouse = try ClickHouseServer()
        let (helper, marker, dir) = try Fleet.openLoop()
        let server = try Fleet.Server.start(store: [], environment: ["INFRASIGHT_CLICKHOUSE_URL": clickhouse.url])
        let agent = try Fleet.agent(port: server.port, spool: "\(dir)/spool", dir: dir)
        var total = 0
        try Fleet.openLoop(helper, marker, 20_000)
        total += 20_000
        usleep(1_500_000)
        clickhouse.stop()
        for _ in 0..<4 {
            try Fleet.openLoop(helper, marker, 20_000)
            total += 20_000
            usleep(3_000_000)
        }
        try clickhouse.start()
        try Fleet.openLoop(helper, marker, 20_000)
        total += 20_000
        let r = try agent.interrupt(after: 2)
        #expect(r.status == 0, "\(r.stderr)")
        let spooled = try Self.checkConservation(r, total: total)
        let s = try server.stop()
        #expect(s.stderr.contains("holding the agent's batches"), "\(s.stderr)")
        let stored = try clickhouse.query("SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'")
        #expect(stored == "\(spooled)\n")
        // 18.16 has no DateTime64: wall_time_dt is a DateTime derived from wall_time_ms.
        let derived = try clickhouse.query("SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)' AND toUnixTimestamp(wall_time_dt) = intDiv(wall_time_ms, 1000)")
        #expect(derived == "\(spooled)\n")
    }

    @Test func twoAgentsStoreTheirOwnRows() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "fleet-data")
        let server = try Fleet.Server.start(store: ["--data-dir", data])
        let a = try Fleet.agent(port: server.port, spool: "\(dir)/spool-a", environment: ["NODE_NAME": "node-a"], dir: dir)
        let b = try Fleet.agent(port: server.port, spool: "\(dir)/spool-b", environment: ["NODE_NAME": "node-b"], dir: dir)
        let total = 30_000
        try Fleet.openLoop(helper, marker, total)
        usleep(1_500_000)
        a.signal(SIGINT)
        b.signal(SIGINT)
        let ra = try a.wait(timeout: 120), rb = try b.wait(timeout: 120)
        let sa = try Self.checkConservation(ra, total: total), sb = try Self.checkConservation(rb, total: total)
        _ = try server.stop()
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)' AND node_name = 'node-a'") == sa)
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)' AND node_name = 'node-b'") == sb)
    }

    @Test func aTokenServerRefusesAnAgentWithoutTheToken() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "fleet-data")
        let secret = "tok-\(UInt64.random(in: 0...UInt64.max))"
        try "\(secret)\n".write(toFile: "\(dir)/token", atomically: true, encoding: .utf8)
        chmod("\(dir)/token", 0o600) // secrets readable by others are refused
        let server = try Fleet.Server.start(store: ["--data-dir", data], extra: ["--token-file", "\(dir)/token"])

        // --duration bounds a test whose refusal does not come.
        let refused = try Fleet.agent(port: server.port, spool: "\(dir)/spool-x", extra: ["--duration", "30"], dir: dir)
        let r = try refused.wait(timeout: 120)
        #expect(r.status == 1)
        #expect(r.stderr.contains("server refused the agent") && r.stderr.contains("bearer token"), "\(r.stderr)")

        let wrong = try Fleet.agent(port: server.port, spool: "\(dir)/spool-y", extra: ["--duration", "30"], environment: ["INFRASIGHT_TOKEN": "nope"], dir: dir)
        #expect(try wrong.wait(timeout: 120).status == 1)

        let good = try Fleet.agent(port: server.port, spool: "\(dir)/spool", environment: ["INFRASIGHT_TOKEN": secret], dir: dir)
        try good.waitForStderr("connected to server", timeout: 30)
        try Fleet.openLoop(helper, marker, 1000)
        let g = try good.interrupt(after: 1.5)
        #expect(g.status == 0, "\(g.stderr)")
        let s = try server.stop()
        #expect(s.stderr.contains("refused agent at") && s.stderr.contains("no bearer token") && s.stderr.contains("a wrong bearer token"), "\(s.stderr)")
        #expect(!s.stderr.contains(secret) && !g.stderr.contains(secret))
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == 1000)
    }

    /// Agent and server set up by their config files alone (address, token, spool,
    /// compression); a flag wins over its key. gzip must shrink what crosses the wire:
    /// counted by a relay between them, the same rows take under a third of the bytes.
    @Test func aConfigFileSetsUpAgentAndServerAndGzipShrinksTheStream() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "fleet-data")
        let secret = "tok-\(UInt64.random(in: 0...UInt64.max))"
        try "\(secret)\n".write(toFile: "\(dir)/token", atomically: true, encoding: .utf8)
        chmod("\(dir)/token", 0o600) // secrets readable by others are refused
        try """
            storage: { data_dir: \(data) }
            server: { listen: "127.0.0.1:0", token_file: \(dir)/token }
            """.write(toFile: "\(dir)/server.yaml", atomically: true, encoding: .utf8)
        let server = try Fleet.Server.start(arguments: ["--config", "\(dir)/server.yaml"], dataDir: data)
        let relay = try ByteCountingRelay(upstreamPort: server.port)
        defer { relay.close() }
        let tracing = try String(contentsOfFile: "\(dir)/agent.yaml", encoding: .utf8)
        try (tracing + """

            agent:
              server: 127.0.0.1:\(relay.port)
              compression: gzip
              token_file: \(dir)/token
              spool_dir: \(dir)/spool
            """).write(toFile: "\(dir)/agent.yaml", atomically: true, encoding: .utf8)

        var bytes: [Int] = []
        for extra in [["--compression", "none"], []] {
            let before = relay.bytesSent
            let agent = try BackgroundProcess(Paths.infrasight, ["agent", "--config", "\(dir)/agent.yaml"] + extra)
            try agent.waitForStderr("connected to server", timeout: 60)
            try Fleet.openLoop(helper, marker, 20_000)
            let r = try agent.interrupt(after: 1.5)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains(extra.isEmpty ? "→ server 127.0.0.1:\(relay.port) (gzip)" : "→ server 127.0.0.1:\(relay.port) (spool"), "\(r.stderr)")
            #expect(try Self.checkConservation(r, total: 20_000) == 20_000)
            bytes.append(relay.bytesSent - before)
        }
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == 40_000)
        #expect(bytes[0] > 20_000 * 50, "\(bytes)") // uncompressed rows are over 50 bytes each
        #expect(bytes[1] * 3 < bytes[0], "gzip \(bytes[1]) bytes vs none \(bytes[0])")
    }

    @Test func aMissingOrMalformedFleetSettingIsOneLine() throws {
        let dir = try makeTempDir(prefix: "fleet")
        try "plugins: { enabled: [tracing] }\n".write(toFile: "\(dir)/none.yaml", atomically: true, encoding: .utf8)
        let none = try run(Paths.infrasight, ["agent", "--config", "\(dir)/none.yaml"])
        #expect(none.status == 64)
        #expect(none.stderr == "infrasight: no server: give --server HOST:PORT or agent.server in the config file\n")
        try "agent: { server: somewhere, compression: zstd }\n".write(toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try run(Paths.infrasight, ["agent", "--config", "\(dir)/bad.yaml"])
        #expect(bad.status == 2)
        #expect(bad.stderr == "infrasight: config \(dir)/bad.yaml: agent.compression must be one of none, gzip, deflate (got zstd)\n")
        try "agent: { server: somewhere }\n".write(toFile: "\(dir)/port.yaml", atomically: true, encoding: .utf8)
        let port = try run(Paths.infrasight, ["agent", "--config", "\(dir)/port.yaml"])
        #expect(port.status == 2)
        #expect(port.stderr == "infrasight: agent.server must be HOST:PORT or a list of them (got somewhere)\n")
        // A server named twice, or a list with a hole, is refused before anything starts.
        for list in ["127.0.0.1:50051,127.0.0.1:50051", "127.0.0.1:50051,,127.0.0.1:50052"] {
            let twice = try run(Paths.infrasight, ["agent", "--server", list, "--config", "\(dir)/none.yaml"])
            #expect(twice.status == 64)
            #expect(twice.stderr.contains("--server must be HOST:PORT or a comma-separated list of them (got \(list))"), "\(twice.stderr)")
        }
        // --cluster needs a ClickHouse server, and a plain cluster name.
        let embedded = try run(Paths.infrasight, ["server", "--cluster", "prod", "--data-dir", dir])
        #expect(embedded.status == 2)
        #expect(embedded.stderr == "infrasight: --cluster prod needs a ClickHouse server: give --clickhouse-url (one node of the cluster, or several)\n")
        try "server: { listen: nowhere }\n".write(toFile: "\(dir)/listen.yaml", atomically: true, encoding: .utf8)
        let listen = try run(Paths.infrasight, ["server", "--config", "\(dir)/listen.yaml", "--data-dir", dir])
        #expect(listen.status == 2)
        #expect(listen.stderr == "infrasight: server.listen must be HOST:PORT (got nowhere)\n")
    }

    @Test func mutualTLSAcceptsOnlyAgentsWithACertificateFromItsCA() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        try Fleet.makeCertificates(dir)
        let data = try makeTempDir(prefix: "fleet-data")
        let server = try Fleet.Server.start(store: ["--data-dir", data], extra: ["--tls-cert", "\(dir)/server.pem", "--tls-key", "\(dir)/server.key", "--tls-ca", "\(dir)/ca1.pem"])

        let outsider = try Fleet.agent(port: server.port, spool: "\(dir)/spool-x", extra: ["--duration", "30", "--tls-ca", "\(dir)/ca1.pem", "--tls-cert", "\(dir)/agent2.pem", "--tls-key", "\(dir)/agent2.key"], dir: dir)
        let r = try outsider.wait(timeout: 120)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("TLS with 127.0.0.1:\(server.port) failed"), "\(r.stderr)")

        let member = try Fleet.agent(port: server.port, spool: "\(dir)/spool", extra: ["--tls-ca", "\(dir)/ca1.pem", "--tls-cert", "\(dir)/agent1.pem", "--tls-key", "\(dir)/agent1.key"], dir: dir)
        try member.waitForStderr("connected to server", timeout: 30)
        try Fleet.openLoop(helper, marker, 1000)
        let m = try member.interrupt(after: 1.5)
        #expect(m.status == 0, "\(m.stderr)")
        let s = try server.stop()
        #expect(s.stderr.contains("refused a TLS connection from"), "\(s.stderr)")
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'") == 1000)
    }

    @Test func aTableThatConflictsWithTheServersIsRefusedOnBothSides() throws {
        let (_, _, dir) = try Fleet.openLoop()
        let data = try makeTempDir(prefix: "fleet-data")
        for sql in ["CREATE DATABASE audit", "CREATE TABLE audit.tracing_events (pid String) ENGINE = MergeTree ORDER BY tuple()"] {
            let r = try run(Paths.infrasight, ["query", "--data-dir", data, sql])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let server = try Fleet.Server.start(store: ["--data-dir", data])
        let agent = try Fleet.agent(port: server.port, spool: "\(dir)/spool", extra: ["--duration", "30"], dir: dir)
        let r = try agent.wait(timeout: 120)
        #expect(r.status == 1)
        #expect(r.stderr.contains("conflicts with the agent's DDL: column pid is String on the server, UInt32"), "\(r.stderr)")
        let s = try server.stop()
        #expect(s.stderr.contains("refused agent"), "\(s.stderr)")
    }

    @Test func ptraceRequestNamesAreFilledInByTheServer() throws {
        let dir = try makeTempDir(prefix: "fleet")
        let data = try makeTempDir(prefix: "fleet-data")
        let server = try Fleet.Server.start(store: ["--data-dir", data])
        try "plugins:\n  enabled: [ptrace]\n  options:\n    ptrace:\n      include_comms: [strace]\n".write(toFile: "\(dir)/agent.yaml", atomically: true, encoding: .utf8)
        let agent = try Fleet.agent(port: server.port, spool: "\(dir)/spool", dir: dir)
        let strace = try BackgroundProcess("/usr/bin/strace", ["-f", "-o", "\(dir)/strace.out", "/bin/true"])
        #expect(strace.wait().status == 0)
        let r = try agent.interrupt(after: 1.5)
        #expect(r.status == 0, "\(r.stderr)")
        _ = try server.stop()
        let rows = "FROM audit.ptrace_events WHERE pid = \(strace.pid)"
        #expect(try Fleet.count(data, "SELECT count() \(rows)") > 0)
        // The agent sends no request_name; every row has the name of its request.
        #expect(try Fleet.count(data, "SELECT count() \(rows) AND (request_name = '' OR (request = 16902 AND request_name != 'PTRACE_SEIZE'))") == 0)
        #expect(try Fleet.count(data, "SELECT count() \(rows) AND request_name LIKE 'PTRACE_%'") == (try Fleet.count(data, "SELECT count() \(rows)")))
    }

    @Test func theExamplePluginsTableReachesTheStoreThroughAnUnchangedServer() throws {
        let plugins = try ExamplePluginTests.buildExample()
        let dir = try makeTempDir(prefix: "fleet")
        let data = try makeTempDir(prefix: "fleet-data")
        let server = try Fleet.Server.start(store: ["--data-dir", data])
        try "plugins:\n  enabled: [signals]\n".write(toFile: "\(dir)/agent.yaml", atomically: true, encoding: .utf8)
        let agent = try Fleet.agent(port: server.port, spool: "\(dir)/spool", extra: ["--plugin-dir", plugins], dir: dir)
        let target = try BackgroundProcess("/bin/sleep", ["30"])
        kill(target.pid, SIGUSR2)
        _ = target.wait()
        let r = try agent.interrupt(after: 1.5)
        #expect(r.status == 0, "\(r.stderr)")
        _ = try server.stop()
        #expect(try Fleet.count(data, "SELECT count() FROM audit.signal_events WHERE target_pid = \(target.pid) AND signal = \(SIGUSR2)") == 1)
    }
}
