import Foundation
import Glibc
import InfraSightCore
import InfraSightPipelineProto
import InfraSightSchema
import InfraSightTestSupport
import Testing

/// Drift detection on real containers and host processes: each scope (a container image,
/// or `host:NODE`) learns for `drift_learn_seconds` from its first row what runs and which
/// ports are contacted; after that, the first of each new thing alerts once; the baseline
/// is in ClickHouse and survives a restart of `run`.
@Suite(.serialized) struct DriftTests {
    /// The drift alerts of `stdout` in the test's two scopes: the image, and host:`node` for
    /// the test's own helper (`comm`). Other suites' containers whose cgroup names no
    /// container id (a `ctr run` container named `/k8s.io/<name>`) are host processes to
    /// drift too, and run while this test does.
    static func mine(_ stdout: String, image: String, node: String, comm: String) throws -> [[String: Any]] {
        try DetectionWorkload.alerts(stdout).filter {
            ($0["rule"] as? String)?.hasPrefix("drift_") == true
                && ($0["container_image"] as? String == image
                    || ($0["container_image"] as? String == "" && $0["node_name"] as? String == node && $0["comm"] as? String == comm))
        }
    }

    /// `rules baseline show SCOPE` on the stopped store: "kind value" → learned.
    static func baseline(_ data: String, _ scope: String) throws -> [String: Int] {
        let r = try run(Paths.infrasight, ["rules", "baseline", "show", scope, "--data-dir", data])
        guard r.status == 0 else { throw TestFailure("rules baseline show \(scope) exited \(r.status): \(r.stderr)") }
        let lines = r.stdout.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        guard lines.first == ["kind", "value", "first_seen", "learned"] else { throw TestFailure("header: \(r.stdout)") }
        var out: [String: Int] = [:]
        for f in lines.dropFirst() { out["\(f[0]) \(f[1])"] = Int(f[3]) }
        return out
    }

    static func describe(_ alerts: [[String: Any]]) -> [String] {
        alerts.map { a in
            let row = a["row"] as? [String: Any] ?? [:]
            let value = a["rule"] as? String == "drift_new_port" ? row["dport"] as? String ?? "?" : row["filename"] as? String ?? "?"
            let scope = (a["container_image"] as? String).flatMap { $0.isEmpty ? nil : "image" } ?? "host"
            return "\(a["rule"] as? String ?? "?") \(scope) \(value)"
        }.sorted()
    }

