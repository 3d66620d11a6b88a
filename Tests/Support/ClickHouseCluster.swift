import Foundation
import Glibc

/// A ZooKeeper (Debian's `zookeeper` package, run as `java ... QuorumPeerMain`) on a free
/// loopback port with its own data directory: the coordination ReplicatedMergeTree and ON
/// CLUSTER DDL need. Killed when released.
public final class ZooKeeper {
    public let dir: String
    public let port: Int
    private let process: BackgroundProcess

    /// Whether the package is installed (a suite needing ZooKeeper is skipped otherwise).
    public static var isInstalled: Bool {
        FileManager.default.fileExists(atPath: "/usr/share/java/zookeeper.jar") && FileManager.default.fileExists(atPath: "/usr/bin/java")
    }

    /// Starts it and waits (at most 60 s) until it answers `ruok` with `imok`: a
    /// clickhouse-server started before that was seen to crash (SIGSEGV in its DDL worker)
    /// on its first ON CLUSTER statement.
    public init() throws {
        guard Self.isInstalled else { throw TestFailure("ZooKeeper is not installed (scripts/setup.sh installs the zookeeper package)") }
        dir = try makeTempDir(prefix: "zookeeper")
        port = try freeLoopbackPort()
        try """
            tickTime=2000
            initLimit=10
            syncLimit=5
            dataDir=\(dir)/data
            clientPort=\(port)
            clientPortAddress=127.0.0.1
            admin.enableServer=false
            4lw.commands.whitelist=ruok
            """.write(toFile: "\(dir)/zoo.cfg", atomically: true, encoding: .utf8)
        // /etc/zookeeper/conf holds the package's log4j.properties (logging to the console,
        // here the process's stdout file).
        process = try niced(
            "/usr/bin/java",
            ["-Xmx256m", "-Dzookeeper.log.dir=\(dir)", "-cp", "/usr/share/java/*:/etc/zookeeper/conf",
             "org.apache.zookeeper.server.quorum.QuorumPeerMain", "\(dir)/zoo.cfg"],
            cwd: dir)
        let port = port
        try waitUntil("ZooKeeper answers on port \(port)", timeout: 60) {
            guard process.isRunning else { throw TestFailure("ZooKeeper exited: \(process.stdout.suffix(2000)) \(process.stderr.suffix(2000))") }
            return Self.answers(port)
        }
    }

    deinit { stop() }

    /// Kills it (SIGKILL) and waits for the exit; nothing when it is not running.
    public func stop() {
        guard process.isRunning else { return }
        process.signal(SIGKILL)
        _ = process.wait()
    }

    static func answers(_ port: Int) -> Bool {
        let r = try? run("/bin/bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port) && printf ruok >&3 && head -c 4 <&3"])
        return r?.stdout == "imok"
    }
}

/// A ClickHouse cluster on this machine: ZooKeeper and four clickhouse-server 18.16
/// processes on loopback, cluster `ClickHouseCluster.name` of 2 shards × 2 replicas
/// (`internal_replication` true), each node with its own ports, data, logs and macros
/// (`{shard}` 1 or 2, `{replica}` s1r1, s1r2, s2r1, s2r2: unique in the whole cluster).
/// Users are Debian's users.xml: `default` without a password.
///
/// One per test process (`shared()`), started on first use and stopped when the process
/// exits (tests may stop, kill and restart single nodes; `start()` brings back whatever is
/// down). Not thread-safe: the suites using it are serialized.
public final class ClickHouseCluster {
    public static let name = "infrasight"

    /// One clickhouse-server of the cluster.
    public struct Node: Hashable, CustomStringConvertible, Sendable {
        public let shard: Int
        public let replica: Int
        public init(shard: Int, replica: Int) {
            self.shard = shard
            self.replica = replica
        }
        /// The `{replica}` macro: `s<shard>r<replica>`.
        public var description: String { "s\(shard)r\(replica)" }
    }

    public let dir: String
    public let zookeeper: ZooKeeper
    /// Shard-major: s1r1, s1r2, s2r1, s2r2.
    public let nodes: [Node] = [1, 2].flatMap { s in [1, 2].map { Node(shard: s, replica: $0) } }
    private var ports: [Node: (http: Int, tcp: Int, interserver: Int)] = [:]
    private var processes: [Node: BackgroundProcess] = [:]
    /// Each node's log size at its last launch (see `waitForDDLWorker`).
    private var logMarks: [Node: UInt64] = [:]

    private static let lock = NSLock()
    nonisolated(unsafe) private static var instance: ClickHouseCluster?

    /// The process's cluster, created and started on first use; on later calls, every node
    /// that is down is started again (a test may have left one stopped).
    public static func shared() throws -> ClickHouseCluster {
        lock.lock()
        defer { lock.unlock() }
        if let instance {
            try instance.start()
            return instance
        }
        let cluster = try ClickHouseCluster()
        instance = cluster
        // Static instances are never released: the servers and ZooKeeper would outlive the
        // test run without this.
        atexit { ClickHouseCluster.instance?.stopAll() }
        try cluster.start()
        return cluster
    }

