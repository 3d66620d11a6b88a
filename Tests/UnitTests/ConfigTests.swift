import Foundation
import InfraSightCore
import InfraSightPipeline
import InfraSightTestSupport
import Testing

@Suite struct ConfigTests {
    @Test func readsEveryPluginKey() throws {
        let config = try InfraSightConfig.parse("""
            node_name: n1
            containerd_socket: /run/k.sock
            docker_socket: /run/user/1000/podman/podman.sock
            container_metadata_wait_ms: 500
            plugins:
              dirs: [/opt/a, /opt/b]
              enabled: [tracing]
              options:
                tracing:
                  exclude_comms: [sshd, cron]
                  include_uids: [0, 1000]
                  exclude_self: false
              pins:
                tracing: \(String(repeating: "ab", count: 32))
            """)
        #expect(config.nodeName == "n1")
        #expect(config.containerdSocket == "/run/k.sock")
        #expect(config.dockerSocket == "/run/user/1000/podman/podman.sock")
        #expect(config.containerMetadataWaitMs == 500)
        #expect(try InfraSightConfig.parse("node_name: n").containerMetadataWaitMs == 2000)
        #expect(throws: ConfigError.self) { try InfraSightConfig.parse("container_metadata_wait_ms: 60001") }
        #expect(throws: ConfigError.self) { try InfraSightConfig.parse("container_metadata_wait_ms: -1") }
        #expect(config.pluginDirs == ["/opt/a", "/opt/b"])
        #expect(config.enabledPlugins == ["tracing"])
        #expect(config.pluginOptions["tracing"]?["exclude_comms"] == .list([.string("sshd"), .string("cron")]))
        #expect(config.pluginOptions["tracing"]?["include_uids"] == .list([.int(0), .int(1000)]))
        #expect(config.pluginOptions["tracing"]?["exclude_self"] == .bool(false))
        #expect(config.pins["tracing"] == String(repeating: "ab", count: 32))
        // The mapping form pins names only: files of other names load unpinned.
        #expect(config.pinnedDigests == nil)
    }

    @Test func pinsAsAListAreDigestsAndMayHoldNamePins() throws {
        let a = String(repeating: "ab", count: 32), b = String(repeating: "CD", count: 32), c = String(repeating: "ef", count: 32)
        let config = try InfraSightConfig.parse("""
            plugins:
              pins:
                - \(a)
                - \(b)
                - tracing: \(c)
            """)
        #expect(config.pinnedDigests == [a, b.lowercased()])
        #expect(config.pins == ["tracing": c])
        let empty = try InfraSightConfig.parse("plugins:\n  pins: []\n")
        #expect(empty.pinnedDigests == [], "an empty list pins nothing, so nothing loads")
    }

