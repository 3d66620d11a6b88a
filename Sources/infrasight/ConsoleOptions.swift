import ArgumentParser
import Foundation
import InfraSightCatalog
import InfraSightConsole
import InfraSightCore
import InfraSightPipeline
import InfraSightStorage
import Logging

/// `--ui-listen` and its companions on `run` and `server`: the web console, served by the
/// process that holds the store. Each flag wins over its key under `console:`.
struct ConsoleOptions: ParsableArguments {
    @Option(name: .customLong("ui-listen"), help: ArgumentHelp("Serve the web console on HOST:PORT (off by default). Beyond loopback it needs --ui-tls-cert/--ui-tls-key or --ui-token-file.", valueName: "HOST:PORT"))
    var listen: String?
    @Option(name: .customLong("ui-token-file"), help: ArgumentHelp("The console's token (a file of mode 0600); or set INFRASIGHT_UI_TOKEN.", valueName: "FILE"))
    var tokenFile: String?
    @Option(name: .customLong("ui-tls-cert"), help: ArgumentHelp("Serve the console over HTTPS with this certificate (PEM).", valueName: "FILE"))
    var tlsCert: String?
    @Option(name: .customLong("ui-tls-key"), help: ArgumentHelp("The certificate's private key (PEM, mode 0600).", valueName: "FILE"))
    var tlsKey: String?

    func validate() throws {
        if let listen, HostPort(listen) == nil { throw ValidationError("--ui-listen must be HOST:PORT, e.g. 127.0.0.1:8080") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--ui-tls-cert and --ui-tls-key go together") }
    }

    /// What the console will serve, checked before anything starts: nil when it is off.
    struct Plan {
        let listen: String
        let address: HostPort
        let token: String?
        let tls: ConsoleServer.TLSFiles?
    }

    /// The console's settings, or an exit with one line: a bad address, a secret file
    /// others can read, a non-loopback address with neither TLS nor a token. Called before
    /// the command starts anything, so a refusal leaves nothing half-started.
    func plan(_ config: ConsoleConfig, logger: Logger) throws -> Plan? {
        guard let listen = listen ?? config.listen else { return nil }
        guard let address = HostPort(listen) else { throw failure("console.listen must be HOST:PORT (got \(listen))", code: 2) }
        let certificate = tlsCert ?? config.tls.certificate, key = tlsKey ?? config.tls.key
        if (certificate == nil) != (key == nil) { throw failure("console.tls_cert and console.tls_key go together", code: 2) }
        let token: String?
        do {
            // As the pipeline's token: a 0600 file's first line, or the environment.
            token = try PipelineSecurity.token(file: tokenFile ?? config.tls.tokenFile, environment: "INFRASIGHT_UI_TOKEN")
            if let key { try SecretFile.check(key, what: "console TLS key") }
        } catch {
            throw failure(error.description, code: 2)
        }
        let tls = certificate.map { ConsoleServer.TLSFiles(certificate: $0, key: key!) }
        if !isLoopback(address.host) && tls == nil && token == nil {
            throw failure("refusing to serve the console on \(listen) with neither TLS nor a token: anyone who reaches it could read every stored event; add --ui-tls-cert/--ui-tls-key or --ui-token-file", code: 2)
        }
        if !isLoopback(address.host) && tls == nil {
            logger.warning("the console's token travels in plaintext on \(listen): anyone on the path can read it; add --ui-tls-cert/--ui-tls-key")
        }
        return Plan(listen: listen, address: address, token: token, tls: tls)
    }
}

/// Starts the console `plan` describes (nil: none), or exits with one line when the
/// tables it reads cannot be made or the address cannot be bound.
func startConsole(_ plan: ConsoleOptions.Plan?, store: EventStore, readiness: Readiness, logger: Logger) throws -> ConsoleServer? {
    guard let plan else { return nil }
    // Every page reads the first-party tables; those no enabled plugin (or agent) made
    // are created empty, so a query over several tables does not fail on one.
    do {
        _ = try store.prepare(QueryCatalog.tables) { logger.notice("\($0.note)") }
    } catch {
        throw failure("the console cannot create the tables it reads: \(error)")
    }
    let api = ConsoleAPI(store: store, status: {
        readiness.sample().map { ConsoleAPI.Counter(name: $0.name, labels: Dictionary($0.labels, uniquingKeysWith: { a, _ in a }), value: $0.value) }
    })
    let address = plan.address
    let server = ConsoleServer(api: api, access: ConsoleAccess(token: plan.token, listenHost: address.host, secure: plan.tls != nil), logger: logger)
    do {
        let port = try server.start(host: address.host, port: address.port, tls: plan.tls)
        let host = address.host.contains(":") ? "[\(address.host)]" : address.host
        logger.notice("console on \(plan.tls == nil ? "http" : "https")://\(host):\(port)/")
    } catch {
        throw failure("cannot serve the console on \(plan.listen): \(error)")
    }
    return server
}
