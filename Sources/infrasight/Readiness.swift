import Foundation
import InfraSightBPF
import InfraSightCore
import InfraSightMetrics
import InfraSightPipeline
import InfraSightRules
import InfraSightStorage
import Logging
import Synchronization

/// What /metrics and /readyz report for `run`, `agent` and `server`: per plugin, every
/// stage's counter; the agent's spool and connection; the server's store and agents.
final class Readiness: Sendable {
    /// What the command has to report, filled in as it starts.
    struct Parts: Sendable {
        /// run/agent: tracing and its writer.
        var runtime: ProbeRuntime?
        var writer: BatchWriter?
        /// Agent: the sender and its spool.
        var agent: AgentSender?
        var spool: BatchSpool?
        /// Server: its storage and the connected agents.
        var server: (storage: ServerStorage, agents: AgentRegistry)?
        /// run/server: detection, when on.
        var rules: RuleEngine?
        /// server: the ClickHouse store, when it is one (its node failovers).
        var clickHouse: HTTPStore?
        /// run/server: the store's disk budget (`storage.max_disk`), when it keeps one.
        var budget: StoreBudget?
    }
    private let parts = Mutex(Parts())

    /// Adds what the command has started (the metrics thread may be reading already).
    func update(_ body: (inout Parts) -> Void) {
        parts.withLock { body(&$0) }
    }

    /// run/agent: tracing has started (with the plugins that could start; `notes` names
    /// the others and why). server: listening and the store is reachable.
    var ready: (ready: Bool, notes: [String]) {
        let p = parts.withLock { $0 }
        if let server = p.server { return (server.storage.counters.storeAvailable, []) }
        guard let runtime = p.runtime else { return (false, []) }
        return (true, runtime.failures.map { "plugin \($0.plugin) not running: \($0.reason)" })
    }

    func sample() -> [Sample] {
        let p = parts.withLock { $0 }
        var out: [Sample] = []
        if let runtime = p.runtime, let writer = p.writer { out += tracing(runtime, writer, delivered: p.agent?.counters.rowsByPlugin) }
        if let agent = p.agent, let spool = p.spool { out += Self.agent(agent, spool) + Self.evicted(spool) }
        if let server = p.server { out += Self.server(server.storage, server.agents) }
        if let rules = p.rules { out += rules.samples }
        if let budget = p.budget { out += Self.budget(budget) }
        if let clickHouse = p.clickHouse {
            out.append(Sample("infrasight_store_failovers_total", [], Double(clickHouse.failovers.load(ordering: .relaxed)), .counter,
                              help: "Moves to another ClickHouse node of --clickhouse-url while one was unavailable, and back to the first"))
        }
        return out
    }

