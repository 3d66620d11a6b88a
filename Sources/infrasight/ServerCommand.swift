import ArgumentParser
import Foundation
import InfraSightCore
import InfraSightMetrics
import InfraSightPipeline
import InfraSightStorage
import Logging

struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Receive rows from `infrasight agent`s over gRPC and store them in ClickHouse (embedded by default).",
        discussion: """
            Applies the tables agents declare (CREATE ... IF NOT EXISTS; a conflicting definition is \
            refused), derives the columns agents leave out, acknowledges a batch only once it is stored \
            and stores a resent batch once. While the store is down it holds the agents back instead of \
            dropping. SIGINT/SIGTERM (or --duration) stop it.
            """)

    @Option(help: ArgumentHelp("Address to listen on (default: 0.0.0.0:50051, or server.listen in the config file).", valueName: "HOST:PORT")) var listen: String?
    @OptionGroup var storage: StorageOptions
    @Option(name: .long, help: ArgumentHelp("Configuration file (storage: and server: keys).", valueName: "FILE")) var config: String?
    @OptionGroup var security: PipelineSecurityOptions
    @Option(help: ArgumentHelp("Stop after SECONDS.", valueName: "SECONDS")) var duration: Double?
    @Option(name: .customLong("metrics-listen"), help: ArgumentHelp("Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT.", valueName: "HOST:PORT"))
    var metricsListen: String?

    func validate() throws {
        if let listen { _ = try listenAddress(listen, flag: "--listen") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if let metricsListen { _ = try listenAddress(metricsListen, flag: "--metrics-listen") }
    }

    /// Agents send batches of at most 4 MiB (plus the message around them); room to spare.
    static let maxMessageBytes = 16 << 20

    func run() throws {
        InfraSight.bootstrapLogging()
        let logger = Logger(label: "infrasight")
        let configuration: InfraSightConfig
        do {
            configuration = try InfraSightConfig.load(path: config)
        } catch {
            throw failure(error.description, code: 2)
        }
        let security = try security.security(configuration.server.tls)
        let store = try storage.open(configuration)
        let serverStorage: ServerStorage
        do {
            serverStorage = try ServerStorage(store: store, logger: logger)
        } catch {
            throw failure(error.description)
        }
        let agents = AgentRegistry()
        let service = PipelineService(storage: serverStorage, token: security.token, version: infrasightVersion, logger: logger, agents: agents)
        // Each flag wins over its key under `server:` in the config file.
        let listen = self.listen ?? configuration.server.listen ?? "0.0.0.0:50051"
        guard let address = HostPort(listen) else { throw failure("server.listen must be HOST:PORT (got \(listen))", code: 2) }
        let server: PipelineServer
        let port: Int
        do {
            server = try PipelineServer(host: address.host, port: address.port, security: security, service: service,
                                        maxMessageBytes: Self.maxMessageBytes, logger: logger)
        } catch {
            throw failure("\(error)", code: 2)
        }
        do {
            port = try blockingWait { try await server.port() }
        } catch {
            // The transport does not say why it could not bind; a bind of our own does.
            throw failure("cannot listen on \(listen): \(PipelineServer.bindError(host: address.host, port: address.port) ?? "\(error)")")
        }
        let readiness = Readiness()
        readiness.server = (serverStorage, agents)
        let metrics = try startMetrics(metricsListen ?? configuration.server.metricsListen, readiness: readiness, logger: logger)
        let queryServer = startQueryServer(store, logger: logger, unavailable: "queries while the server runs are unavailable")
        let mode = security.usesTLS ? (security.ca != nil ? "mutual TLS" : "TLS") : "plaintext"
        let stop = DispatchSemaphore(value: 0)
        let signals = SignalStopper { stop.signal() }
        logger.notice("listening on \(address.host):\(port) (\(mode)\(security.token != nil ? ", bearer token" : "")) → \(store.summary)")
        if let duration {
            _ = stop.wait(timeout: .now() + duration)
        } else {
            stop.wait()
        }
        _ = try? blockingWait { await server.stop() }
        queryServer?.stop()
        metrics?.stop()
        store.close()
        _ = signals
        let c = serverStorage.counters
        printError("server: batches stored \(c.batchesStored), rows stored \(c.rowsStored), duplicate batches \(c.duplicateBatches)")
    }
}
