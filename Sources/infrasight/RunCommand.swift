import ArgumentParser
import Foundation
import Glibc
import InfraSightCore
import InfraSightMetrics
import InfraSightSchema
import InfraSightStorage
import Logging

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Trace this host into ClickHouse (embedded by default): load the enabled plugins, create the tables, store every event.",
        discussion: "SIGINT/SIGTERM (or --duration) stop tracing and flush every accepted row before exit.")

    @OptionGroup var source: PluginSourceOptions
    @OptionGroup var storage: StorageOptions
    @OptionGroup var console: ConsoleOptions
    @OptionGroup var rules: RulesOptions
    @Option(help: ArgumentHelp("Stop after SECONDS.", valueName: "SECONDS")) var duration: Double?
    @Option(name: .customLong("metrics-listen"), help: ArgumentHelp("Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT.", valueName: "HOST:PORT"))
    var metricsListen: String?

    func validate() throws {
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if let metricsListen, HostPort(metricsListen) == nil {
            throw ValidationError("--metrics-listen must be HOST:PORT, e.g. 127.0.0.1:9464")
        }
    }

    func run() throws {
        InfraSight.bootstrapLogging()
        let logger = Logger(label: "infrasight")
        let selection = try PluginSelection(source: source, names: nil, logger: logger)
        let config = selection.config
        let consolePlan = try console.plan(config.console, dataDir: storage.resolvedDataDir(config), logger: logger)
        let store = try storage.open(config, budgeted: true, notice: { [logger] in logger.notice("\($0)") })
        let pluginTables = selection.plugins.flatMap(\.tables)
        let storeTables: [String: TableSchema]
        do {
            let prepared = try store.prepare(pluginTables) { logger.notice("\($0.note)") }
            storeTables = Dictionary(zip(pluginTables.map(\.qualifiedName), prepared), uniquingKeysWith: { a, _ in a })
        } catch {
            throw failure(error.description)
        }
        // Detection wraps the store the writer inserts into: each stored batch is evaluated.
        let detection = try startRules(rules, config: config, store: store, scratch: rulesScratch(store), tables: pluginTables, logger: logger)
        let writer = BatchWriter(
            store: detection ?? store, maxRows: config.storage.batchMaxRows, maxBytes: store.diskBudget?.batchBytesCap() ?? .max,
            maxDelayMs: config.storage.batchMaxDelayMs,
            queueMaxBytes: config.storage.queueMaxBytes, onError: { logger.warning("\($0)") })
        let readiness = Readiness()
        readiness.update {
            $0.rules = detection
            $0.budget = store.diskBudget
        }
        let metrics = try startMetrics(metricsListen ?? config.run.metricsListen, readiness: readiness, logger: logger)
        let runtime = try selection.start(consumer: writer, logger: logger)
        for probe in runtime.probes {
            writer.register(probe.channel, storeTables: probe.channel.plugin.tables.map { storeTables[$0.qualifiedName]! })
        }
        // The console before the query socket: a console that cannot start exits, and
        // nothing started earlier needs stopping first.
        let consoleServer = try startConsole(consolePlan, store: store, readiness: readiness, logger: logger)
        let queryServer = startQueryServer(store, logger: logger, unavailable: "queries during the run are unavailable")
        writer.start()
        readiness.update {
            $0.runtime = runtime
            $0.writer = writer
        }
        let deadline = duration.map { Date().addingTimeInterval($0) }
        // Stopped in reverse: tracing, then the writer's flush, then what serves the store.
        try Lifecycle.run([
            StopService("store") { store.close() },
            StopService("metrics") { metrics?.stop() },
            StopService("query socket") { queryServer?.stop() },
            StopService("console") { consoleServer?.stop() },
            StopService("rules") { detection?.finish(timeout: 30) },
            StopService("batch writer") { writer.finish(timeout: 60) },
            LoopService("dispatcher", stop: { runtime.stop() }) {
                logger.notice("started: \(runtime.probes.map(\.name).joined(separator: ", ")) → \(store.summary)")
                let status = StatusLine(runtime: runtime, writer: writer)
                runtime.run(until: deadline) {
                    writer.tick()
                    status.update()
                }
                status.finish()
            },
        ], logger: logger)
        let budgetDrops = store.diskBudget?.dropped ?? [:]
        for probe in runtime.probes {
            let s = writer.counters[probe.name]
            // Rows stored and later dropped, oldest first, to keep storage.max_disk.
            let aged = probe.channel.plugin.tables.reduce(UInt64(0)) { $0 + (budgetDrops[$1.qualifiedName]?.rows ?? 0) }
            printError(SummaryLine(probe: probe, then: [
                ("queue drops", s?.queueDrops.load(ordering: .relaxed) ?? 0),
                ("store drops", s?.storeDrops.load(ordering: .relaxed) ?? 0), ("rows stored", s?.stored.load(ordering: .relaxed) ?? 0),
                ("disk budget drops", aged),
            ]).text)
        }
        if let containers = SummaryLine.containers(runtime) { printError(containers.text) }
        if let detection { printError(detection.summaryLine) }
    }
}

/// On a terminal, one line on stderr refreshed every second: events/s, rows stored, drops.
/// The dispatcher thread's own.
final class StatusLine {
    let runtime: ProbeRuntime
    let writer: BatchWriter
    let enabled = isatty(STDERR_FILENO) != 0
    var last = Date()
    var lastReceived: UInt64 = 0

    init(runtime: ProbeRuntime, writer: BatchWriter) {
        self.runtime = runtime
        self.writer = writer
    }

    func update() {
        guard enabled, Date().timeIntervalSince(last) >= 1 else { return }
        let received = runtime.probes.reduce(0) { $0 + $1.channel.counters.received.load(ordering: .relaxed) }
        let kernelDrops = runtime.probes.reduce(0) { $0 + $1.kernelDrops() }
        let stored = writer.counters.values.reduce(0) { $0 + $1.stored.load(ordering: .relaxed) }
        let dropped = writer.counters.values.reduce(0) { $0 + $1.queueDrops.load(ordering: .relaxed) + $1.storeDrops.load(ordering: .relaxed) }
        let rate = Double(received - lastReceived) / Date().timeIntervalSince(last)
        last = Date()
        lastReceived = received
        let text = String(format: "events/s %.0f | rows stored %llu | drops %llu (kernel %llu) | queued %d KiB", rate, stored, dropped + kernelDrops, kernelDrops, writer.backlog.bytes / 1024)
        FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