    /// `delivered`: the agent's rows acknowledged per plugin (nil for run).
    func tracing(_ runtime: ProbeRuntime, _ writer: BatchWriter, delivered: [String: UInt64]?) -> [Sample] {
        var out: [Sample] = []
        for f in runtime.failures {
            out.append(Sample("infrasight_plugin_running", [("plugin", f.plugin)], 0, .gauge, help: "1 for each plugin that started, 0 for each one that could not (see infrasight_plugins_not_running and /readyz)"))
        }
        for kind in [PluginFailure.Kind.kernelFeature, .verifier, .permission, .other] {
            let n = runtime.failures.filter { $0.kind == kind }.count
            out.append(Sample("infrasight_plugins_not_running", [("reason", kind.rawValue)], Double(n), .gauge, help: "Plugins that could not start, by reason: a kernel feature they need is missing, the verifier refused them, no permission, other"))
        }
        for probe in runtime.probes {
            let p = [("plugin", probe.name)]
            out.append(Sample("infrasight_plugin_running", p, 1, .gauge, help: "1 for each plugin that started, 0 for each one that could not (see infrasight_plugins_not_running and /readyz)"))
            let c = probe.channel.counters
            out.append(Sample("infrasight_events_received_total", p, Double(c.received.load(ordering: .relaxed)), .counter, help: "Records read from the plugin's ring buffers"))
            out.append(Sample("infrasight_kernel_drops_total", p, Double(probe.kernelDrops()), .counter, help: "Events the kernel side could not deliver (ring buffer or map full)"))
            out.append(Sample("infrasight_decode_errors_total", p, Double(c.decodeErrors.load(ordering: .relaxed)), .counter, help: "Records refused as malformed"))
            for program in probe.programStats() {
                let labels = p + [("program", program.name)]
                out.append(Sample("infrasight_bpf_program_run_seconds_total", labels, Double(program.runTimeNs) / 1e9, .counter, help: "Time the plugin's BPF program ran in the kernel (counted only while sysctl kernel.bpf_stats_enabled=1)"))
                out.append(Sample("infrasight_bpf_program_runs_total", labels, Double(program.runCount), .counter, help: "Runs of the plugin's BPF program (counted only while sysctl kernel.bpf_stats_enabled=1)"))
            }
            if let s = writer.counters[probe.name] {
                out.append(Sample("infrasight_queue_drops_total", p, Double(s.queueDrops.load(ordering: .relaxed)), .counter, help: "Rows dropped because the batch queue was full"))
                out.append(Sample("infrasight_store_space_waits_total", p, Double(s.spaceWaits.load(ordering: .relaxed)), .counter, help: "Batches that found the store's disk full and waited while the disk budget dropped the oldest rows"))
                if delivered == nil {
                    out.append(Sample("infrasight_store_drops_total", p, Double(s.storeDrops.load(ordering: .relaxed)), .counter, help: "Rows the store refused or could not take in time"))
                    out.append(Sample("infrasight_rows_stored_total", p, Double(s.stored.load(ordering: .relaxed)), .counter, help: "Rows the store confirmed"))
                } else {
                    out.append(Sample("infrasight_spool_drops_total", p, Double(s.storeDrops.load(ordering: .relaxed)), .counter, help: "Rows dropped because the spool was full"))
                    out.append(Sample("infrasight_rows_spooled_total", p, Double(s.stored.load(ordering: .relaxed)), .counter, help: "Rows written to the spool"))
                    out.append(Sample("infrasight_rows_delivered_total", p, Double(delivered?[probe.name] ?? 0), .counter, help: "Rows the server acknowledged as stored"))
                }
            }
        }
        for (cache, counters) in [("user", runtime.enricher.userCounters), ("cgroup", runtime.enricher.cgroups.counters), ("container", runtime.enricher.containers.counters)] {
            out.append(Sample("infrasight_enrichment_cache_hits_total", [("cache", cache)], Double(counters.hits.load(ordering: .relaxed)), .counter, help: "Enrichment lookups answered from the cache"))
            out.append(Sample("infrasight_enrichment_cache_misses_total", [("cache", cache)], Double(counters.misses.load(ordering: .relaxed)), .counter, help: "Enrichment lookups that went to the host (passwd, cgroupfs, runtime API)"))
        }
        let held = runtime.enricher.held.counters
        out.append(Sample("infrasight_container_rows_held_total", [], Double(held.held.load(ordering: .relaxed)), .counter, help: "Rows that waited for their container's image and labels"))
        out.append(Sample("infrasight_container_rows_released_total", [("with_metadata", "true")], Double(held.releasedWithMetadata.load(ordering: .relaxed)), .counter, help: "Rows that waited, by whether they got their container's metadata"))
        out.append(Sample("infrasight_container_rows_released_total", [("with_metadata", "false")], Double(held.releasedWithout.load(ordering: .relaxed)), .counter, help: "Rows that waited, by whether they got their container's metadata"))
        out.append(Sample("infrasight_container_rows_waiting", [], Double(held.waiting.load(ordering: .relaxed)), .gauge, help: "Rows waiting for their container's metadata now"))
        out.append(Sample("infrasight_container_rows_waiting_bytes", [], Double(held.waitingBytes.load(ordering: .relaxed)), .gauge, help: "Bytes of rows waiting for their container's metadata now"))
        out.append(Sample("infrasight_containers_announced_total", [], Double(runtime.enricher.containers.announced.load(ordering: .relaxed)), .counter, help: "Containers named by a runtime's events or listing"))
        let timing = writer.insertTiming
        out.append(Sample("infrasight_insert_seconds_sum", [], timing.seconds, .counter, help: "Time spent in store inserts (with _count: mean insert latency)"))
        out.append(Sample("infrasight_insert_seconds_count", [], Double(timing.inserts), .counter, help: "Store inserts timed"))
        out.append(Sample("infrasight_batch_rows_sum", [], Double(timing.rows), .counter, help: "Rows in inserted batches (with _count: mean batch size)"))
        out.append(Sample("infrasight_batch_rows_count", [], Double(timing.inserts), .counter, help: "Batches inserted"))
        let backlog = writer.backlog
        out.append(Sample("infrasight_batch_queue_bytes", [], Double(backlog.bytes), .gauge, help: "Sealed batches waiting for the store, in bytes"))
        out.append(Sample("infrasight_batch_queue_batches", [], Double(backlog.batches), .gauge, help: "Sealed batches waiting for the store"))
        out.append(Sample("infrasight_inserts_total", [], Double(writer.inserts.load(ordering: .relaxed)), .counter, help: "Batches handed to the store (the spool, for the agent)"))
        return out
    }

