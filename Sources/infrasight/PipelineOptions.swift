import ArgumentParser
import Foundation
import Synchronization
import InfraSightCore
import InfraSightPipeline

/// TLS and token options shared by `agent` and `server`. Paths only: secret values are
/// read from files (or INFRASIGHT_TOKEN), never passed as arguments visible in `ps`.
struct PipelineSecurityOptions: ParsableArguments {
    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("PEM certificate chain this side presents (server: enables TLS; agent: client certificate for mutual TLS).", valueName: "FILE"))
    var certificate: String?
    @Option(name: .customLong("tls-key"), help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "FILE"))
    var key: String?
    @Option(name: .customLong("tls-ca"), help: ArgumentHelp("PEM CA bundle (agent: verifies the server, enables TLS; server: requires client certificates from this CA, mutual TLS).", valueName: "FILE"))
    var ca: String?
    @Option(name: .customLong("token-file"), help: ArgumentHelp("File holding the bearer token (or set INFRASIGHT_TOKEN).", valueName: "FILE"))
    var tokenFile: String?

    /// The flags, each falling back on its key in the config file (`files`).
    func security(_ files: TLSFilesConfig) throws -> PipelineSecurity {
        do {
            let token = try PipelineSecurity.token(file: tokenFile ?? files.tokenFile, environment: "INFRASIGHT_TOKEN")
            return PipelineSecurity(certificate: certificate ?? files.certificate, key: key ?? files.key, ca: ca ?? files.ca, token: token)
        } catch {
            throw failure(error.description, code: 2)
        }
    }
}

extension WireCompression: ExpressibleByArgument {}

/// `HOST:PORT` (IPv6 as `[::1]:9464`): --server, --listen, --metrics-listen.
struct HostPort {
    let host: String
    let port: Int
    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }
}

/// `HOST:PORT` for listening (IPv6 as `[::]:50051`).
func listenAddress(_ text: String, flag: String) throws -> HostPort {
    guard let address = HostPort(text) else { throw ValidationError("\(flag) must be HOST:PORT, e.g. 0.0.0.0:50051") }
    return address
}

/// Runs an async operation from the synchronous command code and waits for it.
func blockingWait<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let result = Mutex<Result<T, any Error>?>(nil)
    Task.detached {
        let outcome: Result<T, any Error>
        do { outcome = .success(try await operation()) } catch { outcome = .failure(error) }
        result.withLock { $0 = outcome }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0 }!.get()
}

/// The version agents and servers report to each other.
let infrasightVersion = "0.2.0"
