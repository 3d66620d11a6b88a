import Foundation
import Glibc
import CInfraSightEvent
import InfraSightCore
import InfraSightSchema
import InfraSightTestSupport
import Testing

/// Enrichment at the source on the real host: containers (a real dockerd), cgroups,
/// users, and the bounds of the caches.
@Suite(.serialized) struct EnrichmentTests {
    /// The tracing plugin filtered in the kernel to the workload's commands (see
    /// `commFilterConfig`): unfiltered, other suites' floods filled the ring buffer and a
    /// container's `cat /etc/motd` rows were lost (counted as kernel drops). A container's
    /// processes exec from runc's init, whose name they carry into the exec.
    static let containerFilter = commFilterConfig(["tracing"], comms: ["runc:[2:INIT]", "sh", "cat"])

    static func trace(comms: [String], _ workload: () throws -> Void) throws -> [[String: Any]] {
        try jsonLines(traceAround("tracing", config: commFilterConfig(["tracing"], comms: comms), workload).stdout)
    }

    /// What a test that misses a container's `cat /etc/motd` row prints: every row of a
    /// `cat` or of /etc/motd whatever its container (lost, or stored under another
    /// container?), and the tracer's summary (kernel drops, held rows).
    static func missing(_ rows: [[String: Any]], container id: String, stderr: String) -> String {
        let near = rows.filter { $0["comm"] as? String == "cat" || $0["filename"] as? String == "/etc/motd" }.map { r in
            ["event_type", "pid", "comm", "filename", "return_code", "cgroup_id", "cgroup_name", "container_id", "container_image"]
                .map { "\($0)=\(r[$0].map { "\($0)" } ?? "nil")" }.joined(separator: " ")
        }
        let mine = rows.filter { $0["container_id"] as? String == id }.count
        return "\(mine) rows of container \(id); rows of cat or /etc/motd: \(near); stderr: \(stderr)"
    }

    @Test func containerRowsCarryIdImageAndLabelsAndHostRowsDoNot() throws {
        try Docker.ready()
        let id = try Docker.docker(["run", "-d", "--label", "app=demo", "--label", "tier=web", Docker.image, "sleep", "600"])
        defer { _ = try? Docker.docker(["rm", "-f", id]) }
        #expect(id.count == 64)
        var hostPid: Int32 = 0
        let r = try traceAround("tracing", config: Self.containerFilter) {
            // A container that existed before the trace is looked up at its first event
            // (its rows wait for the answer): warm it up, so the rows below are judged on
            // the steady state. ContainerStartTests judge a container's first rows.
            _ = try Docker.docker(["exec", id, "sh", "-c", ":"])
            sleep(1)
            _ = try Docker.docker(["exec", id, "sh", "-c", ":"])
            _ = try Docker.docker(["exec", id, "cat", "/etc/motd"])
            _ = try Docker.docker(["exec", id, "sh", "-c", "cat /etc/motd"])
            let host = try BackgroundProcess("/bin/cat", ["/etc/hostname"])
            _ = host.wait()
            hostPid = host.pid
        }
        let rows = try jsonLines(r.stdout)
        let inContainer = rows.filter { $0["container_id"] as? String == id }
        let cat = try #require(inContainer.last { $0["comm"] as? String == "cat" && $0["filename"] as? String == "/etc/motd" }, "\(Self.missing(rows, container: id, stderr: r.stderr))")
        #expect(cat["container_image"] as? String == Docker.image)
        #expect(cat["container_labels_json"] as? [String: String] == ["app": "demo", "tier": "web"])
        #expect(cat["cgroup_name"] as? String == "/docker/\(id)")
        // The sh -c exec: its own execve row, in the same container.
        let sh = try #require(inContainer.last { $0["event_type"] as? String == "execve" && $0["comm"] as? String == "sh" && ($0["argv"] as? String)?.hasPrefix("sh -c cat") == true })
        #expect((sh["argv"] as? String)?.hasPrefix("sh -c cat /etc/motd") == true)
        #expect(sh["container_image"] as? String == Docker.image)
        // In the container's pid namespace the ids differ from the host's.
        #expect(int(cat, "user_pid") != int(cat, "pid"))
        let host = try #require(rows.first { int($0, "pid") == Int64(hostPid) && $0["filename"] as? String == "/etc/hostname" })
        #expect(host["container_id"] as? String == "")
        #expect(host["container_image"] as? String == "")
        #expect((host["container_labels_json"] as? [String: Any])?.isEmpty == true)
    }

