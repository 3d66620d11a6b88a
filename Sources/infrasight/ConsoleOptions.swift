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
    @Option(name: .customLong("ui-listen"), help: ArgumentHelp("Serve the web console on HOST:PORT (off by default). It always wants a token: --ui-token-file, or one generated at first start in DATA_DIR/console-token.", valueName: "HOST:PORT"))
    var listen: String?
    @Option(name: .customLong("ui-token-file"), help: ArgumentHelp("The console's token (a file of mode 0600, at least 16 bytes); or set INFRASIGHT_UI_TOKEN. Without either, one is generated.", valueName: "FILE"))
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
        let token: String
        /// Where a generated token is kept (nil: configured); written by `startConsole`
        /// when it does not exist yet.
        let generatedTokenFile: String?
        let tls: ConsoleServer.TLSFiles?
    }

    /// The console's settings, or an exit with one line: a bad address, a secret file
    /// others can read or shorter than 16 bytes. Called before the command starts
    /// anything, so a refusal leaves nothing half-started. Without a configured token the
    /// one in `dataDir/console-token` is used, or a new one (32 random bytes) is made.
    func plan(_ config: ConsoleConfig, dataDir: String, logger: Logger) throws -> Plan? {
        guard let listen = listen ?? config.listen else { return nil }
        guard let address = HostPort(listen) else { throw failure("console.listen must be HOST:PORT (got \(listen))", code: 2) }
        let certificate = tlsCert ?? config.tls.certificate, key = tlsKey ?? config.tls.key
        if (certificate == nil) != (key == nil) { throw failure("console.tls_cert and console.tls_key go together", code: 2) }
        var token: String?
        let file = ConsoleOptions.tokenFile(dataDir: dataDir)
        var generatedTokenFile: String?
        do {
            // As the pipeline's token: a 0600 file's first line, or the environment.
            token = try PipelineSecurity.token(file: tokenFile ?? config.tls.tokenFile, environment: "INFRASIGHT_UI_TOKEN")
            if let key { try SecretFile.check(key, what: "console TLS key") }
            if token == nil {
                generatedTokenFile = file
                if FileManager.default.fileExists(atPath: file) { token = try PipelineSecurity.token(file: file, environment: "") }
            }
        } catch {
            throw failure(error.description, code: 2)
        }
        // A file's token was measured as it was read; the environment's is measured here,
        // since the console, unlike the pipeline, is reached by anyone on the host.
        if let token, token.utf8.count < PipelineSecurity.minimumTokenBytes {
            throw failure("INFRASIGHT_UI_TOKEN is \(token.utf8.count) bytes, under the \(PipelineSecurity.minimumTokenBytes) a token needs (head -c 24 /dev/urandom | base64 makes one)", code: 2)
        }
        let tls = certificate.map { ConsoleServer.TLSFiles(certificate: $0, key: key!) }
        if !isLoopback(address.host) && tls == nil {
            logger.warning("the console's token and session cookie travel in plaintext on \(listen): anyone on the path can read them; add --ui-tls-cert/--ui-tls-key")
        }
        return Plan(listen: listen, address: address, token: token ?? ConsoleAccess.newSecret(), generatedTokenFile: generatedTokenFile, tls: tls)
    }

    static func tokenFile(dataDir: String) -> String { "\(dataDir)/console-token" }
}

/// Starts the console `plan` describes (nil: none), or exits with one line when the
/// tables it reads cannot be made, its token cannot be kept or the address cannot be bound.
func startConsole(_ plan: ConsoleOptions.Plan?, store: EventStore, readiness: Readiness, logger: Logger) throws -> ConsoleServer? {
    guard let plan else { return nil }
    // Every page reads the first-party tables; those no enabled plugin (or agent) made
    // are created empty, so a query over several tables does not fail on one.
    do {
        _ = try store.prepare(QueryCatalog.tables) { logger.notice("\($0.note)") }
    } catch {
        throw failure("the console cannot create the tables it reads: \(error)")
    }
    // A generated token is kept (0600, in the private data directory) so a login URL
    // stays good across restarts; it is printed once, when it is made.
    var newlyWritten = false
    if let file = plan.generatedTokenFile, !FileManager.default.fileExists(atPath: file) {
        do {
            try PrivateDirectory.prepare((file as NSString).deletingLastPathComponent) { _ in true }
        } catch {
            throw failure("cannot keep the console's token: \(error)")
        }
        do {
            try PrivateFile.create(file, contents: Data((plan.token + "\n").utf8))
        } catch {
            throw failure("cannot keep the console's token: \(error)")
        }
        newlyWritten = true
    }
    let api = ConsoleAPI(store: store, status: {
        readiness.sample().map { ConsoleAPI.Counter(name: $0.name, labels: Dictionary($0.labels, uniquingKeysWith: { a, _ in a }), value: $0.value) }
    })
    let address = plan.address
    let server = ConsoleServer(api: api, access: ConsoleAccess(token: plan.token, secure: plan.tls != nil), logger: logger)
    do {
        let port = try server.start(host: address.host, port: address.port, tls: plan.tls)
        let host = address.host.contains(":") ? "[\(address.host)]" : address.host
        let base = "\(plan.tls == nil ? "http" : "https")://\(host):\(port)/"
        // The login URL with the token goes to a terminal only: a log (journal, kubectl
        // logs) is read by more people than the 0600 file is.
        if newlyWritten && isatty(STDERR_FILENO) != 0 {
            logger.notice("console on \(base) (log in once at \(base)?token=\(plan.token) ; the token is kept in \(plan.generatedTokenFile!), mode 0600)")
        } else if let file = plan.generatedTokenFile {
            logger.notice("console on \(base) (log in once at \(base)?token=TOKEN with the token in \(file), mode 0600)")
        } else {
            logger.notice("console on \(base) (log in once at \(base)?token=TOKEN with the configured token)")
        }
    } catch {
        throw failure("cannot serve the console on \(plan.listen): \(error)")
    }
    return server
}
