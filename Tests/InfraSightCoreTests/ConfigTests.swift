import Foundation
import InfraSightCore
import InfraSightTestSupport
import Testing

@Suite struct ConfigTests {
    @Test func readsEveryPluginKey() throws {
        let config = try InfraSightConfig.parse("""
            node_name: n1
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
        #expect(config.pluginDirs == ["/opt/a", "/opt/b"])
        #expect(config.enabledPlugins == ["tracing"])
        #expect(config.pluginOptions["tracing"]?["exclude_comms"] == .list([.string("sshd"), .string("cron")]))
        #expect(config.pluginOptions["tracing"]?["include_uids"] == .list([.int(0), .int(1000)]))
        #expect(config.pluginOptions["tracing"]?["exclude_self"] == .bool(false))
        #expect(config.pins["tracing"] == String(repeating: "ab", count: 32))
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
        ("plugins:\n  options: [a]", "plugins.options must be a mapping"),
        ("plugins:\n  options:\n    tracing: 3", "plugins.options.tracing must be a mapping"),
        ("- a\n- b", "the top level must be a mapping"),
    ])
    func errorsNameTheKey(yaml: String, message: String) {
        #expect(throws: ConfigError(file: "f.yaml", message)) { try InfraSightConfig.parse(yaml, file: "f.yaml") }
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
