import Foundation
import Glibc
import InfraSightCore
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
            try FleetTests.count(data, "SELECT count() FROM audit.drift_baseline WHERE scope = '\(image)' AND value = '/usr/bin/sleep'") == 1
        }
        // Past both windows (they began at each scope's first row, before the wait above).
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
}