    /// Kubernetes nodes run containerd. A container it runs as the kubelet would (namespace
    /// k8s.io, a kubepods cgroup, the kubelet's labels) has its image and labels from
    /// containerd's API. A containerd of the test's own (its socket given by
    /// `containerd_socket`), the test image imported from dockerd: no registry is needed.
    @Test func aContainerdContainerHasItsImageAndLabelsFromContainerd() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let socket = containerd.socket
        let image = containerd.image
        let id = PrivateContainerd.newID()
        let pod = "pod\(getpid())"
        try containerd.ctr(["run", "-d", "--label", "io.kubernetes.pod.name=web-0", "--label", "io.kubernetes.pod.namespace=shop",
                 "--cgroup", "/kubepods/besteffort/\(pod)/\(id)", image, id, "sleep", "600"])
        defer { containerd.remove(id, pod: pod) }
        let r = try traceAround("tracing", config: "containerd_socket: \(socket)\n" + Self.containerFilter) {
            // The first event of the container triggers the lookup; judge the steady state.
            try containerd.ctr(["task", "exec", "--exec-id", "warm", id, "sh", "-c", ":"])
            sleep(1)
            try containerd.ctr(["task", "exec", "--exec-id", "cat", id, "cat", "/etc/motd"])
        }
        let all = try jsonLines(r.stdout)
        let rows = all.filter { $0["container_id"] as? String == id }
        let cat = try #require(rows.last { $0["comm"] as? String == "cat" && $0["filename"] as? String == "/etc/motd" }, "\(Self.missing(all, container: id, stderr: r.stderr))")
        #expect(cat["container_image"] as? String == image)
        // The kubelet's labels, and the one ctr adds from the image's config.
        #expect(cat["container_labels_json"] as? [String: String] == [
            "io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop", "io.containerd.image.config.stop-signal": "SIGTERM",
        ])
        #expect(cat["cgroup_name"] as? String == "/kubepods/besteffort/\(pod)/\(id)")
    }

    @Test func aProcessMovedIntoANewCgroupGetsThatCgroupName() throws {
        let mount = try #require(CgroupResolver().mountPoint, "no cgroup2 mount")
        let name = "infrasight-test-\(getpid())"
        let dir = "\(mount)/\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { rmdir(dir) }
        var pid: Int32 = 0
        let rows = try Self.trace(comms: ["cat"]) {
            let p = try BackgroundProcess("/bin/sh", ["-c", "echo $$ > \(dir)/cgroup.procs && exec cat /etc/hostname"])
            _ = p.wait()
            pid = p.pid
        }
        let row = try #require(rows.first { int($0, "pid") == Int64(pid) && $0["filename"] as? String == "/etc/hostname" })
        #expect(row["cgroup_name"] as? String == "/\(name)")
        var st = stat()
        stat(dir, &st)
        #expect(int(row, "cgroup_id") == Int64(st.st_ino))
        #expect(row["container_id"] as? String == "")
    }

    @Test func aProcessOfATestUserHasThatUsersName() throws {
        let user = "isuser\(getpid() % 100_000)"
        let add = try run("/usr/sbin/useradd", ["-M", "-N", "-s", "/usr/sbin/nologin", user])
        #expect(add.status == 0, "\(add.stderr)")
        defer { _ = try? run("/usr/sbin/userdel", [user]) }
        let uid = try run("/usr/bin/id", ["-u", user]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var pid: Int32 = 0
        let rows = try Self.trace(comms: ["cat"]) {
            let p = try BackgroundProcess("/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "/bin/cat", "/etc/hostname"])
            _ = p.wait()
            pid = p.pid
        }
        let row = try #require(rows.first { int($0, "pid") == Int64(pid) && $0["filename"] as? String == "/etc/hostname" })
        #expect(row["user"] as? String == user)
        #expect(String(int(row, "uid") ?? -1) == uid)
    }

    /// 10,000 distinct uids and cgroup ids through the enricher: the caches stay bounded.
    @Test func cachesStayBoundedUnderTenThousandDistinctUidsAndCgroups() throws {
        let enricher = Enricher(nodeName: "n", cgroupCapacity: 1000)
        let schema = try TableSchema(ddl: """
            CREATE TABLE t (uid UInt32, cgroup_id UInt64, user String, cgroup_name String, container_id String) ENGINE = Memory
            """)
        let row = RowBuffer(schema: schema, tableIndex: 0)
        let map = HostColumnMap(schema: schema)
        var header = is_event_header()
        for i in 0..<10_000 {
            header.uid = UInt32(100_000 + i)
            header.cgroup_id = UInt64(1_000_000_000 + i)
            header.ts_enter_ns = UInt64(i)
            row.reset()
            withUnsafePointer(to: &header) { enricher.fill(row, map: map, header: $0) }
            #expect(row.string(2) == String(100_000 + i))
        }
        #expect(enricher.cgroups.cachedCount <= 1000)
        #expect(enricher.cgroups.lookups == 10_000)
    }

    @Test func runStoresContainerAttributedRows() throws {
        try Docker.ready()
        let id = try Docker.docker(["run", "-d", "--label", "team=audit", Docker.image, "sleep", "600"])
        defer { _ = try? Docker.docker(["rm", "-f", id]) }
        let data = try makeTempDir(prefix: "rundocker")
        let config = "\(data).yaml"
        try (Self.containerFilter + "  enabled: [tracing]\n").write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--data-dir", data, "--config", config])
        try agent.waitForStderr("infrasight: note: started: ")
        _ = try Docker.docker(["exec", id, "sh", "-c", ":"]) // warm-up, see above
        sleep(1)
        _ = try Docker.docker(["exec", id, "sh", "-c", ":"])
        _ = try Docker.docker(["exec", id, "cat", "/etc/motd"])
        usleep(300_000)
        agent.signal(SIGINT)
        #expect(try agent.wait(timeout: 180).status == 0)
        let r = try run(Paths.infrasight, ["query", "--data-dir", data, """
            SELECT container_image, container_labels_json.team::String, cgroup_name FROM audit.tracing_events
            WHERE container_id = '\(id)' AND filename = '/etc/motd' ORDER BY monotonic_ts_enter_ns DESC LIMIT 1
            """])
        #expect(r.stdout == "\(Docker.image)\taudit\t/docker/\(id)\n", "\(r.stderr)")
    }

    @Test func withoutARuntimeSocketOneLineSaysContainerFieldsStayEmpty() throws {
        let root = try makeTempDir(prefix: "hostroot")
        let cfg = try makeTempDir(prefix: "cfg")
        try "host_root: \(root)\n".write(toFile: "\(cfg)/c.yaml", atomically: true, encoding: .utf8)
        let r = try run(Paths.infrasight, ["trace", "--plugins", "tracing", "--config", "\(cfg)/c.yaml", "--duration", "1"])
        #expect(r.status == 0)
        #expect(r.stderr.contains("infrasight: note: no container runtime socket (docker.sock, podman.sock, containerd.sock) under \(root): container_image and labels stay empty\n"))
    }
}
