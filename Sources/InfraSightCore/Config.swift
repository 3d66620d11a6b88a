import Foundation
import InfraSightSchema
import Yams

/// The configuration file (YAML), default /etc/infrasight/infrasight.yaml.
///
/// ```yaml
/// node_name: worker-1            # default: $NODE_NAME, else the hostname
/// plugins:
///   dirs: [/usr/lib/infrasight/plugins]
///   enabled: [tracing]           # absent: every plugin found is enabled
///   required: [tracing]          # these must start, or the process exits (default: none)
///   options:
///     tracing: { exclude_comms: [sshd] }
///   pins:                        # SHA-256 of plugin files, checked before they load:
///     tracing: 3b1f...           #   by name (the name its file name gives), or
///   # pins: [3b1f..., 9c2e...]   #   as a list: only files with a listed digest load
///   #                            #   (items may also be `- tracing: 3b1f...`)
/// storage: { data_dir: /var/lib/infrasight }
/// agent: { server: central:50051 }   # see AgentConfig, ServerConfig, RunConfig, ConsoleConfig
/// ```
/// An unknown key or a value of the wrong type is an error that names the key.
public struct InfraSightConfig: Equatable, Sendable {
    public static let defaultPath = "/etc/infrasight/infrasight.yaml"
    public static let defaultPluginDirs = ["/usr/lib/infrasight/plugins"]

    public var nodeName: String?
    /// Where the host's filesystem is: `/`, or e.g. `/host` when the agent runs in a
    /// container (passwd, the cgroup2 mount and the runtime socket are read under it).
    public var hostRoot = "/"
    /// containerd's socket (under `hostRoot`), when not in a standard place.
    public var containerdSocket: String?
    /// The Docker Engine API socket (dockerd's or podman's, under `hostRoot`), when not in
    /// a standard place (/var/run/docker.sock, /run/podman/podman.sock).
    public var dockerSocket: String?
    /// How long rows of a container may wait for its image and labels, in ms (0: they
    /// never wait, and the first rows of a new container may lack them).
    public var containerMetadataWaitMs = 2000
    public var pluginDirs: [String] = InfraSightConfig.defaultPluginDirs
    /// nil: every plugin found is enabled.
    public var enabledPlugins: [String]?
    /// Plugins that must start: one that cannot (a kernel without a feature it needs, the
    /// verifier, bad options) stops the process. The others are run when they can and
    /// reported when they cannot; the process exits non-zero only when none starts.
    public var requiredPlugins: [String] = []
    public var pluginOptions: [String: [String: ConfigValue]] = [:]
    /// Plugin name → lower-case hex SHA-256: the file whose name gives NAME must have it.
    public var pins: [String: String] = [:]
    /// Lower-case hex SHA-256s from `plugins.pins` written as a list; non-nil means only
    /// files whose digest is listed (or matches their name's pin) load. nil when
    /// `plugins.pins` is absent or a mapping, which pins only the names it lists.
    public var pinnedDigests: Set<String>?
    /// Where the file was read from; nil when defaults apply.
    public var source: String?
    public var storage = StorageConfig()
    public var agent = AgentConfig()
    public var server = ServerConfig()
    public var run = RunConfig()
    public var console = ConsoleConfig()
    public var rules = RulesConfig()

    public init() {}

    /// Reads `path`, or the default path when nil. A missing default file means defaults;
    /// a missing explicit file is an error.
    public static func load(path: String?) throws(ConfigError) -> InfraSightConfig {
        let file = path ?? defaultPath
        guard FileManager.default.fileExists(atPath: file) else {
            if path == nil { return InfraSightConfig() }
            throw ConfigError(file: file, "file not found")
        }
        // The config names the plugins root loads, their pins and the chdb library: it gets
        // the same owner and mode checks as those files, on the descriptor it is read from.
        let data: Data
        do {
            let trusted = try TrustedFile.open(file, finalLink: .follow)
            defer { close(trusted.fd) }
            data = try trusted.contents()
        } catch {
            throw ConfigError(file: file, error.reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, "the file is not UTF-8")
        }
        var config = try parse(text, file: file)
        config.source = file
        return config
    }

