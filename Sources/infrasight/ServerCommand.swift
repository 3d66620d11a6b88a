import ArgumentParser
import Foundation
import InfraSightCore
import InfraSightMetrics
import InfraSightPipeline
import InfraSightRules
import InfraSightSchema
import InfraSightStorage
import Logging
import ServiceLifecycle

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

    @Option(help: ArgumentHelp("Address to listen on (default: 127.0.0.1:50051, or server.listen in the config file). Beyond loopback every agent must authenticate (--token-file, --agent-tokens or --tls-ca), or --insecure.", valueName: "HOST:PORT")) var listen: String?
    @OptionGroup var storage: StorageOptions
    @OptionGroup var console: ConsoleOptions
    @OptionGroup var rules: RulesOptions
    @Option(name: .long, help: ArgumentHelp("Configuration file (storage: and server: keys).", valueName: "FILE")) var config: String?
    @OptionGroup var security: PipelineSecurityOptions
    @Option(name: .customLong("agent-tokens"), help: ArgumentHelp("File of per-agent tokens, one `name token` per line (mode 0600): an agent is the name its token belongs to, and its rows get that node name (or server.agent_tokens_file).", valueName: "FILE"))
    var agentTokens: String?
    @Flag(name: .customLong("cert-identity"), help: "With mutual TLS: an agent must call itself by a name its client certificate carries (SAN DNS name or subject CN); its rows get that node name (or server.cert_identity).")
    var certIdentity = false
    @Option(help: ArgumentHelp("The database agents' tables must live in (default: audit, or server.database).", valueName: "NAME")) var database: String?
    @Option(help: ArgumentHelp("Store into this ClickHouse cluster (--clickhouse-url: one node or several): agents' tables become ReplicatedMergeTree tables with Distributed tables over them, inserts wait for every shard, the dedup ledger is cluster-wide (or server.cluster).", valueName: "NAME"))
    var cluster: String?
    @Flag(help: "Allow listening beyond loopback with no agent authentication, TLS or not (anyone who reaches the port can write rows); logged as a warning.")
    var insecure = false
    @Option(help: ArgumentHelp("Stop after SECONDS.", valueName: "SECONDS")) var duration: Double?
    @Option(name: .customLong("metrics-listen"), help: ArgumentHelp("Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT.", valueName: "HOST:PORT"))
    var metricsListen: String?

    func validate() throws {
        if let listen { _ = try listenAddress(listen, flag: "--listen") }
        if let database, let problem = agentDatabaseProblem(database) { throw ValidationError("--database \(problem)") }
        if let cluster, !isPlainIdentifier(cluster) { throw ValidationError("--cluster must be a plain name (letters, digits, _), got \(cluster)") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if let metricsListen { _ = try listenAddress(metricsListen, flag: "--metrics-listen") }
    }

    /// Agents send batches of at most 4 MiB (plus the message around them); room to spare.
    static let maxMessageBytes = 16 << 20

    func run() throws {
        InfraSight.bootstrapLogging()
        let logger = Logger(label: "infrasight")
        let configuration = try loadConfig(config)
        let security = try security.security(configuration.server.tls)
        let consolePlan = try console.plan(configuration.console, dataDir: storage.resolvedDataDir(configuration), logger: logger)
        let server = configuration.server
        // Each flag wins over its key under `server:` in the config file.
        let listen = self.listen ?? server.listen ?? "127.0.0.1:50051"
        guard let address = HostPort(listen) else { throw failure("server.listen must be HOST:PORT (got \(listen))", code: 2) }
        let authenticator: AgentAuthenticator
        do {
            let tokens = try (agentTokens ?? server.agentTokensFile).map { file throws(PipelineError) in try AgentAuthenticator.agentTokens(file: file) } ?? []
            authenticator = AgentAuthenticator(sharedToken: security.token, agentTokens: tokens, certificateIdentity: certIdentity || server.certIdentity == true)
        } catch {
            throw failure(error.description, code: 2)
        }
        if authenticator.certificateIdentity && security.ca == nil {
            throw failure("--cert-identity needs mutual TLS (--tls-ca with --tls-cert and --tls-key)", code: 2)
        }
        let exposed = !isLoopback(address.host)
        // Beyond loopback every agent must prove something: a token, or a client
        // certificate from --tls-ca. TLS without a client CA only encrypts: anyone can
        // open a TLS connection and write rows.
        let authenticated = authenticator.requiresToken || security.ca != nil
        if exposed && !authenticated {
            guard insecure || server.insecure == true else {
                let how = security.usesTLS ? "with TLS but no agent authentication (TLS alone encrypts, it does not tell who the agent is)" : "in plaintext with no agent authentication"
                throw failure("refusing to listen on \(listen) \(how): anyone who reaches it could write rows; add --token-file, --agent-tokens or --tls-ca (mutual TLS), or --insecure to accept that", code: 2)
            }
            logger.warning("--insecure: listening on \(listen) with no agent authentication: anyone who reaches it can write rows")
        }
        if exposed && !security.usesTLS && authenticator.requiresToken {
            logger.warning("agents' bearer tokens travel in plaintext on \(listen): anyone on the path can read them; add --tls-cert/--tls-key")
        }
        let cluster = self.cluster ?? server.cluster
        if let cluster, storage.serverURL(configuration) == nil {
            throw failure("--cluster \(cluster) needs a ClickHouse server: give --clickhouse-url (one node of the cluster, or several)", code: 2)
        }
        // On a cluster each node's disk is the cluster's own to manage: no budget here.
        let opened = try storage.open(configuration, budgeted: cluster == nil, notice: { [logger] in logger.notice("\($0)") })
        var clusterStore: ClusterStore?
        if let cluster, let http = opened as? HTTPStore {
            if configuration.storage.maxDiskConfigured {
                logger.warning("storage.max_disk is not kept on a cluster (--cluster \(cluster)): each node's disk is its own; storage.retention still applies")
            }
            do {
                clusterStore = try ClusterStore(http, cluster: cluster) { logger.warning("\($0)") }
            } catch {
                throw failure(error.description, code: 2)
            }
        }
        let store: EventStore = clusterStore ?? opened
        // Detection wraps the store the pipeline inserts into: each stored batch is evaluated.
        let detection = try startRules(rules, config: configuration, store: store, scratch: rulesScratch(store), tables: [], logger: logger)
        let serverStorage: ServerStorage
        do {
            // Detection's tables are refused to agents whether or not detection runs now: a
            // table an agent made would be the one detection writes into when it does.
            let serverTables = [RuleEngine.alertsDDL.qualifiedName: "detection's alerts table", DriftDetector.baselineDDL.qualifiedName: "drift detection's baseline"]
            serverStorage = try ServerStorage(store: detection ?? store, database: database ?? server.database ?? "audit", serverTables: serverTables,
                                              cluster: clusterStore, logger: logger)
        } catch {
            throw failure(error.description)
        }
        let agents = AgentRegistry()
        let service = PipelineService(storage: serverStorage, authenticator: authenticator, version: infrasightVersion, logger: logger, agents: agents)
        let pipeline: PipelineServer
        let port: Int
        do {
            pipeline = try PipelineServer(host: address.host, port: address.port, security: security, service: service,
                                        maxMessageBytes: Self.maxMessageBytes, logger: logger)
        } catch {
            throw failure("\(error)", code: 2)
        }
        do {
            port = try blockingWait { try await pipeline.port() }
        } catch {
            // The transport does not say why it could not bind; a bind of our own does.
            throw failure("cannot listen on \(listen): \(PipelineServer.bindError(host: address.host, port: address.port) ?? "\(error)")")
        }
        let readiness = Readiness()
        readiness.update {
            $0.server = (serverStorage, agents)
            $0.rules = detection
            $0.clickHouse = opened as? HTTPStore
            $0.budget = store.diskBudget
        }
        let metrics = try startMetrics(metricsListen ?? configuration.server.metricsListen, readiness: readiness, logger: logger)
        // The console before the query socket: a console that cannot start exits, and
        // nothing started earlier needs stopping first.
        let consoleServer = try startConsole(consolePlan, store: store, readiness: readiness, logger: logger)
        let queryServer = startQueryServer(store, logger: logger, unavailable: "queries while the server runs are unavailable")
        let mode = security.usesTLS ? (security.ca != nil ? "mutual TLS" : "TLS") : "plaintext"
        // Stopped in reverse: the agents' streams (each batch in flight stored or left
        // unacknowledged, so the agent resends it), then what serves the store.
        var services: [any Service] = [
            StopService("store") { store.close() },
            StopService("metrics") { metrics?.stop() },
            StopService("query socket") { queryServer?.stop() },
            StopService("console") { consoleServer?.stop() },
            StopService("rules") { detection?.finish(timeout: 30) },
            StopService("pipeline server", started: {
                logger.notice("listening on \(address.host):\(port) (\(mode)\(authenticator.agentTokens.isEmpty ? (security.token != nil ? ", bearer token" : "") : ", per-agent tokens")\(authenticator.certificateIdentity ? ", certificate identity" : "")) → \(store.summary)")
            }) {
                try blockingWait { await pipeline.stop() }
            },
        ]
        if let duration {
            services.append(ClosureService {
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(duration)) }
                } catch is CancellationError {
                    // Shut down before the duration ran out.
                }
            })
        }
        try Lifecycle.run(services, logger: logger)
        let c = serverStorage.counters
        // With several ClickHouse nodes: how often a node was unavailable and the next one took over.
        let failovers = (opened as? HTTPStore).flatMap { $0.nodeCount > 1 ? ", store failovers \($0.failovers.load(ordering: .relaxed))" : nil } ?? ""
        printError("server: batches stored \(c.batchesStored), rows stored \(c.rowsStored), duplicate batches \(c.duplicateBatches)\(failovers)")
        if let detection { printError(detection.summaryLine) }
    }
}
