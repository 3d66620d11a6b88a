import Foundation
import InfraSightCore
import InfraSightSDK
import InfraSightSchema
import InfraSightStorage
import InfraSightTestSupport

/// Rows/s into ClickHouse 18.16 the way servers store: tracing_events RowBinary batches of
/// `rows` rows over HTTP, into one plain node (the single-server figure), then into the
/// 2 × 2 cluster of the test fixture through a Distributed table with
/// `insert_distributed_sync` (`ClusterStore`, what `infrasight server --cluster` does).
/// Every batch differs (its node name), so the replicas' deduplication drops none.
///
/// All of it runs on this machine: five ClickHouse processes and ZooKeeper share its
/// cores, so the cluster figure is a floor, not what four machines would do.
func clusterBench(rows: Int, rounds: Int) throws -> String {
    let plugin = try tracingPlugin()
    /// `rounds` distinct batches for `table` (as the store holds it).
    func batches(_ table: TableSchema) throws -> [Batch] {
        try (0..<rounds).map { round in
            let collect = TableEncoder(table)
            let channel = PluginChannel(plugin: plugin, instance: try plugin.createInstance(options: PluginOptions()),
                                        enricher: Enricher(nodeName: "bench-\(round)"), consumer: collect)
            feed(channel, total: rows)
            return Batch(table: table, bytes: Data(collect.encoder.buffer), rows: rows, id: UUID().uuidString, plugin: "bench")
        }
    }
    func rate(_ store: EventStore, _ batches: [Batch]) throws -> Int {
        let elapsed = try seconds { for b in batches { try store.insert(b) } }
        return Int(Double(rows * batches.count) / elapsed)
    }

    let single = try ClickHouseServer()
    defer { single.stop() }
    let node = try HTTPStore(url: single.url)
    let singleRate = try rate(node, try batches(try node.prepare(plugin.tables)[0]))
    single.stop()

    let cluster = try ClickHouseCluster()
    defer { cluster.stopAll() }
    try cluster.start()
    let store = try ClusterStore(try HTTPStore(url: cluster.urls.joined(separator: ",")), cluster: ClickHouseCluster.name) { print("cluster: \($0)") }
    let table = try store.prepare(plugin.tables)[0]
    let clusterRate = try rate(store, try batches(table))
    let stored = try store.query("SELECT count() FROM \(table.qualifiedName)", format: "TabSeparated")
    let perShard = try cluster.nodes.filter { $0.replica == 1 }.map { n in
        try cluster.query(n, "SELECT count() FROM \(table.database!).\(table.name)_local").trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return """
        {"bench":"cluster","server":"\(node.versionText)","rows_per_insert":\(rows),"inserts":\(rounds),\
        "single_node_rows_per_second":\(singleRate),"cluster_2x2_rows_per_second":\(clusterRate),\
        "cluster_rows_per_shard_per_second":\(clusterRate / 2),\
        "rows_stored":\(String(decoding: stored, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),\
        "rows_per_shard":[\(perShard.joined(separator: ","))]}
        """
}
