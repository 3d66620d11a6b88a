import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The rendered Kubernetes manifests, run: the agent DaemonSet's and the server
/// StatefulSet's containers are started under containerd (the runtime Kubernetes nodes
/// use) from the images `scripts/build-images.sh` built, with the command, args,
/// environment, mounts and security context the rendered specs give, the way a kubelet
/// would start them. What a kubelet adds is simulated and said: NODE_NAME from the node,
/// ConfigMap and Secret files written with their modes, /etc/hosts naming the server's
/// Service (the agent shares the server pod's network namespace, as if the Service
/// routed to it), hostPID as the host's pid namespace, and the spool's hostPath in a
/// temporary directory. A labelled workload container beside them must show up in the
/// server's store with the node name, its container id, image and labels; an agent
/// killed while the server is down sends its spool after a restart, and nothing is lost
/// or doubled.
@Suite(.serialized) struct DeployRunTests {
    static let version = "0.2.0"
    static let namespace = "k8s.io"
    /// What `ctr run` gives a container unless told otherwise (containerd's default
    /// spec): `drop: [ALL]` drops each of these (ctr 1.6 has no ALL).
    static let defaultCapabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ]

    /// `ctr -n k8s.io ARGS`.
    @discardableResult
    static func ctr(_ args: [String]) throws -> String {
        let r = try run("/usr/bin/ctr", ["-n", namespace] + args)
        guard r.status == 0 else { throw TestFailure("ctr \(args.joined(separator: " ")): \(r.stderr)") }
        return r.stdout
    }

    /// containerd running (started by `Runtimes.start()` if none answers on its default socket) and the
    /// two images imported from their `docker save` archives.
    static func ready() throws {
        try Runtimes.start()
        for name in ["infrasight", "infrasight-server"] {
            let archive = "\(Paths.packageRoot)/.build/images/\(name)-\(version).tar"
            guard FileManager.default.fileExists(atPath: archive) else {
                throw TestFailure("\(archive) is missing: run scripts/build-images.sh (scripts/test.sh does)")
            }
            try ctr(["images", "import", archive])
        }
    }

    /// A container started from a rendered pod spec's container.
    struct Task {
        let id: String
        let pid: Int32
        let log: String

        /// SIGKILL, then removes the task and the container.
        func kill() {
            _ = try? run("/usr/bin/ctr", ["-n", namespace, "task", "kill", "-s", "SIGKILL", id])
            _ = try? run("/usr/bin/ctr", ["-n", namespace, "task", "delete", "-f", id])
            _ = try? run("/usr/bin/ctr", ["-n", namespace, "container", "delete", id])
        }

        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    /// How a pod's volumes appear on this machine: a hostPath where it is (or where the
    /// test puts it), ConfigMap/Secret files written into a directory, emptyDir as tmpfs.
    struct VolumeSources {
        var hostPaths: [String: String] = [:]
        var directories: [String: String] = [:]
    }

    /// Where a container's network lives.
    enum Network {
        /// A namespace of its own (a pod's).
        case own
        /// The namespace of the task with this pid (another container of the same pod network).
        case shared(Int32)
    }

    /// `ctr run` arguments for `container` of `pod`: image, command + args, env, every
    /// volume mount (subPath as the one file), the security context (capabilities,
    /// seccomp, read-only root) and hostPID.
    static func runArguments(pod: K8sPodSpec, container: K8sContainer, environment: [String: String], sources: VolumeSources,
                             extraMounts: [String] = [], network: Network, id: String) throws -> [String] {
        var args = ["run", "-d", "--log-uri", "file:///tmp/\(id).log"]
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) { args += ["--env", "\(key)=\(value)"] }
        for mount in container.volumeMounts ?? [] {
            let readOnly = mount.readOnly == true
            var source: String
            if let directory = sources.directories[mount.name] {
                source = directory // ConfigMap, Secret or volume claim
            } else {
                let volume = try #require(pod.volume(mount.name), "no volume \(mount.name)")
                if volume.emptyDir != nil {
                    args += ["--mount", "type=tmpfs,src=tmpfs,dst=\(mount.mountPath),options=nosuid:nodev:mode=1777"]
                    continue
                }
                let hostPath = try #require(volume.hostPath, "volume \(mount.name) has no files here")
                source = sources.hostPaths[hostPath.path] ?? hostPath.path
                if hostPath.type == "DirectoryOrCreate" { // as the kubelet does
                    try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
                }
            }
            if let sub = mount.subPath { source += "/\(sub)" }
            args += ["--mount", "type=bind,src=\(source),dst=\(mount.mountPath),options=rbind:\(readOnly ? "ro" : "rw")"]
        }
        for mount in extraMounts { args += ["--mount", mount] }
        let security = container.securityContext
        #expect(security?.privileged != true)
        if security?.capabilities?.drop?.contains("ALL") == true {
            for cap in defaultCapabilities { args += ["--cap-drop", cap] }
        }
        for cap in security?.capabilities?.add ?? [] { args += ["--cap-add", "CAP_\(cap)"] }
        let seccomp = security?.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type
        if seccomp == "RuntimeDefault" { args.append("--seccomp") } else { #expect(seccomp == nil || seccomp == "Unconfined") }
        if security?.readOnlyRootFilesystem == true { args.append("--read-only") }
        if pod.hostPID == true { args += ["--with-ns", "pid:/proc/\(getpid())/ns/pid"] }
        #expect(pod.hostNetwork != true)
        if case .shared(let pid) = network { args += ["--with-ns", "network:/proc/\(pid)/ns/net"] }
        let image = container.image.contains("/") ? container.image : "docker.io/library/\(container.image)"
        args += [image, id] + (container.command ?? []) + (container.args ?? [])
        return args
    }

    /// Starts a container and returns its task.
    static func start(_ arguments: [String], id: String) throws -> Task {
        _ = try? run("/usr/bin/ctr", ["-n", namespace, "container", "delete", id])
        try ctr(arguments)
        let listing = try ctr(["task", "ls"])
        let line = try #require(listing.split(separator: "\n").first { $0.hasPrefix(id + " ") }, "task \(id) is not running: \(listing)")
        let pid = try #require(Int32(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        return Task(id: id, pid: pid, log: "/tmp/\(id).log")
    }

    /// GET http://127.0.0.1:PORT/PATH inside `task`'s network namespace: the status code.
    static func probe(_ task: Task, port: Int, path: String) throws -> Int {
        let r = try run("/usr/bin/nsenter", ["--net=/proc/\(task.pid)/ns/net", "/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "3", "http://127.0.0.1:\(port)\(path)"])
        return Int(r.stdout) ?? 0
    }

    static func query(_ dataDir: String, _ sql: String) throws -> String {
        let r = try run(Paths.infrasight, ["query", "--data-dir", dataDir, sql])
        guard r.status == 0 else { throw TestFailure("query \(sql): \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func theRenderedAgentAndServerRunAndAWorkloadsRowsArriveWithItsNodeAndContainer() throws {
        try Self.ready()
        let rendered = try Manifests.render("in-cluster")
        let dir = try makeTempDir(prefix: "deploy-run")
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        let node = "deploy-node-\(tag)"

        // The server pod: its volume claim is a directory owned by root and lent to group
        // 65532 (fsGroup), /tmp a tmpfs.
        let serverPod = try rendered.serverWorkload().spec.template.spec
        let serverContainer = try rendered.serverContainer()
        let claim = "\(dir)/server-claim"
        try FileManager.default.createDirectory(atPath: claim, withIntermediateDirectories: true)
        let fsGroup = try #require(serverPod.securityContext?.fsGroup)
        #expect(chown(claim, 0, gid_t(fsGroup)) == 0 && chmod(claim, 0o2775) == 0)
        let dataDir = "\(claim)/\(try #require(serverContainer.flag("--data-dir")).replacingOccurrences(of: "/var/lib/infrasight/", with: ""))"
        var serverSources = VolumeSources()
        serverSources.directories["data"] = claim
        let serverID = "infrasight-server-\(tag)"
        let serverArgs = try Self.runArguments(
            pod: serverPod, container: serverContainer, environment: try rendered.environment(of: serverContainer, nodeName: node),
            sources: serverSources, network: .own, id: serverID)
        var server = try Self.start(serverArgs, id: serverID)
        defer { server.kill() }
        let serverMetrics = try #require(serverContainer.portNumber(.string("metrics")))
        try waitUntil("the server's /readyz", timeout: 60) { try Self.probe(server, port: serverMetrics, path: "/readyz") == 200 }
        #expect(try Self.probe(server, port: serverMetrics, path: "/healthz") == 200)
        #expect(server.output.contains("listening on 0.0.0.0:50051"), "\(server.output)")

        // The agent pod, in the server pod's network namespace; its Service name in /etc/hosts.
        let agentPod = try rendered.agentPod()
        let agentContainer = try rendered.agentContainer()
        var agentSources = VolumeSources()
        for volume in ["config", "secret"] {
            let files = "\(dir)/agent-\(volume)"
            try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
            try rendered.writeFiles(of: try #require(agentPod.volume(volume)), into: files)
            agentSources.directories[volume] = files
        }
        let spool = "\(dir)/node-spool"
        agentSources.hostPaths[try #require(agentPod.volume("spool")?.hostPath?.path)] = spool
        let config = try rendered.agentConfigText()
        let service = try #require(config.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("server:") })
            .split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
        try "127.0.0.1 localhost\n127.0.0.1 \(service)\n".write(toFile: "\(dir)/hosts", atomically: true, encoding: .utf8)
        let agentID = "infrasight-agent-\(tag)"
        func startAgent() throws -> Task {
            let args = try Self.runArguments(
                pod: agentPod, container: agentContainer, environment: try rendered.environment(of: agentContainer, nodeName: node),
                sources: agentSources, extraMounts: ["type=bind,src=\(dir)/hosts,dst=/etc/hosts,options=rbind:ro"], network: .shared(server.pid), id: agentID)
            return try Self.start(args, id: agentID)
        }
        var agent = try startAgent()
        defer { agent.kill() }
        let agentMetrics = try #require(agentContainer.portNumber(.string("metrics")))
        try waitUntil("the agent's /readyz", timeout: 60) { try Self.probe(agent, port: agentMetrics, path: "/readyz") == 200 }
        #expect(try Self.probe(agent, port: agentMetrics, path: "/healthz") == 200)
        try waitUntil("the agent connects", timeout: 30) { agent.output.contains("connected to server \(service)") }

        // A labelled workload beside them: containerd names it by a 64-hex id, as the CRI does.
        let workload = (0..<4).map { _ in String(format: "%016llx", UInt64.random(in: 0...UInt64.max)) }.joined()
        func runWorkload(_ n: Int) throws {
            try Self.ctr(["run", "--rm", "--label", "app=deploy-demo", "--label", "tier=test", "docker.io/library/infrasight:\(Self.version)", workload,
                          "/bin/sh", "-c", "sleep 1; for i in $(seq \(n)); do /bin/cat /etc/debian_version > /dev/null; done"])
        }
        try runWorkload(50)
        let rows = "FROM audit.tracing_events WHERE container_id = '\(workload)'"
        try waitUntil("the workload's opens are stored", timeout: 30) {
            (Int(try Self.query(dataDir, "SELECT count() \(rows) AND event_type = 'open' AND filename = '/etc/debian_version'")) ?? 0) >= 50
        }
        #expect(try Self.query(dataDir, "SELECT count() \(rows) AND event_type = 'open' AND filename = '/etc/debian_version'") == "50")
        #expect(try Self.query(dataDir, "SELECT count() \(rows) AND event_type = 'execve' AND filename = '/bin/cat' AND return_code = 0") == "50")
        #expect(try Self.query(dataDir, "SELECT DISTINCT node_name, container_image, container_labels_json.app::String, container_labels_json.tier::String \(rows)")
                == "\(node)\tdocker.io/library/infrasight:\(Self.version)\tdeploy-demo\ttest")

        // The server goes away; the agent spools what the workload does next, then is
        // killed; both come back and the spool on the node's disk is sent.
        server.kill()
        try runWorkload(70)
        sleep(3) // past batch_max_delay_ms: the rows are sealed into the spool
        let spooled = try FileManager.default.contentsOfDirectory(atPath: spool).filter { $0.hasSuffix(".batch") }
        #expect(!spooled.isEmpty, "nothing in the spool \(spool)")
        agent.kill()
        server = try Self.start(serverArgs, id: serverID)
        try waitUntil("the server's /readyz after the restart", timeout: 60) { try Self.probe(server, port: serverMetrics, path: "/readyz") == 200 }
        agent = try startAgent()
        try waitUntil("the spooled rows are stored", timeout: 60) {
            (Int(try Self.query(dataDir, "SELECT count() \(rows) AND event_type = 'open' AND filename = '/etc/debian_version'")) ?? 0) >= 120
        }
        sleep(2)
        #expect(try Self.query(dataDir, "SELECT count() \(rows) AND event_type = 'open' AND filename = '/etc/debian_version'") == "120")
        #expect(try Self.query(dataDir, "SELECT count() \(rows) AND event_type = 'execve' AND filename = '/bin/cat'") == "120")
        #expect(agent.output.contains("batches from before; sending them first"), "\(agent.output)")
    }
}
