import Foundation
import Glibc
import InfraSightCore
import InfraSightTestSupport
import Testing

/// The loader on real files: every bad fixture is refused with its reason, in the
/// documented order of checks, while the good plugins in the same directories still load.
@Suite(.serialized) struct PluginLoaderTests {
    struct Listed {
        let byPath: [String: [String: Any]]
        let status: Int32
        let stderr: String
    }

    /// Runs `infrasight plugins list --json` with a config that searches only `dirs`
    /// (plus the build directory, which holds the first-party plugins).
    func list(dirs: [String], extraConfig: String = "") throws -> Listed {
        let configDir = try makeTempDir()
        let config = "\(configDir)/infrasight.yaml"
        try "plugins:\n  dirs: [\(dirs.joined(separator: ", "))]\n\(extraConfig)".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try run(Paths.infrasight, ["plugins", "list", "--json", "--config", config])
        let array = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
        var byPath: [String: [String: Any]] = [:]
        for item in array { byPath[(item["path"] as? String ?? "") ] = item }
        return Listed(byPath: byPath, status: r.status, stderr: r.stderr)
    }

    func error(_ l: Listed, _ path: String) -> String? {
        l.byPath[path]?["error"] as? String
    }

    @Test func everyBadFixtureIsReportedWithItsReasonWhileGoodPluginsLoad() throws {
        let dir = try makeTempDir()
        try PluginFixture.build("\(dir)/a_good.so", name: "fixture_good")
        try "this is not a plugin\n".write(toFile: "\(dir)/b_garbage.so", atomically: true, encoding: .utf8)
        chmod("\(dir)/b_garbage.so", 0o644)
        let tracing = try Data(contentsOf: URL(fileURLWithPath: Paths.tracingPlugin))
        try tracing.prefix(tracing.count / 2).write(to: URL(fileURLWithPath: "\(dir)/c_truncated.so"))
        chmod("\(dir)/c_truncated.so", 0o644)
        try PluginFixture.build("\(dir)/d_noentry.so", name: "fixture_noentry", defines: ["ENTRY": "some_other_symbol"])
        try PluginFixture.build("\(dir)/e_badmagic.so", name: "fixture_magic", defines: ["MAGIC": "0x12345678u"])
        try PluginFixture.build("\(dir)/f_abimajor.so", name: "fixture_major", defines: ["MAJOR": "(IS_PLUGIN_ABI_MAJOR+1)"])
        try PluginFixture.build("\(dir)/g_abiminor.so", name: "fixture_minor", defines: ["MINOR": "(IS_PLUGIN_ABI_MINOR+1)"])
        try PluginFixture.build("\(dir)/h_small.so", name: "fixture_small", defines: ["SIZE": "12"])
        try PluginFixture.build("\(dir)/i_dup1.so", name: "fixture_dup")
        try PluginFixture.build("\(dir)/i_dup2.so", name: "fixture_dup")
        try PluginFixture.build("\(dir)/j_writable.so", name: "fixture_writable")
        chmod("\(dir)/j_writable.so", 0o666)
        try PluginFixture.build("\(dir)/k_notable.so", name: "fixture_notable", defines: ["TABLE_COUNT": "0"])
        try PluginFixture.build("\(dir)/l_badddl.so", name: "fixture_badddl", defines: ["DDL": "\"CREATE VIEW audit.v AS SELECT 1\""])
        try PluginFixture.build("\(dir)/m_badname.so", name: "Bad Name")
        try PluginFixture.build("\(dir)/n_otherowner.so", name: "fixture_owner")
        chown("\(dir)/n_otherowner.so", 12345, 12345)
        try FileManager.default.createDirectory(atPath: "\(dir)/o_dir.so", withIntermediateDirectories: false)
        try PluginFixture.build("\(dir)/p_wrongtable.so", name: "fixture_wrongtable", defines: ["TABLE": "\"audit.other\""])

        let l = try list(dirs: [dir])
        #expect(l.status == 0, "\(l.stderr)")
        #expect(l.byPath["\(dir)/a_good.so"]?["status"] as? String == "loaded")
        #expect(l.byPath["\(dir)/i_dup1.so"]?["status"] as? String == "loaded")
        let tracingEntry = l.byPath.values.first { $0["name"] as? String == "tracing" }
        #expect(tracingEntry?["status"] as? String == "loaded")

        let expected: [(String, String)] = [
            ("b_garbage.so", "not an ELF file"),
            ("c_truncated.so", "truncated or malformed ELF: "),
            ("d_noentry.so", "no entry symbol infrasight_plugin_entry: not an InfraSight plugin"),
            ("e_badmagic.so", "bad magic 0x12345678 (expected 0x47505349)"),
            ("f_abimajor.so", "plugin ABI 2.0 is incompatible with this host's ABI 1.0 (major versions differ)"),
            ("g_abiminor.so", "plugin ABI 1.1 is newer than this host's ABI 1.0; upgrade infrasight"),
            ("h_small.so", "descriptor is 12 bytes; ABI 1.0 requires at least"),
            ("i_dup2.so", "duplicate plugin name fixture_dup (already loaded from \(dir)/i_dup1.so)"),
            ("j_writable.so", "writable by group or others (mode 0666); run chmod go-w"),
            ("k_notable.so", "declares no table"),
            ("l_badddl.so", "bad DDL for table audit.fixture_events: DDL is not a CREATE TABLE statement"),
            ("m_badname.so", "invalid plugin name 'Bad Name'"),
            ("n_otherowner.so", "owned by uid 12345, not by root or the current user"),
            ("o_dir.so", "not a regular file"),
            ("p_wrongtable.so", "bad DDL for table audit.other: DDL creates audit.fixture_events, not audit.other"),
        ]
        for (file, reason) in expected {
            let entry = l.byPath["\(dir)/\(file)"]
            #expect(entry?["status"] as? String == "error", "\(file)")
            #expect(entry?["enabled"] as? Bool == false, "\(file)")
            let message = error(l, "\(dir)/\(file)") ?? "<none>"
            #expect(message.hasPrefix(reason), "\(file): \(message)")
        }
    }