    /// Writes the configuration and starts ZooKeeper; the nodes start with `start()`.
    public init() throws {
        guard Self.binary != nil else { throw TestFailure("clickhouse-server is not installed (scripts/setup.sh installs it)") }
        dir = try makeTempDir(prefix: "clickhouse-cluster")
        zookeeper = try ZooKeeper()
        for node in nodes { ports[node] = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort()) }
        for node in nodes { try writeConfig(node) }
    }

    static var binary: String? {
        ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"].first { FileManager.default.fileExists(atPath: $0) }
    }

    public func url(_ node: Node) -> String { "http://127.0.0.1:\(ports[node]!.http)/" }
    public func url(shard: Int, replica: Int) -> String { url(Node(shard: shard, replica: replica)) }
    /// Every node's HTTP URL, in `nodes` order.
    public var urls: [String] { nodes.map(url) }
    public func node(shard: Int, replica: Int) -> Node { Node(shard: shard, replica: replica) }
    public func directory(_ node: Node) -> String { "\(dir)/\(node)" }

    /// Starts every node that is not running and waits (at most 60 s) until all four answer
    /// and the cluster runs ON CLUSTER DDL on every one of them.
    public func start() throws {
        let launched = nodes.filter { processes[$0]?.isRunning != true }
        for node in launched { try launch(node) }
        for node in nodes { try waitForPing(node) }
        for node in launched { try waitForDDLWorker(node) }
        // A no-op statement that every node's DDL worker must execute: proves ZooKeeper,
        // the macros and the remote_servers entries (matched by tcp port) all line up.
        try waitUntil("ON CLUSTER DDL works on every node", timeout: 60) {
            do {
                _ = try query(nodes[0], "CREATE DATABASE IF NOT EXISTS fixture_ready ON CLUSTER \(Self.name)")
                return true
            } catch {
                return false
            }
        }
    }

    /// Starts `node` again on its data (after `stop` or `kill`) and waits until it answers.
    public func start(_ node: Node) throws {
        guard processes[node]?.isRunning != true else { return }
        try launch(node)
        try waitForPing(node)
        try waitForDDLWorker(node)
    }

    /// Stops `node` cleanly (SIGTERM) and waits for its exit (at most 60 s).
    public func stop(_ node: Node) throws {
        guard let p = processes.removeValue(forKey: node) else { return }
        p.signal(SIGTERM)
        _ = try p.wait(timeout: 60)
    }

    /// Kills `node` (SIGKILL: a crash, not a shutdown) and waits for its exit.
    public func kill(_ node: Node) {
        guard let p = processes.removeValue(forKey: node) else { return }
        p.signal(SIGKILL)
        _ = p.wait()
    }

    public func isRunning(_ node: Node) -> Bool { processes[node]?.isRunning == true }

    /// Kills every node, then ZooKeeper.
    public func stopAll() {
        for node in nodes { kill(node) }
        zookeeper.stop()
    }

    /// Runs SQL on `node` with curl (independent of the code under test); the output as text.
    @discardableResult
    public func query(_ node: Node, _ sql: String, settings: [String: String] = [:]) throws -> String {
        let parameters = settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        let r = try run("/usr/bin/curl", ["-s", "-S", "--fail-with-body", "--data-binary", sql, url(node) + (parameters.isEmpty ? "" : "?" + parameters)])
        guard r.status == 0 else { throw TestFailure("query on \(node) failed: \(r.stdout) \(r.stderr); \(whatItSaw(node))") }
        return r.stdout
    }

    /// Sends `body` (a file) as the data of `insert` (an INSERT ... FORMAT statement) to `node`.
    public func insert(_ node: Node, _ insert: String, bodyFile: String, settings: [String: String] = [:]) throws {
        var parameters = ["query": insert].merging(settings) { $1 }
        parameters = parameters.mapValues { $0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0 }
        let query = parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        let r = try run("/usr/bin/curl", ["-s", "-S", "--fail-with-body", "--data-binary", "@\(bodyFile)", url(node) + "?" + query])
        guard r.status == 0 else { throw TestFailure("insert on \(node) failed: \(r.stdout) \(r.stderr); \(whatItSaw(node))") }
    }

    /// See `serverState`.
    public func whatItSaw(_ node: Node) -> String {
        serverState("\(node)", processes[node], errorLog: "\(directory(node))/log/error.log")
    }

    private func launch(_ node: Node) throws {
        logMarks[node] = (try? FileManager.default.attributesOfItem(atPath: serverLog(node))[.size] as? UInt64) ?? 0
        processes[node] = try niced(Self.binary!, ["--config-file=\(directory(node))/config.xml"], cwd: directory(node))
    }

    private func waitForPing(_ node: Node) throws {
        let http = ports[node]!.http
        try waitUntil("clickhouse-server \(node) answers /ping on port \(http)", timeout: 60) {
            guard let p = processes[node], p.isRunning else {
                let log = (try? String(contentsOfFile: "\(directory(node))/log/error.log", encoding: .utf8)) ?? ""
                throw TestFailure("clickhouse-server \(node) exited: \(log.suffix(3000))")
            }
            let r = try run("/usr/bin/curl", ["-s", "-m", "1", "http://127.0.0.1:\(http)/ping"])
            return r.stdout.hasPrefix("Ok")
        }
    }

    /// Waits until `node`'s DDL worker, launched last, has its ZooKeeper session: 18.16
    /// answers /ping before that worker's thread has connected, and an ON CLUSTER statement
    /// sent to it in that gap crashes the server (SIGSEGV: a null ZooKeeper handle in
    /// DDLWorker::enqueueQuery; seen as "Empty reply from server" under load). The worker
    /// logs `DDLWorker: Processing tasks` (debug) once it is connected; the log outlives
    /// restarts, so only what was written after the launch is read.
    private func waitForDDLWorker(_ node: Node) throws {
        let mark = logMarks[node] ?? 0
        try waitUntil("clickhouse-server \(node)'s DDL worker has its ZooKeeper session (\(whatItSaw(node)))", timeout: 60) {
            guard processes[node]?.isRunning == true else { throw TestFailure("clickhouse-server \(node) exited: \(whatItSaw(node))") }
            guard let log = FileHandle(forReadingAtPath: serverLog(node)) else { return false }
            defer { try? log.close() }
            try log.seek(toOffset: mark)
            let text = String(decoding: try log.readToEnd() ?? Data(), as: UTF8.self)
            return text.contains("DDLWorker: Processing tasks")
        }
    }

    private func serverLog(_ node: Node) -> String { "\(directory(node))/log/server.log" }

    /// The node's config.xml: its own ports and directories, the cluster's shared parts.
    /// `interserver_http_host` is 127.0.0.1 so replicas fetch parts over loopback (the
    /// default, the host name, may not resolve to a listening address).
    private func writeConfig(_ node: Node) throws {
        let d = directory(node)
        for sub in ["data", "tmp", "log"] { try FileManager.default.createDirectory(atPath: "\(d)/\(sub)", withIntermediateDirectories: true) }
        let shards = [1, 2].map { s in
            "<shard><internal_replication>true</internal_replication>"
                + nodes.filter { $0.shard == s }.map { "<replica><host>127.0.0.1</host><port>\(ports[$0]!.tcp)</port></replica>" }.joined()
                + "</shard>"
        }.joined()
        let p = ports[node]!
        try """
            <?xml version="1.0"?>
            <yandex>
              <logger><level>debug</level><log>\(d)/log/server.log</log><errorlog>\(d)/log/error.log</errorlog><size>100M</size><count>1</count></logger>
              <listen_host>127.0.0.1</listen_host>
              <http_port>\(p.http)</http_port>
              <tcp_port>\(p.tcp)</tcp_port>
              <interserver_http_port>\(p.interserver)</interserver_http_port>
              <interserver_http_host>127.0.0.1</interserver_http_host>
              <path>\(d)/data/</path>
              <tmp_path>\(d)/tmp/</tmp_path>
              <user_files_path>\(d)/data/user_files/</user_files_path>
              <format_schema_path>\(d)/data/format_schemas/</format_schema_path>
              <users_config>/etc/clickhouse-server/users.xml</users_config>
              <default_profile>default</default_profile>
              <default_database>default</default_database>
              <mark_cache_size>268435456</mark_cache_size>
              <max_concurrent_queries>100</max_concurrent_queries>
              <zookeeper><node><host>127.0.0.1</host><port>\(zookeeper.port)</port></node></zookeeper>
              <remote_servers><\(Self.name)>\(shards)</\(Self.name)></remote_servers>
              <macros><shard>\(node.shard)</shard><replica>\(node)</replica></macros>
              <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
            </yandex>
            """.write(toFile: "\(d)/config.xml", atomically: true, encoding: .utf8)
    }
}

/// Starts the cluster's processes (four ClickHouse servers, ZooKeeper) at a lower priority
/// (nice 10): they run beside the other suites, whose kernel tests count on the tracer
/// draining its ring buffers in time; at the default priority they starved it into counted
/// ring-buffer drops (InflightJoinTests' 17,200 accepts released at once). The pid is the
/// program's own (nice execs it), so signals reach it.
func niced(_ executable: String, _ arguments: [String], cwd: String) throws -> BackgroundProcess {
    try BackgroundProcess("/usr/bin/nice", ["-n", "10", executable] + arguments, cwd: cwd)
}
