import Foundation
import Glibc
import InfraSightCore
import InfraSightStorage
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

    /// Writes a config that searches only `dirs` (plus the build directory, which holds the
    /// first-party plugins) and returns its path.
    func config(dirs: [String], extraConfig: String = "") throws -> String {
        let configDir = try makeTempDir()
        let config = "\(configDir)/infrasight.yaml"
        try "plugins:\n  dirs: [\(dirs.joined(separator: ", "))]\n\(extraConfig)".write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    /// Runs `infrasight plugins list --json` (plus `arguments`) with `config(dirs:extraConfig:)`.
    func list(dirs: [String], extraConfig: String = "", arguments: [String] = []) throws -> Listed {
        let config = try config(dirs: dirs, extraConfig: extraConfig)
        let r = try run(Paths.infrasight, ["plugins", "list", "--json", "--config", config] + arguments)
        let array = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
        var byPath: [String: [String: Any]] = [:]
        for item in array { byPath[(item["path"] as? String ?? "") ] = item }
        return Listed(byPath: byPath, status: r.status, stderr: r.stderr)
    }

    func error(_ l: Listed, _ path: String) -> String? {
        l.byPath[path]?["error"] as? String
    }

    func sha256(_ path: String) throws -> String {
        String(try run("/usr/bin/sha256sum", [path]).stdout.prefix(64))
    }

    @Test func everyBadFixtureIsReportedWithItsReasonWhileGoodPluginsLoad() throws {
        let dir = try makeTempDir()
        // A plugin's file name gives its name: NAME.so here.
        try PluginFixture.build("\(dir)/a_good.so", name: "a_good")
        try "this is not a plugin\n".write(toFile: "\(dir)/b_garbage.so", atomically: true, encoding: .utf8)
        chmod("\(dir)/b_garbage.so", 0o644)
        let tracing = try Data(contentsOf: URL(fileURLWithPath: Paths.tracingPlugin))
        try tracing.prefix(tracing.count / 2).write(to: URL(fileURLWithPath: "\(dir)/c_truncated.so"))
        chmod("\(dir)/c_truncated.so", 0o644)
        try PluginFixture.build("\(dir)/d_noentry.so", name: "d_noentry", defines: ["ENTRY": "some_other_symbol"])
        try PluginFixture.build("\(dir)/e_badmagic.so", name: "e_badmagic", defines: ["MAGIC": "0x12345678u"])
        try PluginFixture.build("\(dir)/f_abimajor.so", name: "f_abimajor", defines: ["MAJOR": "(IS_PLUGIN_ABI_MAJOR+1)"])
        try PluginFixture.build("\(dir)/g_abiminor.so", name: "g_abiminor", defines: ["MINOR": "(IS_PLUGIN_ABI_MINOR+1)"])
        try PluginFixture.build("\(dir)/h_small.so", name: "h_small", defines: ["SIZE": "12"])
        // Two files whose names give one plugin name: the first found (sorted) wins.
        try PluginFixture.build("\(dir)/i_dup.so", name: "i_dup")
        try PluginFixture.build("\(dir)/libinfrasight-i_dup.so", name: "i_dup")
        try PluginFixture.build("\(dir)/j_writable.so", name: "j_writable")
        chmod("\(dir)/j_writable.so", 0o666)
        try PluginFixture.build("\(dir)/k_notable.so", name: "k_notable", defines: ["TABLE_COUNT": "0"])
        try PluginFixture.build("\(dir)/l_badddl.so", name: "l_badddl", defines: ["DDL": "\"CREATE VIEW audit.v AS SELECT 1\""])
        try PluginFixture.build("\(dir)/m_badname.so", name: "Bad Name")
        try PluginFixture.build("\(dir)/n_otherowner.so", name: "n_otherowner")
        chown("\(dir)/n_otherowner.so", 12345, 12345)
        try FileManager.default.createDirectory(atPath: "\(dir)/o_dir.so", withIntermediateDirectories: false)
        try PluginFixture.build("\(dir)/p_wrongtable.so", name: "p_wrongtable", defines: ["TABLE": "\"audit.other\""])
        try PluginFixture.build("\(dir)/q_misnamed.so", name: "other_name")
        try PluginFixture.build("\(dir)/R Bad.so", name: "r_bad")

        let l = try list(dirs: [dir])
        #expect(l.status == 0, "\(l.stderr)")
        #expect(l.byPath["\(dir)/a_good.so"]?["status"] as? String == "loaded")
        #expect(l.byPath["\(dir)/i_dup.so"]?["status"] as? String == "loaded")
        let tracingEntry = l.byPath.values.first { $0["name"] as? String == "tracing" }
        #expect(tracingEntry?["status"] as? String == "loaded")

        let expected: [(String, String)] = [
            ("b_garbage.so", "not an ELF file"),
            ("c_truncated.so", "truncated or malformed ELF: "),
            ("d_noentry.so", "no entry symbol infrasight_plugin_entry: not an InfraSight plugin"),
            ("e_badmagic.so", "bad magic 0x12345678 (expected 0x47505349)"),
            ("f_abimajor.so", "plugin ABI 2.2 is incompatible with this host's ABI 1.2 (major versions differ)"),
            ("g_abiminor.so", "plugin ABI 1.3 is newer than this host's ABI 1.2; upgrade infrasight"),
            ("h_small.so", "descriptor is 12 bytes; ABI 1.2 requires at least"),
            ("libinfrasight-i_dup.so", "duplicate plugin name i_dup (already found at \(dir)/i_dup.so)"),
            ("j_writable.so", "writable by group or others (mode 0666); run chmod go-w \(dir)/j_writable.so"),
            ("k_notable.so", "declares no table"),
            ("l_badddl.so", "bad DDL for table audit.fixture_events: DDL is not a CREATE TABLE statement"),
            ("m_badname.so", "invalid plugin name 'Bad Name'"),
            ("n_otherowner.so", "owned by uid 12345, not by root or the current user"),
            ("o_dir.so", "not a regular file"),
            ("p_wrongtable.so", "bad DDL for table audit.other: DDL creates audit.fixture_events, not audit.other"),
            ("q_misnamed.so", "reports the name other_name but its file name gives q_misnamed; rename the file libinfrasight-other_name.so"),
            ("R Bad.so", "the file name gives the plugin name 'R Bad', which is invalid: use [a-z0-9_-], at most 64 characters; name the file libinfrasight-NAME.so"),
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

    @Test func aPluginUnderAGroupWritableDirectoryIsRefusedUnlessTheDirectoryIsSticky() throws {
        let dir = try makeTempDir()
        try PluginFixture.build("\(dir)/opendir.so", name: "opendir")
        chmod(dir, 0o777)
        var l = try list(dirs: [dir])
        #expect(error(l, "\(dir)/opendir.so") == "directory \(dir) is writable by group or others (mode 0777); run chmod go-w \(dir)")
        // Any directory up to /, not only the file's own.
        let sub = "\(dir)/sub"
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: false)
        chmod(sub, 0o755)
        try PluginFixture.build("\(sub)/deeper.so", name: "deeper")
        l = try list(dirs: [sub])
        #expect(error(l, "\(sub)/deeper.so") == "directory \(dir) is writable by group or others (mode 0777); run chmod go-w \(dir)")
        // With the sticky bit (as /tmp), others cannot rename what they do not own: trusted.
        chmod(dir, 0o1777)
        l = try list(dirs: [sub])
        #expect(l.byPath["\(sub)/deeper.so"]?["status"] as? String == "loaded", "\(l.byPath["\(sub)/deeper.so"] ?? [:])")
        // A directory owned by someone else is refused like a file.
        chmod(dir, 0o755)
        chown(sub, 12345, 12345)
        l = try list(dirs: [sub])
        #expect(error(l, "\(sub)/deeper.so") == "directory \(sub) is owned by uid 12345, not by root or the current user")
    }

    @Test func aSymlinkedPluginIsRefusedWhereverItPoints() throws {
        let inside = try makeTempDir()
        let outside = try makeTempDir()
        try PluginFixture.build("\(inside)/real.so", name: "real")
        try PluginFixture.build("\(outside)/elsewhere.so", name: "elsewhere")
        symlink("\(inside)/real.so", "\(inside)/z_link_in.so")
        symlink("\(outside)/elsewhere.so", "\(inside)/z_link_out.so")
        let l = try list(dirs: [inside])
        #expect(l.byPath["\(inside)/real.so"]?["status"] as? String == "loaded")
        #expect(error(l, "\(inside)/z_link_in.so") == "is a symlink; plugins are opened without following links")
        #expect(error(l, "\(inside)/z_link_out.so") == "is a symlink; plugins are opened without following links")
    }

    @Test func aNamePinThatDiffersRefusesTheFileBeforeItRunsAndAMatchingPinLoads() throws {
        let dir = try makeTempDir()
        let marker = "\(dir)/pinned.loaded"
        try PluginFixture.build("\(dir)/pinned.so", name: "pinned", marker: marker)
        try PluginFixture.build("\(dir)/other.so", name: "other")
        let digest = try sha256("\(dir)/pinned.so")
        let otherDigest = try sha256("\(dir)/other.so")
        let wrong = String(repeating: "0", count: 64)
        let pins = "  pins:\n    pinned: \(wrong)\n    other: \(otherDigest)\n"
        let l = try list(dirs: [dir], extraConfig: pins)
        #expect(l.status == 0, "\(l.stderr)")
        #expect(error(l, "\(dir)/pinned.so") == "SHA-256 \(digest) does not match the pin for pinned in the config (\(wrong))")
        #expect(l.byPath["\(dir)/pinned.so"]?["name"] as? String == "pinned")
        #expect(!FileManager.default.fileExists(atPath: marker), "the refused plugin's constructor ran")
        #expect(l.byPath["\(dir)/other.so"]?["status"] as? String == "loaded")
        #expect(l.byPath["\(dir)/other.so"]?["sha256"] as? String == otherDigest)
        // Not even --inspect loads a refused file.
        _ = try list(dirs: [dir], extraConfig: pins, arguments: ["--inspect"])
        #expect(!FileManager.default.fileExists(atPath: marker), "--inspect ran a refused plugin's constructor")

        // trace: the refused plugin is reported, the other enabled plugin runs.
        let config = try config(dirs: [dir], extraConfig: "  enabled: [tracing, pinned]\n" + pins)
        let r = try run(Paths.infrasight, ["trace", "--config", config, "--duration", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("\(dir)/pinned.so: SHA-256 \(digest) does not match the pin for pinned in the config (\(wrong))\n"), "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: tracing: received "), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "trace ran a refused plugin's constructor")
    }

    @Test func withABareDigestListOnlyListedFilesLoad() throws {
        let dir = try makeTempDir()
        let marker = "\(dir)/unlisted.loaded"
        try PluginFixture.build("\(dir)/listed.so", name: "listed")
        try PluginFixture.build("\(dir)/byname.so", name: "byname")
        try PluginFixture.build("\(dir)/unlisted.so", name: "unlisted", marker: marker)
        let unlisted = try sha256("\(dir)/unlisted.so")
        // A list of digests, with a NAME: DIGEST item besides.
        let pins = "  pins:\n    - \(try sha256("\(dir)/listed.so"))\n    - byname: \(try sha256("\(dir)/byname.so"))\n"
        let l = try list(dirs: [dir], extraConfig: pins)
        #expect(l.status == 0, "\(l.stderr)")
        #expect(l.byPath["\(dir)/listed.so"]?["status"] as? String == "loaded")
        #expect(l.byPath["\(dir)/byname.so"]?["status"] as? String == "loaded")
        #expect(error(l, "\(dir)/unlisted.so") == "not pinned: its SHA-256 \(unlisted) is not among plugins.pins in the config")
        #expect(!FileManager.default.fileExists(atPath: marker), "the unpinned plugin's constructor ran")
        // The first-party plugins are not listed either.
        let tracing = try #require(l.byPath.values.first { $0["name"] as? String == "tracing" })
        #expect((tracing["error"] as? String)?.hasPrefix("not pinned: its SHA-256 ") == true)
    }

    @Test func aPluginThatIsNotEnabledIsNeverLoadedUnlessInspected() throws {
        let dir = try makeTempDir()
        let marker = "\(dir)/quiet.loaded"
        try PluginFixture.build("\(dir)/libinfrasight-quiet.so", name: "quiet", marker: marker)
        let path = "\(dir)/libinfrasight-quiet.so"
        let enabled = "  enabled: [tracing]\n"

        let l = try list(dirs: [dir], extraConfig: enabled)
        #expect(l.status == 0, "\(l.stderr)")
        let quiet = try #require(l.byPath[path])
        #expect(quiet["name"] as? String == "quiet")
        #expect(quiet["status"] as? String == "disabled")
        #expect(quiet["enabled"] as? Bool == false)
        #expect(quiet["version"] is NSNull)
        #expect(quiet["abi"] is NSNull)
        #expect(quiet["tables"] as? [String] == [])
        #expect(quiet["error"] is NSNull)
        #expect(quiet["sha256"] as? String == (try sha256(path)))
        #expect(!FileManager.default.fileExists(atPath: marker), "plugins list loaded a disabled plugin")

        let tracingOnly = try config(dirs: [dir], extraConfig: enabled)
        let table = try run(Paths.infrasight, ["plugins", "list", "--config", tracingOnly])
        #expect(table.status == 0)
        let row = table.stdout.split(separator: "\n").first { $0.hasPrefix("quiet ") }.map { $0.split(separator: " ").map(String.init) }
        #expect(row == ["quiet", "-", "-", "-", "no", "disabled", "-", path], "\(table.stdout)")
        let info = try run(Paths.infrasight, ["plugins", "info", "tracing", "--config", tracingOnly])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "plugins info tracing loaded a disabled plugin")

        let r = try run(Paths.infrasight, ["trace", "--config", tracingOnly, "--duration", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: tracing: received "), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "trace loaded a disabled plugin")
        // A name on trace's command line counts as enabled: loaded then, and it runs.
        let network = try config(dirs: [dir], extraConfig: "  enabled: [network]\n")
        let named = try run(Paths.infrasight, ["trace", "--config", network, "--plugins", "tracing", "--duration", "1"])
        #expect(named.status == 0, "\(named.stderr)")
        #expect(named.stderr.contains("infrasight: tracing: received "), "\(named.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "trace --plugins tracing loaded a disabled plugin")

        // --inspect loads it (after the same checks) to show what it is; it stays disabled.
        let inspected = try list(dirs: [dir], extraConfig: enabled, arguments: ["--inspect"])
        #expect(FileManager.default.fileExists(atPath: marker))
        let shown = try #require(inspected.byPath[path])
        #expect(shown["version"] as? String == "1.2.3")
        #expect(shown["abi"] as? String == "1.2")
        #expect(shown["tables"] as? [String] == ["audit.fixture_events"])
        #expect(shown["status"] as? String == "disabled")
        #expect(shown["enabled"] as? Bool == false)
    }

    @Test func aConfigFileWritableByGroupOrOthersIsRefusedWithOneLine() throws {
        let dir = try makeTempDir()
        let config = "\(dir)/c.yaml"
        try "plugins:\n  enabled: [tracing]\n".write(toFile: config, atomically: true, encoding: .utf8)
        chmod(config, 0o664)
        var r = try run(Paths.infrasight, ["plugins", "list", "--config", config])
        #expect(r.status == 2)
        #expect(r.stderr == "infrasight: config \(config): writable by group or others (mode 0664); run chmod go-w \(config)\n")
        chmod(config, 0o644)
        chmod(dir, 0o757)
        r = try run(Paths.infrasight, ["trace", "--config", config, "--duration", "1"])
        #expect(r.status == 2)
        #expect(r.stderr == "infrasight: config \(config): directory \(dir) is writable by group or others (mode 0757); run chmod go-w \(dir)\n")
        chmod(dir, 0o755)
        r = try run(Paths.infrasight, ["plugins", "list", "--config", config])
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func aChdbLibraryWritableByGroupOrOthersIsRefusedBeforeItLoads() throws {
        let real = try #require(ChdbLibrary.locate(configured: nil), "chdb-core is not installed (scripts/setup.sh)")
        let data = try makeTempDir()
        // A hard link of the real library (same inode, mode 0755) in a group-writable directory.
        let shared = try makeTempDir()
        chmod(shared, 0o775)
        let linked = "\(shared)/_chdb.abi3.so"
        #expect(link(real, linked) == 0, "link: \(String(cString: strerror(errno)))")
        var r = try run(Paths.infrasight, ["query", "--data-dir", data, "SELECT 1"], environment: [ChdbLibrary.environmentVariable: linked])
        #expect(r.status == 1)
        #expect(r.stderr == "infrasight: embedded ClickHouse library \(linked) is refused: directory \(shared) is writable by group or others (mode 0775); run chmod go-w \(shared)\n")
        // A file anyone may rewrite is refused before dlopen looks at it.
        let dir = try makeTempDir()
        let writable = "\(dir)/_chdb.abi3.so"
        try "not even a library\n".write(toFile: writable, atomically: true, encoding: .utf8)
        chmod(writable, 0o666)
        r = try run(Paths.infrasight, ["query", "--data-dir", data, "SELECT 1"], environment: [ChdbLibrary.environmentVariable: writable])
        #expect(r.status == 1)
        #expect(r.stderr == "infrasight: embedded ClickHouse library \(writable) is refused: writable by group or others (mode 0666); run chmod go-w \(writable)\n")
        // A symlink is followed: the library it resolves to is checked and loaded (by its
        // real path, so that it finds its dependencies beside it).
        let links = try makeTempDir()
        symlink(real, "\(links)/_chdb.abi3.so")
        r = try run(Paths.infrasight, ["query", "--data-dir", data, "SELECT 1"], environment: [ChdbLibrary.environmentVariable: "\(links)/_chdb.abi3.so"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "1\n")
    }

    @Test func listJSONHasTheDocumentedShape() throws {
        let dir = try makeTempDir()
        try PluginFixture.build("\(dir)/fixture_shape.so", name: "fixture_shape")
        let l = try list(dirs: [dir], extraConfig: "  enabled: [tracing]\n", arguments: ["--inspect"])
        let good = try #require(l.byPath["\(dir)/fixture_shape.so"])
        #expect(Set(good.keys).isSuperset(of: ["name", "version", "abi", "path", "tables", "enabled", "status", "error"]))
        #expect(good["name"] as? String == "fixture_shape")
        #expect(good["version"] as? String == "1.2.3")
        #expect(good["abi"] as? String == "1.2")
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
        for bad in ["3000", "2", "2097152"] {
            l = try list(dirs: [dir], extraConfig: "  options:\n    tracing:\n      ring_buffer_kb: \(bad)\n")
            tracing = l.byPath.values.first { $0["name"] as? String == "tracing" }
            #expect((tracing?["error"] as? String)?.hasSuffix("plugins.options.tracing.ring_buffer_kb must be a power of two from 4 to 1048576 (KiB), not \(bad)") == true, "\(tracing ?? [:])")
        }
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
        try PluginFixture.build("\(dir)/fixture_verify.so", name: "fixture_verify")
        try PluginFixture.build("\(dir)/fixture_verify_bad.so", name: "fixture_verify_bad", defines: ["MAJOR": "7"])
        let ok = try run(Paths.infrasight, ["plugins", "verify", "\(dir)/fixture_verify.so"])
        #expect(ok.status == 0)
        #expect(ok.stdout.hasPrefix("\(dir)/fixture_verify.so: ok: plugin fixture_verify 1.2.3, ABI 1.2"))
        let bad = try run(Paths.infrasight, ["plugins", "verify", "\(dir)/fixture_verify_bad.so"])
        #expect(bad.status == 1)
        #expect(bad.stdout == "\(dir)/fixture_verify_bad.so: plugin ABI 7.2 is incompatible with this host's ABI 1.2 (major versions differ)\n")
        let real = try run(Paths.infrasight, ["plugins", "verify", Paths.tracingPlugin])
        #expect(real.status == 0, "\(real.stdout)")
        // A second file named like an installed plugin would never load.
        let copy = "\(dir)/libinfrasight-tracing.so"
        try FileManager.default.copyItem(atPath: Paths.tracingPlugin, toPath: copy)
        let second = try run(Paths.infrasight, ["plugins", "verify", copy])
        #expect(second.status == 1)
        #expect(second.stdout.hasPrefix("\(copy): a plugin named tracing is already installed at /"), "\(second.stdout)")
        #expect(second.stdout.hasSuffix("/libinfrasight-tracing.so; of two with one name only the first found loads\n"), "\(second.stdout)")
        // A file whose name promises another plugin is refused.
        try FileManager.default.copyItem(atPath: Paths.tracingPlugin, toPath: "\(dir)/copy.so")
        let renamed = try run(Paths.infrasight, ["plugins", "verify", "\(dir)/copy.so"])
        #expect(renamed.status == 1)
        #expect(renamed.stdout == "\(dir)/copy.so: reports the name tracing but its file name gives copy; rename the file libinfrasight-tracing.so\n")
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