    @Test func theTableViewPrintsEachRefusalAsPathColonReason() throws {
        let dir = try makeTempDir()
        try "garbage".write(toFile: "\(dir)/bad.so", atomically: true, encoding: .utf8)
        chmod("\(dir)/bad.so", 0o644)
        let configDir = try makeTempDir()
        try "plugins:\n  dirs: [\(dir)]\n".write(toFile: "\(configDir)/c.yaml", atomically: true, encoding: .utf8)
        let r = try run(Paths.infrasight, ["plugins", "list", "--config", "\(configDir)/c.yaml"])
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("NAME"))
        #expect(r.stdout.contains("tracing"))
        #expect(r.stderr.contains("infrasight: \(dir)/bad.so: not an ELF file\n"))
    }

    @Test func aPluginInAGroupWritableDirectoryIsRefused() throws {
        let dir = try makeTempDir()
        try PluginFixture.build("\(dir)/p.so", name: "fixture_opendir")
        chmod(dir, 0o777)
        let l = try list(dirs: [dir])
        #expect(error(l, "\(dir)/p.so")?.hasPrefix("its directory \(dir) is writable by group or others (mode 0777)") == true)
    }

    @Test func symlinksAreFollowedOnlyIntoAPluginDirectory() throws {
        let inside = try makeTempDir()
        let outside = try makeTempDir()
        try PluginFixture.build("\(inside)/real.so", name: "fixture_real")
        try PluginFixture.build("\(outside)/elsewhere.so", name: "fixture_elsewhere")
        symlink("\(inside)/real.so", "\(inside)/z_link_in.so")
        symlink("\(outside)/elsewhere.so", "\(inside)/z_link_out.so")
        let l = try list(dirs: [inside])
        #expect(l.byPath["\(inside)/real.so"]?["status"] as? String == "loaded")
        // The link into the same directory is the same plugin again: refused as a duplicate, not for the link.
        #expect(error(l, "\(inside)/z_link_in.so")?.hasPrefix("duplicate plugin name fixture_real") == true)
        #expect(error(l, "\(inside)/z_link_out.so") == "symlink to \(outside)/elsewhere.so, which is outside the plugin directories")
    }

    @Test func aPinMismatchIsRefusedAndAMatchingPinLoads() throws {
        let dir = try makeTempDir()
        try PluginFixture.build("\(dir)/pinned.so", name: "fixture_pinned")
        try PluginFixture.build("\(dir)/other.so", name: "fixture_other")
        let digest = try run("/usr/bin/sha256sum", ["\(dir)/other.so"]).stdout.prefix(64)
        let wrong = String(repeating: "0", count: 64)
        let l = try list(dirs: [dir], extraConfig: "  pins:\n    fixture_pinned: \(wrong)\n    fixture_other: \(digest)\n")
        #expect(error(l, "\(dir)/pinned.so")?.hasPrefix("SHA-256 ") == true)
        #expect(error(l, "\(dir)/pinned.so")?.hasSuffix("does not match the pin for fixture_pinned in the config (\(wrong))") == true)
        #expect(l.byPath["\(dir)/other.so"]?["status"] as? String == "loaded")
        #expect(l.byPath["\(dir)/other.so"]?["sha256"] as? String == String(digest))
    }

    @Test func listJSONHasTheDocumentedShape() throws {
        let dir = try makeTempDir()
        try PluginFixture.build("\(dir)/good.so", name: "fixture_shape")
        let l = try list(dirs: [dir], extraConfig: "  enabled: [tracing]\n")
        let good = try #require(l.byPath["\(dir)/good.so"])
        #expect(Set(good.keys).isSuperset(of: ["name", "version", "abi", "path", "tables", "enabled", "status", "error"]))
        #expect(good["name"] as? String == "fixture_shape")
        #expect(good["version"] as? String == "1.2.3")
        #expect(good["abi"] as? String == "1.0")
        #expect(good["tables"] as? [String] == ["audit.fixture_events"])
        #expect(good["enabled"] as? Bool == false)
        #expect(good["status"] as? String == "disabled")
        #expect(good["error"] is NSNull)
        let tracing = try #require(l.byPath.values.first { $0["name"] as? String == "tracing" })
        #expect(tracing["enabled"] as? Bool == true)
        #expect(tracing["status"] as? String == "loaded")
        #expect(tracing["tables"] as? [String] == ["audit.tracing_events"])
    }

    @Test func anEnabledPluginThatIsNotFoundIsAnErrorListingTheDirectories() throws {
        let dir = try makeTempDir()
        let l = try list(dirs: [dir], extraConfig: "  enabled: [tracing, nosuch]\n")
        #expect(l.status == 1)
        #expect(l.stderr.contains("infrasight: enabled plugin nosuch not found; searched: \(dir), \(Paths.realBinDir)"))
    }

    @Test func unknownOrMistypedPluginOptionsNameTheKey() throws {
        let dir = try makeTempDir()
        var l = try list(dirs: [dir], extraConfig: "  options:\n    tracing:\n      exclude_comm: [sshd]\n")
        var tracing = l.byPath.values.first { $0["name"] as? String == "tracing" }
        #expect((tracing?["error"] as? String)?.contains("unknown key plugins.options.tracing.exclude_comm (plugin tracing accepts: include_pids") == true)
        #expect(tracing?["status"] as? String == "error")
        l = try list(dirs: [dir], extraConfig: "  options:\n    tracing:\n      include_uids: root\n")
        tracing = l.byPath.values.first { $0["name"] as? String == "tracing" }
        #expect((tracing?["error"] as? String)?.hasSuffix("plugins.options.tracing.include_uids must be a list of integers") == true)
    }

    @Test func badConfigExitsWithOneLineAndStatus2() throws {
        let dir = try makeTempDir()
        try "plugins:\n  enabled: tracing\n".write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        let r = try run(Paths.infrasight, ["plugins", "list", "--config", "\(dir)/c.yaml"])
        #expect(r.status == 2)
        #expect(r.stderr == "infrasight: config \(dir)/c.yaml: plugins.enabled must be a list of strings\n")
        let missing = try run(Paths.infrasight, ["plugins", "list", "--config", "\(dir)/none.yaml"])
        #expect(missing.status == 2)
        #expect(missing.stderr == "infrasight: config \(dir)/none.yaml: file not found\n")
    }

    @Test func aCommandLineMistakeIsOneLineAndStatus64() throws {
        let cases: [([String], String)] = [
            (["trace", "--bogus"], "infrasight: Unknown option '--bogus' (see --help)\n"),
            (["trace", "--duration", "abc"], "infrasight: The value 'abc' is invalid for '--duration <SECONDS>' (see --help)\n"),
            (["trace", "--duration", "0"], "infrasight: --duration must be positive (see --help)\n"),
            (["frob"], "infrasight: Unexpected argument 'frob' (see --help)\n"),
        ]
        for (arguments, line) in cases {
            let r = try run(Paths.infrasight, arguments)
            #expect(r.status == 64, "\(arguments)")
            #expect(r.stderr == line)
        }
        // Help is not an error: the usage goes to stdout, status 0.
        let help = try run(Paths.infrasight, ["trace", "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("USAGE: infrasight trace"))
    }

    @Test func verifyExitsZeroOnlyForALoadablePlugin() throws {
        let dir = try makeTempDir()
        try PluginFixture.build("\(dir)/ok.so", name: "fixture_verify")
        try PluginFixture.build("\(dir)/bad.so", name: "fixture_verify_bad", defines: ["MAJOR": "7"])
        let ok = try run(Paths.infrasight, ["plugins", "verify", "\(dir)/ok.so"])
        #expect(ok.status == 0)
        #expect(ok.stdout.hasPrefix("\(dir)/ok.so: ok: plugin fixture_verify 1.2.3, ABI 1.0"))
        let bad = try run(Paths.infrasight, ["plugins", "verify", "\(dir)/bad.so"])
        #expect(bad.status == 1)
        #expect(bad.stdout == "\(dir)/bad.so: plugin ABI 7.0 is incompatible with this host's ABI 1.0 (major versions differ)\n")
        let real = try run(Paths.infrasight, ["plugins", "verify", Paths.tracingPlugin])
        #expect(real.status == 0, "\(real.stdout)")
        // A second file named like an installed plugin would never load.
        try FileManager.default.copyItem(atPath: Paths.tracingPlugin, toPath: "\(dir)/copy.so")
        let copy = try run(Paths.infrasight, ["plugins", "verify", "\(dir)/copy.so"])
        #expect(copy.status == 1)
        #expect(copy.stdout.hasPrefix("\(dir)/copy.so: a plugin named tracing is already installed at /"), "\(copy.stdout)")
        #expect(copy.stdout.hasSuffix("/libinfrasight-tracing.so; of two with one name only the first found loads\n"), "\(copy.stdout)")
    }

    @Test func infoShowsDDLProgramsAndOptions() throws {
        let r = try run(Paths.infrasight, ["plugins", "info", "tracing", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let info = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(info["name"] as? String == "tracing")
        let tables = try #require(info["tables"] as? [[String: Any]])
        let ddl = try String(contentsOfFile: "\(Paths.packageRoot)/schema/tracing_events.sql", encoding: .utf8)
        // The plugin's DDL is the schema file, byte for byte: one source.
        #expect(tables.first?["ddl"] as? String == ddl)
        let programs = try #require(info["programs"] as? [[String: String]])
        #expect(programs.contains { $0["name"] == "enter_openat" && $0["attach"] == "tracepoint/syscalls/sys_enter_openat" })
        #expect(programs.contains { $0["name"] == "exit_execve" && $0["attach"] == "tracepoint/syscalls/sys_exit_execve" })
        let options = try #require(info["options"] as? [[String: Any]])
        #expect(options.map { $0["name"] as? String } .contains("exclude_comms"))
        let missing = try run(Paths.infrasight, ["plugins", "info", "nosuch"])
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("infrasight: plugin nosuch not found; searched: "))
    }
}
