import Yams
import InfraSightSchema

/// The files that secure the agent–server link (`tls_cert`, `tls_key`, `tls_ca`,
/// `token_file` under `agent:` or `server:`). Paths only: secrets stay in files.
public struct TLSFilesConfig: Equatable, Sendable {
    public var certificate: String?
    public var key: String?
    public var ca: String?
    public var tokenFile: String?
    public init() {}
}

/// `agent:` in the config file: what `infrasight agent` otherwise takes as flags. A flag
/// given on the command line wins over the key.
///
/// ```yaml
/// agent:
///   server: infrasight.example:50051   # or several: [a:50051, b:50051] (or "a:50051,b:50051")
///   failback_after: 60           # seconds between checks that the preferred server is back
///   compression: gzip            # none (default), gzip or deflate
///   spool_dir: /var/lib/infrasight/spool
///   spool_max_mb: 1024
///   drain_timeout: 30            # seconds
///   metrics_listen: 0.0.0.0:9464
///   tls_ca: /etc/infrasight/ca.pem
///   token_file: /etc/infrasight/token
/// ```
public struct AgentConfig: Equatable, Sendable {
    /// One `HOST:PORT`, or several separated by commas (a YAML list is read as that).
    public var server: String?
    public var failbackAfter: Double?
    public var compression: String?
    public var spoolDir: String?
    public var spoolMaxMB: Int?
    public var drainTimeout: Double?
    public var metricsListen: String?
    public var tls = TLSFilesConfig()
    public init() {}

    /// The values `compression` may take (gRPC message compression).
    public static let compressions = ["none", "gzip", "deflate"]
}

/// `server:` in the config file: what `infrasight server` otherwise takes as flags.
///
/// ```yaml
/// server:
///   listen: 0.0.0.0:50051          # default 127.0.0.1:50051
///   tls_cert: /etc/infrasight/server.pem
///   tls_key: /etc/infrasight/server.key
///   tls_ca: /etc/infrasight/agents-ca.pem   # mutual TLS
///   cert_identity: true            # agents are who their certificates name
///   agent_tokens_file: /etc/infrasight/agent-tokens   # `name token` per line
///   database: audit                # the only database agents' tables may live in
///   insecure: false                # allow listening beyond loopback with no agent authentication
///   cluster: prod                  # store into this ClickHouse cluster (docs/scaling.md)
/// ```
public struct ServerConfig: Equatable, Sendable {
    public var listen: String?
    public var metricsListen: String?
    public var tls = TLSFilesConfig()
    public var agentTokensFile: String?
    public var certIdentity: Bool?
    public var database: String?
    public var insecure: Bool?
    public var cluster: String?
    public init() {}
}

/// `run:` in the config file.
public struct RunConfig: Equatable, Sendable {
    public var metricsListen: String?
    public init() {}
}

/// `console:` in the config file: the web console of `run` and `server` (the flags
/// `--ui-listen`, `--ui-token-file`, `--ui-tls-cert`, `--ui-tls-key` win over the keys).
///
/// ```yaml
/// console:
///   listen: 127.0.0.1:8080        # off unless set; beyond loopback it needs TLS or a token
///   token_file: /etc/infrasight/console-token
///   tls_cert: /etc/infrasight/console.pem
///   tls_key: /etc/infrasight/console.key
/// ```
public struct ConsoleConfig: Equatable, Sendable {
    public var listen: String?
    public var tls = TLSFilesConfig()
    public init() {}
}

extension ConfigReader {
    func console(_ node: Node) throws(ConfigError) -> ConsoleConfig {
        var console = ConsoleConfig()
        try keys(of: node, at: "console") { key, value, path throws(ConfigError) in
            switch key {
            case "listen": console.listen = try string(value, at: path)
            case "tls_cert", "tls_key", "token_file": return try tlsFile(key, value, at: path, into: &console.tls)
            default: return false
            }
            return true
        }
        return console
    }

    /// Calls `read` with each key of the mapping at `section`, its value and its dotted
    /// path; `read` returns false for a key it does not know, which is an error naming it.
    func keys(of node: Node, at section: String, _ read: (String, Node, String) throws(ConfigError) -> Bool) throws(ConfigError) {
        for (key, value) in try mapping(node, at: section) {
            let path = "\(section).\(key)"
            guard try read(key, value, path) else { throw ConfigError(file: file, "unknown key \(path)") }
        }
    }

