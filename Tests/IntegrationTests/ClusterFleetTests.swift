import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The fleet on the cluster: three agents tracing this host, two `infrasight server --cluster`
/// each writing through its own node (the others as fallbacks), the 2 × 2 cluster of
/// `ClickHouseCluster` — through a server killed mid-stream, a ClickHouse node stopped, both
/// restarted, and a whole shard down for 10 s. Every event stored exactly once, on both
/// replicas of its shard.
extension ClusterTests {
    /// `infrasight server --cluster` storing through `first` (then the other nodes in turn).
    func clusterServer(port: Int = 0, first: ClickHouseCluster.Node, metrics: Int? = nil) throws -> Fleet.Server {
        let urls = ([first] + cluster.nodes.filter { $0 != first }).map(cluster.url).joined(separator: ",")
        return try Fleet.Server.start(port: port, store: [], extra: ["--cluster", ClickHouseCluster.name] + (metrics.map { ["--metrics-listen", "127.0.0.1:\($0)"] } ?? []),
                                           environment: ["INFRASIGHT_CLICKHOUSE_URL": urls])
    }

    /// The servers each agent prefers, from its "started" line.
    static func preferred(_ stderr: String) -> String? {
        guard let r = stderr.range(of: "(prefers ") else { return nil }
        return String(stderr[r.upperBound...].prefix { $0 != ")" })
    }

    @Test func threeAgentsTwoServersAndFourNodesStoreEveryEventOnceThroughCrashesAndOutages() throws {
        let (helper, marker, dir) = try Fleet.openLoop()
        let n11 = cluster.node(shard: 1, replica: 1), n12 = cluster.node(shard: 1, replica: 2)
        let n21 = cluster.node(shard: 2, replica: 1), n22 = cluster.node(shard: 2, replica: 2)
        // The servers create the tables themselves, ON CLUSTER, at the first agent's hello.
        let s0 = try clusterServer(first: n21)
        var s1: Fleet.Server? = try clusterServer(first: n11)
        let port1 = s1!.port
        let servers = "127.0.0.1:\(s0.port),127.0.0.1:\(port1)"
        // node-a and node-c prefer the second server, node-b the first (FNV-1a of the name).
        let names = ["node-a", "node-b", "node-c"]
        let agents = try names.map { name in
            let p = try BackgroundProcess(Paths.infrasight, ["agent", "--server", servers, "--failback-after", "2", "--config", "\(dir)/agent.yaml",
                                                             "--spool-dir", "\(dir)/spool-\(name)"], environment: ["NODE_NAME": name])
            try p.waitForStderr("infrasight: note: started: ", timeout: 60)
            return p
        }
        #expect(agents.map { Self.preferred($0.stderr) } == ["127.0.0.1:\(port1)", "127.0.0.1:\(s0.port)", "127.0.0.1:\(port1)"], "\(agents.map(\.stderr))")

        var total = 0
        func generate() throws {
            try Fleet.openLoop(helper, marker, 20_000)
            total += 20_000
            usleep(500_000)
        }
        try generate()
        // kill -9 the server two agents use, mid-stream: they move to the other one and
        // resend what it had not acknowledged.
        try Fleet.openLoop(helper, marker, 20_000)
        total += 20_000
        s1!.process.signal(SIGKILL)
        _ = s1!.process.wait()
        s1 = nil
        try generate()
        // The node the surviving server writes through goes down: it moves to another node.
        try cluster.stop(n21)
        try generate()
        try generate()
        // Both back: the node catches up from its replica, the agents move back to the
        // server they prefer.
        try cluster.start(n21)
        s1 = try clusterServer(port: port1, first: n11)
        usleep(3_000_000)
        try generate()
        try waitUntil("the agents that prefer the restarted server are back on it", timeout: 30) {
            s1!.process.stderr.components(separatedBy: "agent node-").count - 1 >= 2
        }

        // A whole shard down for 10 s: no node can take a batch (every insert waits for both
        // shards); the servers hold their agents back and retry, the agents spool.
        try cluster.stop(n21)
        try cluster.stop(n22)
        try generate()
        sleep(10)
        try cluster.start(n21)
        try cluster.start(n22)
        try generate()

        var spooled: [String: Int] = [:]
        for (name, agent) in zip(names, agents) {
            agent.signal(SIGINT)
            let r = try agent.wait(timeout: 180)
            #expect(r.status == 0, "\(name): \(r.stderr)")
            spooled[name] = try FleetTests.checkConservation(r, total: total)
        }
        #expect(agents[0].stderr.contains("trying 127.0.0.1:\(s0.port)"), "\(agents[0].stderr)")
        #expect(agents[0].stderr.contains("connected to server 127.0.0.1:\(s0.port)"), "\(agents[0].stderr)")
        #expect(agents[0].stderr.contains("moving back to it"), "\(agents[0].stderr)")
        let r0 = try s0.stop(), r1 = try s1!.stop()
        #expect(r0.status == 0 && r1.status == 0, "\(r0.stderr) \(r1.stderr)")
        #expect(r0.stderr.contains("holding the agent's batches") || r1.stderr.contains("holding the agent's batches"), "\(r0.stderr)\n\(r1.stderr)")
        // The first server's own node went down: it went on through another one.
        let failovers = r0.stderr.components(separatedBy: "store failovers ").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        #expect(failovers >= 1, "\(r0.stderr)")

        // Every event once: per agent through every node's Distributed table, none twice,
        // and on both replicas of its shard.
        for node in cluster.nodes {
            for name in names {
                let stored = try cluster.query(node, "SELECT count(), uniqExact(pid, monotonic_ts_enter_ns) FROM audit.tracing_events WHERE filename = '\(marker)' AND node_name = '\(name)'")
                #expect(stored == "\(spooled[name]!)\t\(spooled[name]!)\n", "\(name) read on \(node)")
            }
        }
        // Each shard's count once both its replicas agree (replication after a restart takes
        // a moment).
        let tracing = try #require(try Self.firstPartyTables().first { $0.name == "tracing_events" })
        let shards = try replicatedCounts(tracing, where: "filename = '\(marker)'", timeout: 60)
        #expect(shards[0] > 0 && shards[1] > 0, "\(shards)")
        #expect(shards[0] + shards[1] == spooled.values.reduce(0, +), "\(shards)")
        // The ledger is cluster-wide: each batch recorded once, whichever server stored it.
        let ledger = try cluster.query(n12, "SELECT count() - uniqExact(batch_id) FROM infrasight.pipeline_batches FINAL")
        #expect(ledger == "0\n")
    }
}
