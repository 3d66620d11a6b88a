import Foundation
import Glibc
import InfraSightCore
import InfraSightTestSupport
import Testing

/// Every row of a container carries its image and labels from the container's first
/// instant: the runtimes' event streams name a container at create, before its first
/// process runs, and rows of a container still being looked up wait for it (bounded).
/// Real dockerd and containerd; a fake Docker API (a unix socket served by a script) for
/// a runtime that never answers and for an event stream that drops.
@Suite(.serialized) struct ContainerStartTests {
    /// `trace --plugins tracing` (with `config` lines, if any) around `workload`.
    static func trace(config: String? = nil, settle: Double = 0.5, _ workload: () throws -> Void) throws -> (rows: [[String: Any]], stderr: String) {
        let r = try traceAround("tracing", config: config, settle: settle, workload)
        return (try jsonLines(r.stdout), r.stderr)
    }

    static func labels(_ row: [String: Any]) -> [String: String]? { row["container_labels_json"] as? [String: String] }

    /// Traces only what a one-shot container's start and its command run as (runc's init,
    /// which execs the entrypoint, and `cat`): other suites load the host meanwhile, and a
    /// trace of everything would lose rows to a full ring buffer (counted, but lost).
    static let containerComms = """
        plugins:
          options:
            tracing:
              include_comms: ["runc:[2:INIT]", "cat"]

        """

    @Test func aOneShotDockerContainerCarriesItsImageAndLabelsInEveryRowFromItsEntrypointsExec() throws {
        try Docker.ready()
        var id = ""
        let (rows, stderr) = try Self.trace(config: Self.containerComms) {
            // Runs one command and is gone in well under 50 ms of its own time.
            id = try Docker.docker(["run", "-d", "--label", "app=oneshot", "--label", "tier=batch", Docker.image, "cat", "/etc/motd"])
            try waitUntil("the container exits", timeout: 30) { (try? Docker.docker(["inspect", "-f", "{{.State.Status}}", id])) == "exited" }
        }
        defer { _ = try? Docker.docker(["rm", "-f", id]) }
        let mine = rows.filter { $0["container_id"] as? String == id }
        // The entrypoint's own execve (runc's init becomes cat) and cat's open.
        let exec = try #require(mine.first { $0["event_type"] as? String == "execve" && $0["argv"] as? String == "cat /etc/motd" }, "\(mine.count) rows; \(stderr)")
        #expect(exec["container_image"] as? String == Docker.image)
        #expect(Self.labels(exec) == ["app": "oneshot", "tier": "batch"])
        #expect(mine.contains { $0["filename"] as? String == "/etc/motd" && $0["comm"] as? String == "cat" })
        let without = mine.filter { $0["container_image"] as? String != Docker.image || Self.labels($0) != ["app": "oneshot", "tier": "batch"] }
        #expect(without.isEmpty, "\(without.count) of \(mine.count) rows lack the metadata: \(without.prefix(3))")
    }

    @Test func twentyDockerContainersStartedAtOnceEachCarryTheirOwnLabels() throws {
        try Docker.ready()
        let script = (0..<20).map { "\(Docker.client) run -d --label n=\($0) --label batch=b\(getpid()) \(Docker.image) cat /etc/motd > /dev/null &" }.joined(separator: "\n") + "\nwait\n"
        let (rows, stderr) = try Self.trace(config: Self.containerComms) {
            let r = try run("/bin/sh", ["-c", script])
            guard r.status == 0 else { throw TestFailure("docker run: \(r.stderr)") }
            try waitUntil("the 20 containers exit", timeout: 60) {
                let running = try Docker.docker(["ps", "-q", "--filter", "label=batch=b\(getpid())"])
                return running.isEmpty
            }
        }
        let ids = try Docker.docker(["ps", "-aq", "--no-trunc", "--filter", "label=batch=b\(getpid())"]).split(separator: "\n").map(String.init)
        defer { _ = try? Docker.docker(["rm", "-f"] + ids) }
        #expect(ids.count == 20)
        for id in ids {
            let n = try Docker.docker(["inspect", "-f", "{{index .Config.Labels \"n\"}}", id])
            let mine = rows.filter { $0["container_id"] as? String == id }
            #expect(mine.contains { $0["event_type"] as? String == "execve" && $0["argv"] as? String == "cat /etc/motd" }, "container \(n): \(mine.count) rows; \(stderr)")
            let wrong = mine.filter { $0["container_image"] as? String != Docker.image || Self.labels($0) != ["n": n, "batch": "b\(getpid())"] }
            #expect(wrong.isEmpty, "container \(n): \(wrong.count) of \(mine.count) rows without its own metadata: \(wrong.prefix(2))")
        }
    }