    @Test func anImageAndAHostLearnForTheirWindowThenEachNewExecutableAndPortAlertsOnceAndTheBaselineSurvivesARestart() throws {
        try Docker.ready()
        let w = try DetectionWorkload()
        let tag = String(w.comm.dropFirst(2))
        // An image name of this test's own (the test image, tagged): other suites' containers
        // of the test image are other scopes.
        let image = "local/infrasight-drift:\(tag)"
        _ = try Docker.docker(["tag", Docker.image, image])
        defer { _ = try? Docker.docker(["rmi", image]) }
        let node = "drift-\(tag)"
        let (learnedFD, learned) = try DetectionWorkload.listener()
        let (newFD, new) = try DetectionWorkload.listener()
        let (thirdFD, third) = try DetectionWorkload.listener()
        defer { [learnedFD, newFD, thirdFD].forEach { close($0) } }
        // A second copy of the helper: the same comm (so it is traced), a new executable.
        let other = "\(w.dir)/bin2/\(w.comm)"
        try FileManager.default.createDirectory(atPath: "\(w.dir)/bin2", withIntermediateDirectories: false)
        try copyExecutable(w.helper, to: other)
        let data = try makeTempDir(prefix: "driftdata")
        let config = try w.config(node: node, plugins: ["tracing", "network"], containers: true, rules: "rules:\n  drift_learn_seconds: 3\n")
        let arguments = ["--data-dir", data, "--config", config, "--no-default-rules", "--alerts-stdout"]
        let inContainer = "/drift/\(w.comm)"

        // Learning: the container's entrypoint connects, runs cat and becomes sleep; on the
        // host the helper connects (its exec is traced: it execs itself).
        let first = try DetectionWorkload.start(arguments)
        #expect(first.stderr.contains("drift detection learns for 3 s per image"), "\(first.stderr)")
        let id = try Docker.docker(["run", "-d", "--network", "host", "-v", "\(w.dir):/drift:ro", image, inContainer, "learn", String(learned)])
        defer { _ = try? Docker.docker(["rm", "-f", id]) }
        try w.run(["exec", w.helper, "connect", String(learned)])
        try waitUntil("the image's sleep is learned", timeout: 30) {
            try Fleet.count(data, "SELECT count() FROM audit.drift_baseline WHERE scope = '\(image)' AND value = '/usr/bin/sleep'") == 1
        }
        // Past both windows (each began when its scope's first row was stored, before the
        // wait above ended).
        sleep(4)
        // A container no runtime knows (its cgroup names one, its image is never learned):
        // its new executable and port are neither the host's nor alerted on.
        let mount = try #require(CgroupResolver().mountPoint, "no cgroup2 mount")
        let unknownCgroup = "\(mount)/infrasight-drift-\(tag)"
        let unknown = "\(unknownCgroup)/docker-\(String(repeating: tag, count: 8)).scope"
        try FileManager.default.createDirectory(atPath: unknown, withIntermediateDirectories: true)
        defer { rmdir(unknown); rmdir(unknownCgroup) }
        let (unknownFD, unknownPort) = try DetectionWorkload.listener()
        defer { close(unknownFD) }
        let stranger = "\(w.dir)/bin3/\(w.comm)"
        try FileManager.default.createDirectory(atPath: "\(w.dir)/bin3", withIntermediateDirectories: false)
        try copyExecutable(w.helper, to: stranger)
        let inUnknown = try BackgroundProcess("/bin/sh", ["-c", "echo $$ > \(unknown)/cgroup.procs && exec \(w.helper) exec \(stranger) connect \(unknownPort)"])
        #expect(inUnknown.wait().status == 0)
        for _ in 0..<2 {
            _ = try Docker.docker(["exec", id, "dash", "-c", "exit 0"])
            _ = try Docker.docker(["exec", id, inContainer, "connect", String(new)])
            _ = try Docker.docker(["exec", id, inContainer, "connect", String(learned)])
            _ = try Docker.docker(["exec", id, "cat", "/etc/motd"])
            try w.run(["exec", w.helper, "connect", String(new)])
            try w.run(["exec", other, "connect", String(learned)])
        }
        let r1 = try first.interrupt(after: 1.5)
        #expect(r1.status == 0, "\(r1.stderr)")
        let alerts = try Self.mine(r1.stdout, image: image, node: node, comm: w.comm)
        #expect(Self.describe(alerts) == [
            "drift_new_executable host \(other)", "drift_new_executable image /usr/bin/dash",
            "drift_new_port host \(new)", "drift_new_port image \(new)",
        ], "\(r1.stdout)")
        let exe = try #require(alerts.first { $0["rule"] as? String == "drift_new_executable" && $0["container_id"] as? String == id }, "\(alerts)")
        #expect(exe["container_image"] as? String == image)
        #expect(exe["node_name"] as? String == node)
        #expect(exe["output"] as? String == "new executable /usr/bin/dash in \(image) (not run during its learning window)")
        #expect(exe["severity"] as? String == "medium")
        let port = try #require(alerts.first { $0["rule"] as? String == "drift_new_port" && $0["container_id"] as? String == id }, "\(alerts)")
        #expect(port["output"] as? String == "new destination port \(new) from \(image) (not contacted during its learning window)")
        #expect((port["row"] as? [String: Any])?["comm"] as? String == w.comm)
        let hostPort = try #require(alerts.first { $0["rule"] as? String == "drift_new_port" && $0["container_id"] as? String == "" })
        #expect(hostPort["output"] as? String == "new destination port \(new) from host:\(node) (not contacted during its learning window)")

        // A restart on the same data directory: what was learned (or already alerted on)
        // stays quiet; one more new port still alerts (the windows ended long ago).
        let second = try DetectionWorkload.start(arguments)
        _ = try Docker.docker(["exec", id, "dash", "-c", "exit 0"])
        _ = try Docker.docker(["exec", id, "cat", "/etc/motd"])
        for p in [learned, new] { _ = try Docker.docker(["exec", id, inContainer, "connect", String(p)]) }
        _ = try Docker.docker(["exec", id, inContainer, "connect", String(third)])
        try w.run(["exec", w.helper, "connect", String(new)])
        try w.run(["exec", other, "connect", String(learned)])
        let r2 = try second.interrupt(after: 1.5)
        #expect(r2.status == 0, "\(r2.stderr)")
        #expect(Self.describe(try Self.mine(r2.stdout, image: image, node: node, comm: w.comm)) == ["drift_new_port image \(third)"], "\(r2.stdout)")

        #expect(try Self.baseline(data, image) == [
            "scope ": 1, "executable \(inContainer)": 1, "executable /usr/bin/cat": 1, "executable /usr/bin/sleep": 1,
            "executable /usr/bin/dash": 0, "port \(learned)": 1, "port \(new)": 0, "port \(third)": 0,
        ])
        // The host's baseline as far as the test's own processes go (see `mine`).
        let ours = ["scope ", "executable \(w.helper)", "executable \(other)", "executable \(stranger)", "port \(learned)", "port \(new)",
                    "port \(third)", "port \(unknownPort)"]
        #expect(try Self.baseline(data, "host:\(node)").filter { ours.contains($0.key) } == [
            "scope ": 1, "executable \(w.helper)": 1, "executable \(other)": 0, "port \(learned)": 1, "port \(new)": 0,
        ])
        let none = try run(Paths.infrasight, ["rules", "baseline", "show", "local/never-seen:\(tag)", "--data-dir", data])
        #expect(none.status != 0)
        #expect(none.stderr.contains("no baseline for local/never-seen:\(tag)"))
    }

    // MARK: Hostile agents against the server's drift detection (no containers: a raw
    // agent sends tracing rows whose scope is the image it names).

    /// The server, storing into `data`, with drift detection learning for `learnSeconds`,
    /// no rules, alerts on stdout and metrics on `metrics`.
    static func driftServer(data: String, learnSeconds: Int, metrics: Int) throws -> Fleet.Server {
        let config = "\(try makeTempDir(prefix: "drift-config"))/server.yaml"
        try "rules:\n  drift_learn_seconds: \(learnSeconds)\n".write(toFile: config, atomically: true, encoding: .utf8)
        return try Fleet.Server.start(store: ["--data-dir", data], extra: [
            "--config", config, "--no-default-rules", "--alerts-stdout", "--metrics-listen", "127.0.0.1:\(metrics)",
        ])
    }

    /// A fresh store, the server on it with drift detection learning for 3 s, and an image
    /// name of the test's own (`local/NAME-TAG:1`).
    static func driftServer(image name: String) throws -> (server: Fleet.Server, image: String, data: String, metrics: Int) {
        let data = try makeTempDir(prefix: "driftdata")
        let metrics = try freeLoopbackPort()
        let server = try driftServer(data: data, learnSeconds: 3, metrics: metrics)
        return (server, "local/\(name)-\(String(UInt32.random(in: 0...UInt32.max), radix: 16)):1", data, metrics)
    }

    /// The hello of an agent with the tracing plugin's table, as its plugin declares it.
    static func tracingHello() throws -> Infrasight_V1_AgentMessage {
        let ddl = try TableSchema(ddl: String(contentsOfFile: "\(Paths.packageRoot)/schema/tracing_events.sql", encoding: .utf8)).statement
        return HostileAgentTests.hello(node: "drift-node", tables: [("audit.tracing_events", ddl)])
    }

    /// A batch of successful execs of `filename` in containers of `image`, each row stamped
    /// `ms` (Unix ms): the columns drift detection reads, RowBinary.
    static func execs(_ rows: [(image: String, filename: String, ms: Int64)]) -> Infrasight_V1_AgentMessage {
        func string(_ text: String, _ out: inout Data) {
            var n = text.utf8.count
            repeat {
                out.append(UInt8(n & 0x7f) | (n >= 0x80 ? 0x80 : 0))
                n >>= 7
            } while n > 0
            out.append(contentsOf: text.utf8)
        }
        func integer<T: FixedWidthInteger>(_ value: T, _ out: inout Data) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        var bytes = Data()
        for (i, row) in rows.enumerated() {
            integer(UInt32(1000 + i), &bytes)
            string("drifter", &bytes)
            string(row.filename, &bytes)
            integer(Int64(0), &bytes)
            string("execve", &bytes)
            string("drift-node", &bytes)
            integer(row.ms, &bytes)
            string(String(repeating: "c", count: 64), &bytes)
            string(row.image, &bytes)
            string("/docker-\(String(repeating: "c", count: 64)).scope", &bytes)
        }
        let columns = [("pid", "UInt32"), ("comm", "String"), ("filename", "String"), ("return_code", "Int64"), ("event_type", "String"),
                       ("node_name", "String"), ("wall_time_ms", "Int64"), ("container_id", "String"), ("container_image", "String"), ("cgroup_name", "String")]
        var b = Infrasight_V1_Batch()
        b.batchID = UUID().uuidString.lowercased()
        b.table = "audit.tracing_events"
        b.columns = columns.map { c in .with { $0.name = c.0; $0.type = c.1 } }
        b.rows = bytes
        b.rowCount = UInt64(rows.count)
        b.plugin = "tracing"
        return .with { $0.batch = b }
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Sends `rows` (execs in `image`, each a filename and an offset in ms from now) on a
    /// stream of their own, then waits for the server's first drift alert on `image` and
    /// returns its drift alerts on `image`, as `rule: output`.
    static func execsThenAlerts(_ server: Fleet.Server, image: String, _ rows: [(filename: String, offset: Int64)]) async throws -> [String] {
        let answers = try await HostileAgentTests.converse(port: server.port, [
            try tracingHello(), execs(rows.map { (image, $0.filename, now() + $0.offset) }),
        ], expecting: 2)
        #expect(answers.last?.ack.rowsStored == UInt64(rows.count), "\(answers)")
        return try DetectionWorkload.waitForAlerts(server.process, count: 1) { $0["container_image"] as? String == image }.map { "\($0["rule"] as? String ?? "?"): \($0["output"] as? String ?? "?")" }
    }

    /// One metric of the server's /metrics (nil when absent).
    static func metric(_ port: Int, _ name: String) throws -> Double? {
        DetectionWorkload.sample(try DetectionWorkload.metrics(port), name)
    }

    /// An image whose first row claims the year 3000 must not learn for ever: its window
    /// starts when the server stores that row, so a miner run after the window alerts.
    @Test func aRowFromTheYear3000DoesNotKeepAnImageLearningAndIsClampedAndCounted() async throws {
        let (server, image, data, metrics) = try Self.driftServer(image: "poisoned")
        let year3000: Int64 = 32_503_680_000_000
        let before = Self.now()
        // The image's first row, from the year 3000; then, inside the window, a learned exec.
        let first = try await HostileAgentTests.converse(port: server.port, [
            try Self.tracingHello(), Self.execs([(image, "/usr/bin/sleep", year3000)]), Self.execs([(image, "/usr/bin/cat", Self.now())]),
        ], expecting: 3)
        #expect(first.count == 3 && first[1].ack.rowsStored == 1 && first[2].ack.rowsStored == 1, "\(first)")
        try waitUntil("both batches evaluated", timeout: 30) { try Self.metric(metrics, "infrasight_rules_rows_evaluated_total") == 2 }
        #expect(try Self.metric(metrics, "infrasight_drift_row_times_clamped_total") == 1)
        // Past the window on the server's clock: the miner, at the time an honest row says.
        sleep(4)
        let miner = "/tmp/xmrig-\(UUID().uuidString.prefix(8))"
        #expect(try await Self.execsThenAlerts(server, image: image, [("/usr/bin/cat", 0), (miner, 1)]) == [
            "drift_new_executable: new executable \(miner) in \(image) (not run during its learning window)",
        ])
        let after = Self.now()
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.contains("webhook drops 0, drift row times clamped 1, drift values evicted 0, drift scopes evicted 0"), "\(s.stderr)")
        #expect(try Self.baseline(data, image) == ["scope ": 1, "executable /usr/bin/sleep": 1, "executable /usr/bin/cat": 1, "executable \(miner)": 0])
        // The window began when the server stored the first row; that row's own time was
        // clamped to 5 minutes past the server's clock.
        let times = try HostileAgentTests.query(data, """
            SELECT kind, value, toInt64(toUnixTimestamp64Milli(first_seen)) FROM audit.drift_baseline
            WHERE scope = '\(image)' AND kind = 'scope' OR value = '/usr/bin/sleep' AND scope = '\(image)' ORDER BY kind
            """).split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        try #require(times.count == 2, "\(times)")
        let sleepSeen = try #require(Int64(times[0][2])), started = try #require(Int64(times[1][2]))
        #expect(times[0][1] == "/usr/bin/sleep" && times[1][0] == "scope")
        #expect(started >= before && started <= after, "\(started) not in [\(before), \(after)]")
        #expect(sleepSeen >= before + 300_000 && sleepSeen <= after + 300_000, "\(sleepSeen)")
    }

    /// One scope flooded past its bound keeps the bound, counts what it forgot, and what
    /// it forgot alerts when it comes back after the window (what it kept does not); a
    /// restart reads the stored baseline back within the same bound.
    @Test func anOversizedScopeStaysBoundedAndItsEvictionsAreCounted() async throws {
        let setup = try Self.driftServer(image: "flooded")
        var server = setup.server
        let (image, data, metrics) = (setup.image, setup.data, setup.metrics)
        let name = { (i: Int) in String(format: "/bin/x-%04d", i) }
        let start = Self.now()
        // 1,500 executables in the window, oldest row first: the first 500 are forgotten.
        let flood = try await HostileAgentTests.converse(port: server.port, [
            try Self.tracingHello(), Self.execs((0..<1500).map { (image, name($0), start + Int64($0)) }),
        ], expecting: 2)
        #expect(flood.last?.ack.rowsStored == 1500, "\(flood)")
        try waitUntil("the flood evaluated", timeout: 60) { try Self.metric(metrics, "infrasight_rules_rows_evaluated_total") == 1500 }
        #expect(try Self.metric(metrics, "infrasight_drift_values_evicted_total") == 500)
        #expect(try Self.metric(metrics, "infrasight_drift_baseline_values") == 1000)
        #expect(try Self.metric(metrics, "infrasight_drift_baseline_scopes") == 1)
        sleep(4)
        // A kept one (seen first, so the most recent) stays quiet; a forgotten one alerts,
        // is learned again, and pushes out the oldest kept one.
        #expect(try await Self.execsThenAlerts(server, image: image, [(name(1499), 0), (name(0), 1)]) == [
            "drift_new_executable: new executable \(name(0)) in \(image) (not run during its learning window)",
        ])
        try waitUntil("the second batch evaluated", timeout: 30) { try Self.metric(metrics, "infrasight_rules_rows_evaluated_total") == 1502 }
        #expect(try Self.metric(metrics, "infrasight_drift_values_evicted_total") == 501)
        #expect(try Self.metric(metrics, "infrasight_drift_baseline_values") == 1000)
        var s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stderr.contains("drift row times clamped 0, drift values evicted 501, drift scopes evicted 0"), "\(s.stderr)")
        #expect(try HostileAgentTests.query(data, "SELECT count(), uniqExact(value) FROM audit.drift_baseline WHERE scope = '\(image)' AND kind = 'executable'") == "1501\t1500\n")

        // Restarted: the stored baseline is read oldest first into the same bound (x-0001
        // to x-0500 are forgotten this time); one of those alerts, x-0000 does not.
        server = try Self.driftServer(data: data, learnSeconds: 3, metrics: metrics)
        #expect(try Self.metric(metrics, "infrasight_drift_values_evicted_total") == 500)
        #expect(try Self.metric(metrics, "infrasight_drift_baseline_values") == 1000)
        #expect(try await Self.execsThenAlerts(server, image: image, [(name(0), 0), (name(500), 1)]) == [
            "drift_new_executable: new executable \(name(500)) in \(image) (not run during its learning window)",
        ])
        s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")
    }
}