    public static func parse(_ text: String, file: String = "<config>") throws(ConfigError) -> InfraSightConfig {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            let message = "\(error)".split(separator: "\n").first.map(String.init) ?? "invalid YAML"
            throw ConfigError(file: file, "invalid YAML: \(message)")
        }
        var config = InfraSightConfig()
        guard let root = node else { return config } // an empty file: defaults
        let r = ConfigReader(file: file)
        for (key, value) in try r.mapping(root, at: "") {
            switch key {
            case "node_name": config.nodeName = try r.string(value, at: "node_name")
            case "host_root": config.hostRoot = try r.string(value, at: "host_root")
            case "containerd_socket": config.containerdSocket = try r.string(value, at: "containerd_socket")
            case "docker_socket": config.dockerSocket = try r.string(value, at: "docker_socket")
            case "container_metadata_wait_ms":
                config.containerMetadataWaitMs = try r.int(value, in: 0...60000, at: "container_metadata_wait_ms")
            case "plugins":
                for (pkey, pvalue) in try r.mapping(value, at: "plugins") {
                    let path = "plugins.\(pkey)"
                    switch pkey {
                    case "dirs": config.pluginDirs = try r.stringList(pvalue, at: path)
                    case "enabled": config.enabledPlugins = try r.stringList(pvalue, at: path)
                    case "required": config.requiredPlugins = try r.stringList(pvalue, at: path)
                    case "options":
                        for (name, options) in try r.mapping(pvalue, at: path) {
                            var values: [String: ConfigValue] = [:]
                            for (option, v) in try r.mapping(options, at: "\(path).\(name)") {
                                values[option] = try r.value(v, at: "\(path).\(name).\(option)")
                            }
                            config.pluginOptions[name] = values
                        }
                    case "pins": (config.pins, config.pinnedDigests) = try r.pins(pvalue, at: path)
                    default: throw ConfigError(file: file, "unknown key \(path)")
                    }
                }
            case "storage":
                try r.keys(of: value, at: "storage") { skey, svalue, path throws(ConfigError) in
                    switch skey {
                    case "data_dir": config.storage.dataDir = try r.string(svalue, at: path)
                    case "clickhouse_url": config.storage.clickHouseURL = try r.string(svalue, at: path)
                    case "chdb_library": config.storage.chdbLibrary = try r.string(svalue, at: path)
                    case "batch_max_rows": config.storage.batchMaxRows = try r.positiveInt(svalue, at: path)
                    case "batch_max_delay_ms": config.storage.batchMaxDelayMs = try r.positiveInt(svalue, at: path)
                    case "queue_max_bytes": config.storage.queueMaxBytes = try r.positiveInt(svalue, at: path)
                    case "query_timeout": config.storage.queryTimeout = try r.positiveInt(svalue, at: path)
                    case "query_max_result_rows": config.storage.queryMaxResultRows = try r.positiveInt(svalue, at: path)
                    case "query_max_result_bytes": config.storage.queryMaxResultBytes = try r.positiveInt(svalue, at: path)
                    case "query_max_memory": config.storage.queryMaxMemory = try r.positiveInt(svalue, at: path)
                    case "retention":
                        config.storage.retentionSeconds = try r.retention(svalue, at: path)
                        config.storage.retentionConfigured = true
                    case "max_disk":
                        let text = try r.string(svalue, at: path)
                        guard let limit = DiskLimit(text) else {
                            throw ConfigError(file: file, "\(path) must be a percent of the file system (80%), a size with its unit, 1MiB at least (50GB, 512MiB), or none (got \(text.prefix(40)))")
                        }
                        config.storage.maxDisk = limit
                        config.storage.maxDiskConfigured = true
                    case "retention_tables":
                        for (name, value) in try r.mapping(svalue, at: path) {
                            guard isPlainIdentifier(name) else { throw ConfigError(file: file, "\(path): '\(name.prefix(60))' is not a table name") }
                            config.storage.tableRetention[name] = .some(try r.retention(value, at: "\(path).\(name)"))
                        }
                    default: return false
                    }
                    return true
                }
            case "agent": config.agent = try r.agent(value)
            case "server": config.server = try r.server(value)
            case "run": config.run = try r.run(value)
            case "console": config.console = try r.console(value)
            case "rules": config.rules = try r.rules(value)
            default: throw ConfigError(file: file, "unknown key \(key)")
            }
        }
        if let enabled = config.enabledPlugins, let stray = config.requiredPlugins.first(where: { !enabled.contains($0) }) {
            throw ConfigError(file: file, "plugins.required names \(stray), which plugins.enabled does not enable")
        }
        return config
    }
}