    func agent(_ node: Node) throws(ConfigError) -> AgentConfig {
        var agent = AgentConfig()
        try keys(of: node, at: "agent") { key, value, path throws(ConfigError) in
            switch key {
            case "server":
                if case .sequence = value {
                    let servers = try stringList(value, at: path)
                    guard !servers.isEmpty else { throw ConfigError(file: file, "\(path) must name at least one HOST:PORT") }
                    agent.server = servers.joined(separator: ",")
                } else {
                    agent.server = try string(value, at: path)
                }
            case "failback_after":
                let seconds = try nonNegativeSeconds(value, at: path)
                guard seconds > 0 else { throw ConfigError(file: file, "\(path) must be positive") }
                agent.failbackAfter = seconds
            case "compression":
                let name = try string(value, at: path)
                guard AgentConfig.compressions.contains(name) else {
                    throw ConfigError(file: file, "\(path) must be one of \(AgentConfig.compressions.joined(separator: ", ")) (got \(name))")
                }
                agent.compression = name
            case "spool_dir": agent.spoolDir = try string(value, at: path)
            case "spool_max_mb": agent.spoolMaxMB = try positiveInt(value, at: path)
            case "drain_timeout": agent.drainTimeout = try nonNegativeSeconds(value, at: path)
            case "metrics_listen": agent.metricsListen = try string(value, at: path)
            default: return try tlsFile(key, value, at: path, into: &agent.tls)
            }
            return true
        }
        return agent
    }

    func server(_ node: Node) throws(ConfigError) -> ServerConfig {
        var server = ServerConfig()
        try keys(of: node, at: "server") { key, value, path throws(ConfigError) in
            switch key {
            case "listen": server.listen = try string(value, at: path)
            case "metrics_listen": server.metricsListen = try string(value, at: path)
            case "agent_tokens_file": server.agentTokensFile = try string(value, at: path)
            case "cert_identity": server.certIdentity = try bool(value, at: path)
            case "insecure": server.insecure = try bool(value, at: path)
            case "cluster":
                let name = try string(value, at: path)
                guard isPlainIdentifier(name) else { throw ConfigError(file: file, "\(path) must be a plain name (letters, digits, _), got \(name)") }
                server.cluster = name
            case "database":
                let name = try string(value, at: path)
                if let problem = agentDatabaseProblem(name) { throw ConfigError(file: file, "\(path) \(problem)") }
                server.database = name
            default: return try tlsFile(key, value, at: path, into: &server.tls)
            }
            return true
        }
        return server
    }

    func run(_ node: Node) throws(ConfigError) -> RunConfig {
        var run = RunConfig()
        try keys(of: node, at: "run") { key, value, path throws(ConfigError) in
            guard key == "metrics_listen" else { return false }
            run.metricsListen = try string(value, at: path)
            return true
        }
        return run
    }

    /// Reads `key` into `tls` when it is one of the TLS file keys; false for other keys.
    private func tlsFile(_ key: String, _ value: Node, at path: String, into tls: inout TLSFilesConfig) throws(ConfigError) -> Bool {
        switch key {
        case "tls_cert": tls.certificate = try string(value, at: path)
        case "tls_key": tls.key = try string(value, at: path)
        case "tls_ca": tls.ca = try string(value, at: path)
        case "token_file": tls.tokenFile = try string(value, at: path)
        default: return false
        }
        return true
    }

    func bool(_ node: Node, at path: String) throws(ConfigError) -> Bool {
        guard case .scalar(let s) = node, let v = Bool(s.string.lowercased()) else {
            throw ConfigError(file: file, "\(path) must be true or false")
        }
        return v
    }

    private func nonNegativeSeconds(_ node: Node, at path: String) throws(ConfigError) -> Double {
        guard case .scalar(let s) = node, let v = Double(s.string), v >= 0, v.isFinite else {
            throw ConfigError(file: file, "\(path) must be a number of seconds")
        }
        return v
    }
}