    static func evicted(_ spool: BatchSpool) -> [Sample] {
        spool.evictedRows.sorted { $0.key < $1.key }.map {
            Sample("infrasight_spool_evicted_rows_total", [("plugin", $0.key)], Double($0.value), .counter, help: "Spooled rows dropped, oldest first, to make room for newer batches in a full spool")
        }
    }

    static func budget(_ budget: StoreBudget) -> [Sample] {
        var out: [Sample] = []
        if let bytes = budget.storeBytes {
            out.append(Sample("infrasight_store_bytes", [], Double(bytes), .gauge, help: "Bytes the store's tables held on disk at the disk budget's last check"))
        }
        for (table, d) in budget.dropped.sorted(by: { $0.key < $1.key }) {
            let t = [("table", table)]
            out.append(Sample("infrasight_disk_budget_dropped_rows_total", t, Double(d.rows), .counter, help: "Rows the disk budget (storage.max_disk) dropped, oldest first"))
            out.append(Sample("infrasight_disk_budget_dropped_parts_total", t, Double(d.parts), .counter, help: "Parts (or partitions) the disk budget dropped"))
            out.append(Sample("infrasight_disk_budget_dropped_bytes_total", t, Double(d.bytes), .counter, help: "Bytes on disk the disk budget freed"))
        }
        return out
    }

    static func agent(_ agent: AgentSender, _ spool: BatchSpool) -> [Sample] {
        let c = agent.counters
        return [
            Sample("infrasight_spool_bytes", [], Double(spool.bytes), .gauge, help: "Bytes of unacknowledged batches in the spool"),
            Sample("infrasight_spool_batches", [], Double(spool.count), .gauge, help: "Unacknowledged batches in the spool"),
            Sample("infrasight_spool_dropped_rows_total", [], Double(spool.droppedRows), .counter, help: "Rows the spool limit forced out (the oldest spooled, or a batch larger than the spool)"),
            Sample("infrasight_spool_corrupt_files_total", [], Double(spool.corruptFiles), .counter, help: "Spool files that could not be read back"),
            Sample("infrasight_spool_rejected_batches_total", [], Double(spool.rejectedBatches), .counter, help: "Batches the server refused for good, set aside as .rejected"),
            Sample("infrasight_spool_rejected_rows_total", [], Double(spool.rejectedRows), .counter, help: "Rows in batches the server refused for good"),
            Sample("infrasight_grpc_connected", [], c.connected ? 1 : 0, .gauge, help: "1 while the stream to the server is up"),
            Sample("infrasight_grpc_connects_total", [], Double(c.connects), .counter, help: "Streams the server welcomed"),
            Sample("infrasight_grpc_failovers_total", [], Double(c.failovers), .counter, help: "Moves to another server after a failure, and back to the preferred one"),
            Sample("infrasight_batches_acked_total", [], Double(c.batchesAcked), .counter, help: "Batches the server acknowledged"),
            Sample("infrasight_duplicate_acks_total", [], Double(c.duplicatesAcked), .counter, help: "Resent batches the server had already stored"),
        ]
    }

    static func server(_ storage: ServerStorage, _ agents: AgentRegistry) -> [Sample] {
        let c = storage.counters
        var out = [
            Sample("infrasight_server_agents_connected", [], Double(agents.count), .gauge, help: "Agents with an open stream"),
            Sample("infrasight_server_batches_stored_total", [], Double(c.batchesStored), .counter, help: "Batches stored"),
            Sample("infrasight_server_duplicate_batches_total", [], Double(c.duplicateBatches), .counter, help: "Resent batches found stored before (nothing stored again)"),
            Sample("infrasight_server_store_retries_total", [], Double(c.storeRetries), .counter, help: "Store attempts that found it unavailable"),
            Sample("infrasight_server_store_available", [], c.storeAvailable ? 1 : 0, .gauge, help: "0 while the store is unreachable"),
        ]
        for (table, rows) in c.rowsByTable.sorted(by: { $0.key < $1.key }) {
            out.append(Sample("infrasight_server_rows_stored_total", [("table", table)], Double(rows), .counter, help: "Rows stored, per table"))
        }
        return out
    }
}

/// Starts the metrics endpoint of `run`, `agent` or `server` when asked to.
func startMetrics(_ listen: String?, readiness: Readiness, logger: Logger) throws -> MetricsServer? {
    guard let listen else { return nil }
    // The flag is checked when parsed; a config file's `metrics_listen` is checked here.
    guard let address = HostPort(listen) else { throw failure("metrics_listen must be HOST:PORT (got \(listen))", code: 2) }
    let server = MetricsServer(sample: { readiness.sample() }, ready: { readiness.ready })
    do {
        let port = try server.start(host: address.host, port: address.port)
        logger.notice("metrics on http://\(address.host):\(port)/metrics")
    } catch {
        throw failure("cannot serve metrics on \(listen): \(error)")
    }
    return server
}