/// Where and how rows are stored (`storage:` in the config file).
public struct StorageConfig: Equatable, Sendable {
    /// Embedded ClickHouse's data directory (default: see `defaultDataDir`).
    public var dataDir: String?
    /// A ClickHouse server (`http://user:pass@host:8123/`); when set, it replaces the embedded engine.
    public var clickHouseURL: String?
    /// The chdb library (`_chdb.abi3.so`), when not in a standard place.
    public var chdbLibrary: String?
    /// A batch is sealed at this many rows...
    public var batchMaxRows = 200_000
    /// ...or when its oldest row is this old: at most ~1 insert/s per table at high rates,
    /// under a second of delay at low ones.
    public var batchMaxDelayMs = 1000
    /// Sealed batches waiting for the store, in bytes; beyond it a batch is dropped and counted.
    public var queueMaxBytes = 256 << 20
    /// Limits on statements from outside the program (`QueryLimits`; nil: its default):
    /// seconds, result rows, result bytes, working-memory bytes.
    public var queryTimeout: Int?
    public var queryMaxResultRows: Int?
    public var queryMaxResultBytes: Int?
    public var queryMaxMemory: Int?
    /// Seconds rows are kept (`storage.retention`; nil: forever). See `RetentionPolicy`.
    public var retentionSeconds: Int? = StorageConfig.defaultRetentionSeconds
    /// Whether `storage.retention` was written: the default does not reach tables an
    /// earlier release filled (see `RetentionPolicy.sparesExistingTables`).
    public var retentionConfigured = false
    /// Per table name (`storage.retention_tables`): seconds, or nil for forever.
    public var tableRetention: [String: Int?] = [:]
    /// How much disk the store may use (`storage.max_disk`); past it the oldest rows go
    /// first (see `StoreBudget`). The default keeps the host's file system under 80 % full.
    public var maxDisk = DiskLimit.percent(80)
    /// Whether `storage.max_disk` was written.
    public var maxDiskConfigured = false
    /// 90 days: what an audit trail is commonly asked to keep at hand (PCI DSS 10.5.1).
    public static let defaultRetentionSeconds = 90 * 86400

    public init() {}

    /// root: /var/lib/infrasight; others: $XDG_DATA_HOME/infrasight or ~/.local/share/infrasight.
    public static var defaultDataDir: String {
        if geteuid() == 0 { return "/var/lib/infrasight" }
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_DATA_HOME"], !xdg.isEmpty { return "\(xdg)/infrasight" }
        return "\(env["HOME"] ?? NSHomeDirectory())/.local/share/infrasight"
    }
}

/// A scalar or list value of a plugin option, as written in YAML.
public enum ConfigValue: Equatable, Sendable {
    case int(Int)
    case bool(Bool)
    case string(String)
    case list([ConfigValue])
}

/// A configuration error: one line naming the file and the key.
public struct ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { "config \(file): \(message)" }
}

struct ConfigReader {
    let file: String

    func mapping(_ node: Node, at path: String) throws(ConfigError) -> [(String, Node)] {
        guard case .mapping(let m) = node else {
            throw ConfigError(file: file, path.isEmpty ? "the top level must be a mapping" : "\(path) must be a mapping")
        }
        var out: [(String, Node)] = []
        for (k, v) in m {
            guard case .scalar(let s) = k else { throw ConfigError(file: file, "a key under \(path.isEmpty ? "the top level" : path) is not a string") }
            out.append((s.string, v))
        }
        return out
    }

