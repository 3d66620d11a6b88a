import ArgumentParser
import CHostShims
import Foundation
import Glibc
import InfraSightCore
import InfraSightPipeline
import InfraSightPipelineProto
import InfraSightStorage
import Logging
import ServiceLifecycle

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Trace this host and stream the rows to an `infrasight server` over gRPC.",
        discussion: """
            Every sealed batch is written to a disk spool first and leaves it only when the server \
            acknowledges it, so server or ClickHouse outages and agent restarts lose nothing (up to \
            --spool-max-mb; what the limit forces out is counted). SIGINT/SIGTERM (or --duration) stop \
            tracing, then the agent waits up to --drain-timeout for the server to take the spool.
            """)

    @OptionGroup var source: PluginSourceOptions
    @Option(help: ArgumentHelp("The server's gRPC address, or several separated by commas: the agent prefers one (by its node name) and fails over to the next (or agent.server in the config file).", valueName: "HOST:PORT[,HOST:PORT...]")) var server: String?
    @Option(name: .customLong("failback-after"), help: ArgumentHelp("While on another server, check this often whether the preferred one is back (default: 60, or agent.failback_after).", valueName: "SECONDS"))
    var failbackAfter: Double?
    @Option(help: ArgumentHelp("Compress the stream: none (default), gzip or deflate.", valueName: "ALGORITHM")) var compression: WireCompression?
    @OptionGroup var security: PipelineSecurityOptions
    @Option(help: ArgumentHelp("Stop tracing after SECONDS.", valueName: "SECONDS")) var duration: Double?
    @Option(name: .customLong("spool-dir"), help: ArgumentHelp("Where unacknowledged batches wait (default: <data dir>/spool).", valueName: "DIR"))
    var spoolDir: String?
    @Option(name: .customLong("spool-max-mb"), help: ArgumentHelp("Spool size limit in MiB (default: 1024).", valueName: "MIB")) var spoolMaxMB: Int?
    @Option(name: .customLong("drain-timeout"), help: ArgumentHelp("At exit, wait this long for the server to acknowledge the spool (default: 30).", valueName: "SECONDS"))
    var drainTimeout: Double?
    @Option(name: .customLong("metrics-listen"), help: ArgumentHelp("Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT.", valueName: "HOST:PORT"))
    var metricsListen: String?

    func validate() throws {
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if let spoolMaxMB, spoolMaxMB <= 0 { throw ValidationError("--spool-max-mb must be positive") }
        if let drainTimeout, drainTimeout < 0 { throw ValidationError("--drain-timeout must not be negative") }
        if let server, Self.servers(server) == nil { throw ValidationError("--server must be HOST:PORT or a comma-separated list of them (got \(server))") }
        if let failbackAfter, failbackAfter <= 0 { throw ValidationError("--failback-after must be positive") }
        if let metricsListen { _ = try listenAddress(metricsListen, flag: "--metrics-listen") }
    }

    /// `HOST:PORT[,HOST:PORT...]` → the servers (nil when one is malformed, has port 0,
    /// or appears twice).
    static func servers(_ text: String) -> [AgentSender.Server]? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        var out: [AgentSender.Server] = []
        for part in parts {
            guard let address = HostPort(part), address.port > 0 else { return nil }
            let server = AgentSender.Server(host: address.host, port: address.port)
            guard !out.contains(server) else { return nil }
            out.append(server)
        }
        return out.isEmpty ? nil : out
    }

    /// gRPC messages stay well under the server's limit.
    static let maxBatchBytes = 4 << 20

    func run() throws {
        // Two malloc arenas instead of one per thread (gRPC, dispatcher, sink): batches are
        // freed on other threads than they are made on, and per-thread arenas kept ~25 MB
        // of freed memory resident at 200k events/s (bench sweep).
        _ = is_limit_malloc_arenas(2)
        InfraSight.bootstrapLogging()
        let logger = Logger(label: "infrasight")
        let selection = try PluginSelection(source: source, names: nil, logger: logger)
        let config = selection.config
        // Each flag wins over its key under `agent:` in the config file.
        guard let server = self.server ?? config.agent.server else {
            throw failure("no server: give --server HOST:PORT or agent.server in the config file", code: 64)
        }
        guard let servers = Self.servers(server) else { // the flag is checked when parsed
            throw failure("agent.server must be HOST:PORT or a list of them (got \(server))", code: 2)
        }
        let compression = self.compression ?? config.agent.compression.flatMap(WireCompression.init(rawValue:)) ?? .none
        let drainTimeout = self.drainTimeout ?? config.agent.drainTimeout ?? 30
        let security = try security.security(config.agent.tls)
        let spoolPath = spoolDir ?? config.agent.spoolDir ?? ((config.storage.dataDir ?? StorageConfig.defaultDataDir) + "/spool")
        let spool: BatchSpool
        do {
            spool = try BatchSpool(directory: spoolPath, maxBytes: (spoolMaxMB ?? config.agent.spoolMaxMB ?? 1024) << 20,
                                   onFirstEviction: { [logger] in logger.warning("\($0)") })
        } catch {
            throw failure("\(error)")
        }
        let pluginTables = selection.plugins.flatMap(\.tables)
        let nodeName = Enricher(nodeName: config.nodeName, hostRoot: config.hostRoot).nodeName
        var hello = Infrasight_V1_Hello()
        hello.nodeName = String(decoding: nodeName, as: UTF8.self)
        hello.agentID = Self.agentID(node: hello.nodeName, hostRoot: config.hostRoot)
        hello.version = infrasightVersion
        // Each table's derived columns, as its plugin declares them: left out of the batches
        // and named in the hello, so the server computes them.
        let derived = selection.plugins.reduce(into: [String: [DerivedColumn]]()) { all, plugin in
            all.merge(plugin.derivedColumns) { first, _ in first }
        }
        hello.tables = pluginTables.map { SpoolStore.definition(of: $0, derived: derived[$0.qualifiedName] ?? []) }
        let sender: AgentSender
        do {
            sender = try AgentSender(spool: spool, servers: servers, security: security, hello: hello,
                                     maxMessageBytes: Self.maxBatchBytes * 2, compression: compression,
                                     failbackAfter: failbackAfter ?? config.agent.failbackAfter ?? 60, logger: logger)
        } catch {
            throw failure("\(error)", code: 2)
        }
        let store = SpoolStore(spool: spool, derived: derived) { sender.notify() }
        let storeTables = store.spooled(pluginTables)
        let tablesByName = Dictionary(zip(pluginTables.map(\.qualifiedName), storeTables), uniquingKeysWith: { a, _ in a })
        let writer = BatchWriter(
            // At most an eighth of the spool: a full spool then drops its oldest batches for a
            // new one instead of refusing a batch larger than itself.
            store: store, maxRows: config.storage.batchMaxRows, maxBytes: min(Self.maxBatchBytes, spool.maxBytes / 8),
            maxDelayMs: config.storage.batchMaxDelayMs,
            queueMaxBytes: config.storage.queueMaxBytes, onError: { logger.warning("\($0)") })
        let readiness = Readiness()
        readiness.update {
            $0.agent = sender
            $0.spool = spool
        }
        let metrics = try startMetrics(metricsListen ?? config.agent.metricsListen, readiness: readiness, logger: logger)
        if spool.count > 0 { logger.notice("spool \(spoolPath): \(spool.count) batches from before; sending them first") }
        let runtime = try selection.start(consumer: writer, logger: logger)
        for probe in runtime.probes {
            writer.register(probe.channel, storeTables: probe.channel.plugin.tables.map { tablesByName[$0.qualifiedName]! })
        }
        writer.start()
        readiness.update {
            $0.runtime = runtime
            $0.writer = writer
        }
        let deadline = duration.map { Date().addingTimeInterval($0) }
        // Stopped in reverse: tracing, the writer's flush into the spool, then the sender's
        // drain of the spool to the server.
        try Lifecycle.run([
            StopService("metrics") { metrics?.stop() },
            SenderService(sender: sender, spool: spool, drainTimeout: drainTimeout),
            StopService("batch writer") { writer.finish(timeout: 60) },
            LoopService("dispatcher", stop: { runtime.stop() }) {
                logger.notice("started: \(runtime.probes.map(\.name).joined(separator: ", ")) → \(servers.count == 1 ? "server \(servers[0])" : "servers \(servers.map(\.description).joined(separator: ", ")) (prefers \(servers[sender.preferred]))")\(compression == .none ? "" : " (\(compression.rawValue))") (spool \(spoolPath))")
                runtime.run(until: deadline) {
                    writer.tick()
                    if sender.failure != nil { runtime.stop() }
                }
            },
        ], logger: logger)
        let delivered = sender.counters.rowsByPlugin
        let rejected = sender.counters.rowsRejectedByPlugin
        for probe in runtime.probes {
            let s = writer.counters[probe.name]
            printError(SummaryLine(probe: probe, then: [
                ("queue drops", s?.queueDrops.load(ordering: .relaxed) ?? 0),
                ("spool drops", s?.storeDrops.load(ordering: .relaxed) ?? 0), ("rows spooled", s?.stored.load(ordering: .relaxed) ?? 0),
                ("rows delivered", delivered[probe.name] ?? 0), ("rows refused by the server", rejected[probe.name] ?? 0),
                ("spool evicted", spool.evictedRows[probe.name] ?? 0),
            ]).text)
        }
        if let containers = SummaryLine.containers(runtime) { printError(containers.text) }
        if let reason = sender.failure {
            throw failure("\(reason) (\(spool.count) batches stay in the spool at \(spoolPath))")
        }
        if spool.count > 0 {
            logger.warning("\(spool.count) batches (\(spool.bytes >> 10) KiB) were not acknowledged in \(Int(drainTimeout)) s; they stay in \(spoolPath) and are sent at the next start")
        }
    }

    /// The sender as a service: streams the spool to the server until shutdown, then gives
    /// the server up to `drainTimeout` seconds to acknowledge what is left (the writer has
    /// flushed into the spool by then), and stops. What stays is sent at the next start.
    struct SenderService: Service, CustomStringConvertible {
        let sender: AgentSender
        let spool: BatchSpool
        let drainTimeout: Double
        var description: String { "sender" }

        func run() async {
            let streaming = Task { await sender.run() }
            do {
                try await gracefulShutdown()
            } catch {
                // Cancelled rather than shut down: drain all the same.
            }
            sender.drain()
            let drainDeadline = Date().addingTimeInterval(drainTimeout)
            while sender.failure == nil && spool.count > 0 && Date() < drainDeadline {
                // The group's own cancellation ends the wait (Task.sleep throws at once then).
                do { try await Task.sleep(for: .milliseconds(20)) } catch { break }
            }
            streaming.cancel()
            await streaming.value
        }
    }

    /// Stable across restarts: the node name and the machine id.
    static func agentID(node: String, hostRoot: String) -> String {
        let root = hostRoot.hasSuffix("/") ? hostRoot : hostRoot + "/"
        let machine = (try? String(contentsOfFile: root + "etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return machine.isEmpty ? node : "\(node)/\(machine.prefix(12))"
    }
}