    /// As the kubelet runs a container: containerd namespace k8s.io, a 64-hex id, a
    /// kubepods cgroup, the kubelet's labels; the task runs one command, exits and is
    /// deleted at once (its cgroup with it), likely before the agent has read its rows.
    @Test func aOneShotContainerdContainerCarriesItsImageAndLabelsInEveryRow() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let id = PrivateContainerd.newID()
        let pod = "pod\(getpid())"
        defer { containerd.remove(id, pod: pod) }
        let (rows, stderr) = try Self.trace(config: "containerd_socket: \(containerd.socket)\n" + Self.containerComms) {
            try containerd.ctr(["run", "--rm", "--label", "io.kubernetes.pod.name=job-0", "--label", "io.kubernetes.pod.namespace=batch",
                                "--cgroup", "/kubepods/besteffort/\(pod)/\(id)", containerd.image, id, "cat", "/etc/motd"])
        }
        let expected = ["io.kubernetes.pod.name": "job-0", "io.kubernetes.pod.namespace": "batch", "io.containerd.image.config.stop-signal": "SIGTERM"]
        let mine = rows.filter { $0["container_id"] as? String == id }
        let exec = try #require(mine.first { $0["event_type"] as? String == "execve" && $0["argv"] as? String == "cat /etc/motd" }, "\(mine.count) rows; \(stderr)")
        #expect(exec["cgroup_name"] as? String == "/kubepods/besteffort/\(pod)/\(id)")
        #expect(exec["container_image"] as? String == containerd.image)
        #expect(Self.labels(exec) == expected)
        let without = mine.filter { $0["container_image"] as? String != containerd.image || Self.labels($0) != expected }
        #expect(without.isEmpty, "\(without.count) of \(mine.count) rows lack the metadata: \(without.prefix(3))")
    }

    /// podman's Docker-compatible API (`podman system service`) on a socket of the test's
    /// own, with the test image loaded from dockerd; cgroupfs and runc, as the machines
    /// here need (ENVIRONMENT.md).
    final class Podman {
        let dir: String
        let socket: String
        let service: BackgroundProcess
        let environment: [String: String]
        static let image = "localhost/\(Docker.image)"

        init() throws {
            try Docker.ready()
            dir = try makeTempDir(prefix: "podman")
            socket = "\(dir)/podman.sock"
            try """
                [containers]
                default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
                [engine]
                runtime = "runc"
                cgroup_manager = "cgroupfs"
                events_logger = "file"
                """.write(toFile: "\(dir)/containers.conf", atomically: true, encoding: .utf8)
            environment = ProcessInfo.processInfo.environment.merging(["CONTAINERS_CONF": "\(dir)/containers.conf"]) { _, new in new }
            _ = try Docker.docker(["save", Docker.image, "-o", "\(dir)/image.tar"])
            let load = try run("/usr/bin/podman", ["load", "-i", "\(dir)/image.tar"], environment: environment)
            guard load.status == 0 else { throw TestFailure("podman load: \(load.stderr)") }
            service = try BackgroundProcess("/usr/bin/podman", ["system", "service", "--time=0", "unix://\(socket)"], environment: environment)
            try waitUntil("podman's API listens (\(service.stderr.suffix(300)))", timeout: 30) { UnixSocket.exists(socket) }
        }

        @discardableResult
        func podman(_ args: [String]) throws -> String {
            let r = try run("/usr/bin/podman", ["--url", "unix://\(socket)"] + args, environment: environment)
            guard r.status == 0 else { throw TestFailure("podman \(args.joined(separator: " ")): \(r.stderr)") }
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func stop() {
            service.signal(SIGTERM)
            _ = try? service.wait(timeout: 30)
        }
    }

    @Test func aOneShotPodmanContainerCarriesItsImageAndLabelsInEveryRow() throws {
        let podman = try Podman()
        defer { podman.stop() }
        var id = ""
        let (rows, stderr) = try Self.trace(config: "docker_socket: \(podman.socket)\n" + Self.containerComms) {
            id = try podman.podman(["run", "-d", "--label", "app=pod", "--label", "tier=one", Podman.image, "cat", "/etc/motd"])
            try waitUntil("the container exits", timeout: 30) { (try? podman.podman(["inspect", "-f", "{{.State.Status}}", id])) == "exited" }
        }
        defer { _ = try? podman.podman(["rm", "-f", id]) }
        #expect(id.count == 64)
        let mine = rows.filter { $0["container_id"] as? String == id }
        let exec = try #require(mine.first { $0["event_type"] as? String == "execve" && $0["argv"] as? String == "cat /etc/motd" }, "\(mine.count) rows; \(stderr)")
        #expect(exec["cgroup_name"] as? String == "/libpod_parent/libpod-\(id)")
        #expect(exec["container_image"] as? String == Podman.image)
        #expect(Self.labels(exec) == ["app": "pod", "tier": "one"])
        let without = mine.filter { $0["container_image"] as? String != Podman.image || Self.labels($0) != ["app": "pod", "tier": "one"] }
        #expect(without.isEmpty, "\(without.count) of \(mine.count) rows lack the metadata: \(without.prefix(3))")
    }

    /// A Docker API on a unix socket, served by a Python script: `silent` accepts and never
    /// answers; `relist` drops its first event stream at once, then keeps the next open,
    /// lists one container (`id`, image `fake/image:1`, labels {"from": "listing"}) and
    /// refuses every inspect. Counts event-stream connections in `dir/events`.
    final class FakeDockerAPI {
        let dir: String
        let socket: String
        let process: BackgroundProcess

        init(mode: String, id: String) throws {
            dir = try makeTempDir(prefix: "fakedocker")
            socket = "\(dir)/docker.sock"
            let script = #"""
                import json, os, socket, sys, threading, time
                path, mode, cid, counter = sys.argv[1:5]
                server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                server.bind(path)
                server.listen(64)
                streams = 0
                def serve(conn):
                    global streams
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    target = data.split(b" ")[1].decode()
                    if target.startswith("/events"):
                        streams += 1
                        open(counter, "w").write(str(streams))
                        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
                        if streams == 1:
                            conn.close()
                            return
                        time.sleep(3600)
                    elif target.startswith("/containers/json"):
                        body = json.dumps([{"Id": cid, "Image": "fake/image:1", "Labels": {"from": "listing"}}]).encode()
                        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
                    else:
                        conn.sendall(b"HTTP/1.0 500 Internal Server Error\r\n\r\n")
                    conn.close()
                if mode == "silent":
                    time.sleep(3600)  # the backlog accepts connections; nothing ever answers
                while True:
                    conn, _ = server.accept()
                    threading.Thread(target=serve, args=(conn,), daemon=True).start()
                """#
            try script.write(toFile: "\(dir)/fake.py", atomically: true, encoding: .utf8)
            process = try BackgroundProcess("/usr/bin/python3", ["\(dir)/fake.py", socket, mode, id, "\(dir)/events"])
            try waitUntil("the fake Docker API listens", timeout: 10) { UnixSocket.exists(socket) }
        }

        var eventStreams: Int { Int((try? String(contentsOfFile: "\(dir)/events", encoding: .utf8)) ?? "0") ?? 0 }

        func stop() {
            process.signal(SIGKILL)
            _ = process.wait()
        }
    }

    /// A cgroup named as Docker names a container's (`/docker/<id>`): a container as far
    /// as the enricher can tell, whatever runtime is asked about it. Kept until the rows
    /// are in (the enricher names a cgroup by its path), then `remove`d.
    struct ContainerCgroup {
        let dir: String
        let mount: String

        init(_ id: String) throws {
            guard let mount = CgroupResolver().mountPoint else { throw TestFailure("no cgroup2 mount") }
            self.mount = mount
            dir = "\(mount)/docker/\(id)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }

        /// Runs `command` in the cgroup; its pid.
        func run(_ command: String) throws -> Int32 {
            let p = try BackgroundProcess("/bin/sh", ["-c", "echo $$ > \(dir)/cgroup.procs && exec \(command)"])
            let r = p.wait()
            guard r.status == 0 else { throw TestFailure("\(command): \(r.stderr)") }
            return p.pid
        }

        func remove() {
            rmdir(dir)
            rmdir("\(mount)/docker") // only when empty: dockerd's containers keep it
        }
    }

    /// A cgroup removed the moment its process exits is still named (the host's BPF
    /// recorded its path when it was made): its rows keep their cgroup and container id.
    @Test func aCgroupRemovedRightAfterItsProcessExitsStillNamesItsRows() throws {
        let id = PrivateContainerd.newID()
        var pid: Int32 = 0
        let (rows, stderr) = try Self.trace(config: Self.containerComms) {
            let cgroup = try ContainerCgroup(id)
            pid = try cgroup.run("cat /etc/hostname")
            cgroup.remove()
        }
        let open = try #require(rows.first { int($0, "pid") == Int64(pid) && $0["filename"] as? String == "/etc/hostname" }, "\(stderr)")
        #expect(open["cgroup_name"] as? String == "/docker/\(id)")
        #expect(open["container_id"] as? String == id)
    }

    @Test func aRuntimeThatNeverAnswersHoldsAContainersRowsForTheBoundThenTheyAreStoredAndCounted() throws {
        let id = PrivateContainerd.newID()
        let api = try FakeDockerAPI(mode: "silent", id: id)
        defer { api.stop() }
        let cgroup = try ContainerCgroup(id)
        defer { cgroup.remove() }
        var pid: Int32 = 0
        // No containerd either: the silent socket is the only runtime.
        let (rows, stderr) = try Self.trace(config: "docker_socket: \(api.socket)\ncontainerd_socket: \(api.dir)/none.sock\ncontainer_metadata_wait_ms: 1500\n" + Self.containerComms, settle: 3) {
            pid = try cgroup.run("cat /etc/hostname")
        }
        let mine = rows.filter { $0["container_id"] as? String == id }
        let open = try #require(mine.first { int($0, "pid") == Int64(pid) && $0["filename"] as? String == "/etc/hostname" }, "\(mine.count) rows; \(stderr)")
        #expect(open["container_image"] as? String == "")
        #expect((open["container_labels_json"] as? [String: Any])?.isEmpty == true)
        // Every one of its rows was held and then stored without metadata, and said so
        // (with the rows of any other container on the host: no runtime answers for them).
        let counts = try #require(SummaryLine.parse(stderr, plugin: "containers"), "\(stderr)")
        #expect(counts["rows held"].map { $0 >= mine.count } == true, "\(mine.count) rows; \(counts)")
        #expect(counts["without"] == counts["rows held"] && counts["with metadata"] == 0, "\(counts)")
    }

    @Test func aDroppedEventStreamIsReconnectedAndTheContainersItMissedAreListed() throws {
        let id = PrivateContainerd.newID()
        let api = try FakeDockerAPI(mode: "relist", id: id)
        defer { api.stop() }
        let cgroup = try ContainerCgroup(id)
        defer { cgroup.remove() }
        var pid: Int32 = 0
        let (rows, stderr) = try Self.trace(config: "docker_socket: \(api.socket)\ncontainerd_socket: \(api.dir)/none.sock\n" + Self.containerComms) {
            // The first stream drops at once; the watcher reconnects (0.5 s backoff) and lists.
            try waitUntil("the event stream is reopened", timeout: 20) { api.eventStreams >= 2 }
            sleep(1)
            pid = try cgroup.run("cat /etc/hostname")
        }
        let open = try #require(rows.first { int($0, "pid") == Int64(pid) && $0["filename"] as? String == "/etc/hostname" }, "\(stderr)")
        #expect(open["container_id"] as? String == id)
        // Inspect is refused: the image and labels come from the listing alone.
        #expect(open["container_image"] as? String == "fake/image:1")
        #expect(Self.labels(open) == ["from": "listing"])
    }
}