    func string(_ node: Node, at path: String) throws(ConfigError) -> String {
        guard case .scalar(let s) = node, s.style != .plain || !["~", "null", ""].contains(s.string) else {
            throw ConfigError(file: file, "\(path) must be a string")
        }
        return s.string
    }

    /// `plugins.pins`: a mapping pins names (NAME: SHA-256); a list pins digests, and may
    /// hold NAME: SHA-256 items too. The digests are nil for the mapping form.
    func pins(_ node: Node, at path: String) throws(ConfigError) -> (names: [String: String], digests: Set<String>?) {
        var names: [String: String] = [:]
        func addNames(_ node: Node, at path: String) throws(ConfigError) {
            for (name, pin) in try mapping(node, at: path) { names[name] = try sha256(pin, at: "\(path).\(name)") }
        }
        switch node {
        case .mapping:
            try addNames(node, at: path)
            return (names, nil)
        case .sequence(let items):
            var digests = Set<String>()
            for (i, item) in items.enumerated() {
                if case .mapping = item {
                    try addNames(item, at: "\(path)[\(i)]")
                } else {
                    digests.insert(try sha256(item, at: "\(path)[\(i)]"))
                }
            }
            return (names, digests)
        default:
            throw ConfigError(file: file, "\(path) must be a mapping (NAME: SHA-256) or a list of SHA-256s")
        }
    }

    /// A SHA-256 in hex, lower-cased.
    func sha256(_ node: Node, at path: String) throws(ConfigError) -> String {
        let hex = try string(node, at: path).lowercased()
        guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit }) else {
            throw ConfigError(file: file, "\(path) must be a SHA-256 in hex (64 characters)")
        }
        return hex
    }

    func int(_ node: Node, in range: ClosedRange<Int>, at path: String) throws(ConfigError) -> Int {
        guard case .scalar(let s) = node, let v = Int(s.string), range.contains(v) else {
            throw ConfigError(file: file, "\(path) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return v
    }

    /// A retention: a duration ("90d", "12h", "30m", "3600s", a whole number of seconds
    /// in all), or `forever` (nil).
    func retention(_ node: Node, at path: String) throws(ConfigError) -> Int? {
        let text = try string(node, at: path)
        if text == "forever" { return nil }
        guard let seconds = durationSeconds(text), seconds >= 1, seconds <= Double(Int32.max) * 100, seconds == seconds.rounded() else {
            throw ConfigError(file: file, "\(path) must be a duration (90d, 12h, 30m, 3600s) or forever (got \(text.prefix(40)))")
        }
        return Int(seconds)
    }

    func positiveInt(_ node: Node, at path: String) throws(ConfigError) -> Int {
        guard case .scalar(let s) = node, let v = Int(s.string), v > 0 else {
            throw ConfigError(file: file, "\(path) must be a positive integer")
        }
        return v
    }

    func stringList(_ node: Node, at path: String) throws(ConfigError) -> [String] {
        guard case .sequence(let seq) = node else { throw ConfigError(file: file, "\(path) must be a list of strings") }
        var out: [String] = []
        for (i, item) in seq.enumerated() {
            out.append(try string(item, at: "\(path)[\(i)]"))
        }
        return out
    }

    func value(_ node: Node, at path: String) throws(ConfigError) -> ConfigValue {
        switch node {
        case .scalar(let s):
            if s.style == .plain {
                if let i = Int(s.string) { return .int(i) }
                switch s.string {
                case "true", "True", "TRUE", "yes", "on": return .bool(true)
                case "false", "False", "FALSE", "no", "off": return .bool(false)
                default: break
                }
            }
            return .string(s.string)
        case .sequence(let seq):
            var out: [ConfigValue] = []
            for (i, item) in seq.enumerated() {
                let v = try value(item, at: "\(path)[\(i)]")
                if case .list = v { throw ConfigError(file: file, "\(path)[\(i)] must be a scalar") }
                out.append(v)
            }
            return .list(out)
        default:
            throw ConfigError(file: file, "\(path) must be a scalar or a list")
        }
    }
}