    /// The config file gets the plugin files' owner and mode checks before it is read.
    @Test func aConfigFileOthersCanWriteIsRefusedAndASymlinkToATrustedOneIsFollowed() throws {
        let dir = try makeTempDir()
        let file = "\(dir)/infrasight.yaml"
        // Written with the default umask (0644 in a 0755 directory): accepted.
        try "node_name: n1\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try InfraSightConfig.load(path: file).nodeName == "n1")
        chmod(file, 0o646)
        #expect(throws: ConfigError(file: file, "writable by group or others (mode 0646); run chmod go-w \(file)")) {
            try InfraSightConfig.load(path: file)
        }
        chmod(file, 0o644)
        chmod(dir, 0o775)
        #expect(throws: ConfigError(file: file, "directory \(dir) is writable by group or others (mode 0775); run chmod go-w \(dir)")) {
            try InfraSightConfig.load(path: file)
        }
        chmod(dir, 0o700)
        // A ConfigMap mount is a symlink: the file it resolves to is checked and read.
        let links = try makeTempDir()
        symlink(file, "\(links)/infrasight.yaml")
        #expect(try InfraSightConfig.load(path: "\(links)/infrasight.yaml").nodeName == "n1")
        chmod(file, 0o664)
        #expect(throws: ConfigError(file: "\(links)/infrasight.yaml", "writable by group or others (mode 0664); run chmod go-w \(file)")) {
            try InfraSightConfig.load(path: "\(links)/infrasight.yaml")
        }
    }

    @Test func readsEveryFleetKey() throws {
        let config = try InfraSightConfig.parse("""
            agent:
              server: central:50051
              compression: gzip
              spool_dir: /var/spool/is
              spool_max_mb: 64
              drain_timeout: 2.5
              metrics_listen: 0.0.0.0:9464
              tls_cert: /a.pem
              tls_key: /a.key
              tls_ca: /ca.pem
              token_file: /token
            server:
              listen: 0.0.0.0:50051
              metrics_listen: 127.0.0.1:9465
              tls_cert: /s.pem
              tls_key: /s.key
            run:
              metrics_listen: 127.0.0.1:9466
            """)
        #expect(config.agent.server == "central:50051")
        #expect(config.agent.compression == "gzip")
        #expect(config.agent.spoolDir == "/var/spool/is")
        #expect(config.agent.spoolMaxMB == 64)
        #expect(config.agent.drainTimeout == 2.5)
        #expect(config.agent.metricsListen == "0.0.0.0:9464")
        #expect(config.agent.tls.certificate == "/a.pem" && config.agent.tls.key == "/a.key")
        #expect(config.agent.tls.ca == "/ca.pem" && config.agent.tls.tokenFile == "/token")
        #expect(config.server.listen == "0.0.0.0:50051" && config.server.metricsListen == "127.0.0.1:9465")
        #expect(config.server.tls.certificate == "/s.pem" && config.server.tls.key == "/s.key" && config.server.tls.ca == nil)
        #expect(config.run.metricsListen == "127.0.0.1:9466")
    }

    /// Several servers as a YAML list or one comma-separated string; the server's cluster.
    @Test func readsTheScaleOutKeys() throws {
        let list = try InfraSightConfig.parse("agent:\n  server: [a:50051, 'b:50051']\n  failback_after: 15\nserver:\n  cluster: prod_2\n")
        #expect(list.agent.server == "a:50051,b:50051")
        #expect(list.agent.failbackAfter == 15)
        #expect(list.server.cluster == "prod_2")
        #expect(try InfraSightConfig.parse("agent:\n  server: a:50051,b:50051\n").agent.server == "a:50051,b:50051")
    }

    /// The config accepts exactly the compressions the agent can use.
    @Test func theCompressionNamesAreTheAgents() {
        #expect(WireCompression.allCases.map(\.rawValue) == AgentConfig.compressions)
    }

    @Test func anEmptyFileMeansDefaults() throws {
        let config = try InfraSightConfig.parse("")
        #expect(config.pluginDirs == InfraSightConfig.defaultPluginDirs)
        #expect(config.enabledPlugins == nil)
    }

    @Test func aMissingDefaultFileMeansDefaultsButAMissingExplicitFileIsAnError() throws {
        // The default path does not exist on test machines.
        if !FileManager.default.fileExists(atPath: InfraSightConfig.defaultPath) {
            #expect(try InfraSightConfig.load(path: nil) == InfraSightConfig())
        }
        #expect(throws: ConfigError(file: "/nonexistent/x.yaml", "file not found")) {
            try InfraSightConfig.load(path: "/nonexistent/x.yaml")
        }
    }

    @Test(arguments: [
        ("plugin:\n  dirs: []", "unknown key plugin"),
        ("plugins:\n  dirz: []", "unknown key plugins.dirz"),
        ("plugins:\n  dirs: /opt", "plugins.dirs must be a list of strings"),
        ("plugins:\n  enabled: [[a]]", "plugins.enabled[0] must be a string"),
        ("plugins:\n  pins:\n    tracing: abc", "plugins.pins.tracing must be a SHA-256 in hex (64 characters)"),
        ("plugins:\n  pins: [abc]", "plugins.pins[0] must be a SHA-256 in hex (64 characters)"),
        ("plugins:\n  pins:\n    - tracing: xyz", "plugins.pins[0].tracing must be a SHA-256 in hex (64 characters)"),
        ("plugins:\n  pins: abc", "plugins.pins must be a mapping (NAME: SHA-256) or a list of SHA-256s"),
        ("plugins:\n  options: [a]", "plugins.options must be a mapping"),
        ("plugins:\n  required: tracing", "plugins.required must be a list of strings"),
        ("storage:\n  retention: soon", "storage.retention must be a duration (90d, 12h, 30m, 3600s) or forever (got soon)"),
        ("storage:\n  retention: 0.5s", "storage.retention must be a duration (90d, 12h, 30m, 3600s) or forever (got 0.5s)"),
        ("storage:\n  retention_tables:\n    'a;b': 1d", "storage.retention_tables: 'a;b' is not a table name"),
        ("storage:\n  retention_tables:\n    alerts: -1d", "storage.retention_tables.alerts must be a duration (90d, 12h, 30m, 3600s) or forever (got -1d)"),
        ("storage:\n  max_disk: 100%", "storage.max_disk must be a percent of the file system (80%), a size with its unit, 1MiB at least (50GB, 512MiB), or none (got 100%)"),
        ("storage:\n  max_disk: lots", "storage.max_disk must be a percent of the file system (80%), a size with its unit, 1MiB at least (50GB, 512MiB), or none (got lots)"),
        ("storage:\n  max_disk: 0GB", "storage.max_disk must be a percent of the file system (80%), a size with its unit, 1MiB at least (50GB, 512MiB), or none (got 0GB)"),
        ("plugins:\n  required: [mmap]\n  enabled: [tracing]", "plugins.required names mmap, which plugins.enabled does not enable"),
        ("plugins:\n  options:\n    tracing: 3", "plugins.options.tracing must be a mapping"),
        ("- a\n- b", "the top level must be a mapping"),
        ("agent:\n  servre: a:1", "unknown key agent.servre"),
        ("agent:\n  compression: lz4", "agent.compression must be one of none, gzip, deflate (got lz4)"),
        ("agent:\n  spool_max_mb: -1", "agent.spool_max_mb must be a positive integer"),
        ("agent:\n  drain_timeout: soon", "agent.drain_timeout must be a number of seconds"),
        ("server:\n  tls_cert: [a]", "server.tls_cert must be a string"),
        ("run:\n  listen: a:1", "unknown key run.listen"),
        ("agent:\n  server: []", "agent.server must name at least one HOST:PORT"),
        ("agent:\n  failback_after: 0", "agent.failback_after must be positive"),
        ("server:\n  cluster: 'a;DROP'", "server.cluster must be a plain name (letters, digits, _), got a;DROP"),
    ])
    func errorsNameTheKey(yaml: String, message: String) {
        #expect(throws: ConfigError(file: "f.yaml", message)) { try InfraSightConfig.parse(yaml, file: "f.yaml") }
    }

    @Test func retentionIsADurationOrForeverPerTableTooAndNinetyDaysByDefault() throws {
        #expect(InfraSightConfig().storage.retentionSeconds == 90 * 86400)
        let c = try InfraSightConfig.parse("storage:\n  retention: 30d\n  retention_tables:\n    tracing_events: 12h\n    alerts: forever\n")
        #expect(c.storage.retentionSeconds == 30 * 86400)
        let forever: Int? = nil
        #expect(c.storage.tableRetention == ["tracing_events": 12 * 3600, "alerts": forever])
        #expect(try InfraSightConfig.parse("storage:\n  retention: forever\n").storage.retentionSeconds == nil)
    }

    /// storage.max_disk: a percent of the file system (80 % by default), a size in decimal
    /// or binary units, or none.
    @Test func maxDiskIsAPercentASizeOrNone() throws {
        #expect(InfraSightConfig().storage.maxDisk == .percent(80))
        #expect(!InfraSightConfig().storage.maxDiskConfigured)
        for (text, limit) in [("75%", DiskLimit.percent(75)), ("50GB", .bytes(50_000_000_000)), ("512MiB", .bytes(512 << 20)),
                              ("1.5 TB", .bytes(1_500_000_000_000)), ("none", .none)] {
            let c = try InfraSightConfig.parse("storage:\n  max_disk: \(text)\n")
            #expect(c.storage.maxDisk == limit, "\(text)")
            #expect(c.storage.maxDiskConfigured)
        }
        // No unit (80 meant as 80 %?), under 1 MiB, hex, exponents: refused.
        for bad in ["0%", "-5GB", "12PB", "0.1B", "GB", "1e30", "inf", "nan%", "80", "0.8", "4096", "100KB", "0x10GB", "1e3GB", "1..5GB"] {
            #expect(DiskLimit(bad) == nil, "\(bad)")
        }
        #expect(describeBytes(17) == "17 B")
        #expect(describeBytes(2_149_000) == "2.1 MB")
        #expect(describeBytes(50_000_000_000) == "50 GB")
    }

    @Test func invalidYAMLIsOneLine() {
        do {
            _ = try InfraSightConfig.parse("plugins: [a, b", file: "f.yaml")
            Issue.record("no error")
        } catch {
            #expect(error.description.hasPrefix("config f.yaml: invalid YAML"))
            #expect(!error.description.contains("\n"))
        }
    }
}
