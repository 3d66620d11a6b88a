import ArgumentParser
import Foundation
import Glibc
import InfraSightBPF
import InfraSightContainers
import InfraSightCore
import InfraSightPipeline
import InfraSightSDK
import InfraSightStorage
import Logging

/// `infrasight doctor`: whether this host can run InfraSight, one line per check, before
/// anything is traced (as `bpftool feature probe` or `falco --support` do).
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check that this host can run InfraSight: kernel, BTF, the BPF features the plugins need, tracefs, cgroup2, bpf_stats, container runtimes, the store, and each enabled plugin's verdict.",
        discussion: """
            Each enabled plugin is loaded into the kernel as `run` would load it (its features \
            asked for first, then the verifier) and unloaded again; nothing is attached or \
            traced. tracefs is mounted when it is missing, as `run` would. Exit status: 0 when \
            every check passes and every plugin can run here, 1 otherwise (warnings do not \
            count), 2 for a bad config file.
            """)

    @OptionGroup var source: PluginSourceOptions
    @Option(help: ArgumentHelp("Plugins to check, comma-separated (default: the enabled ones).", valueName: "a,b"))
    var plugins: String?
    @Flag(help: "Print JSON: {kernel, checks: [{name, status, detail}], plugins: [{name, status, detail, missing: [{feature, minimum_kernel}]}]}.")
    var json = false

    func run() throws {
        let config = try source.loadConfig()
        let report = Doctor(config: config).examine(catalog: source.catalog(selecting(config)), names: PluginSelection.names(plugins))
        print(json ? report.json.text : report.text, terminator: json ? "\n" : "")
        if !report.passed { throw ExitCode(1) }
    }

    private func selecting(_ config: InfraSightConfig) -> InfraSightConfig {
        var c = config
        if let names = PluginSelection.names(plugins) { c.enabledPlugins = names }
        return c
    }
}

/// The checks `doctor` runs, in order; each is one line of its report.
struct Doctor {
    enum Status: String { case ok, warn, fail }
    enum PluginStatus: String { case ok, refused, error }

    struct Check {
        let name: String
        let status: Status
        let detail: String
    }

    struct PluginVerdict {
        let name: String
        let status: PluginStatus
        let detail: String
        let missing: [KernelFeature]
    }

    struct Report {
        let kernel: String
        var checks: [Check] = []
        var plugins: [PluginVerdict] = []

        var passed: Bool { !checks.contains { $0.status == .fail } && !plugins.contains { $0.status != .ok } }

        var text: String {
            var out = ""
            for c in checks { out += "\(c.status.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0)) \(c.name): \(c.detail)\n" }
            for p in plugins { out += "\(p.status.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0)) plugin \(p.name): \(p.detail)\n" }
            out += passed ? "this host can run every plugin checked\n" : "this host cannot run everything checked (see the lines above)\n"
            return out
        }

        var json: JSON {
            .object([
                ("kernel", .string(kernel)),
                ("passed", .bool(passed)),
                ("checks", .array(checks.map { .object([("name", .string($0.name)), ("status", .string($0.status.rawValue)), ("detail", .string($0.detail))]) })),
                ("plugins", .array(plugins.map { p in
                    .object([
                        ("name", .string(p.name)), ("status", .string(p.status.rawValue)), ("detail", .string(p.detail)),
                        ("missing", .array(p.missing.map { .object([("feature", .string($0.name)), ("minimum_kernel", .string($0.minimumKernel))]) })),
                    ])
                })),
            ])
        }
    }

    let config: InfraSightConfig
    /// Doctor's own log: plugins' lines and warnings are collected into the report, not printed.
    let logger: Logger = {
        var l = Logger(label: "infrasight.doctor") { _ in SwiftLogNoOpLogHandler() }
        l.logLevel = .critical
        return l
    }()

    func examine(catalog: PluginCatalog, names: [String]?) -> Report {
        var report = Report(kernel: KernelProbe.release)
        report.checks.append(Check(name: "kernel", status: .ok, detail: "Linux \(report.kernel) \(KernelProbe.machine)"))
        let privileges = self.privileges()
        let root = privileges.status == .ok
        report.checks.append(privileges)
        let btf = "/sys/kernel/btf/vmlinux"
        report.checks.append(FileManager.default.fileExists(atPath: btf)
            ? Check(name: "btf", status: .ok, detail: btf)
            : Check(name: "btf", status: .fail, detail: "\(btf) is missing: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.4+)"))
        report.checks.append(tracefs())
        report.checks.append(cgroup2())
        report.checks.append(bpfStats())
        report.checks.append(runtimes())
        report.checks.append(store())

        // The plugins: their files' checks, then each one's features and load.
        let loaded: [(name: String, plugin: LoadedPlugin?, error: String?)]
        do {
            let active = try catalog.active(names: names)
            var list: [(String, LoadedPlugin?, String?)] = active.map { ($0.name, $0, nil) }
            let wanted = names ?? config.enabledPlugins
            // A refused file is reported when it was wanted and no other file of its name runs.
            for e in catalog.entries where e.status == .error && (wanted?.contains(e.name ?? "") ?? true) && !active.contains(where: { $0.name == e.name }) {
                list.append((e.name ?? e.path, nil, "\(e.path): \(e.error ?? "refused")"))
            }
            loaded = list
        } catch {
            loaded = [("(plugins)", nil, error.description)]
        }
        // Every plugin's requirements, by the feature they stand for, in the order first met.
        var requirements: [KernelFeature: [KernelRequirement]] = [:]
        var order: [KernelFeature] = []
        for (name, plugin, error) in loaded {
            guard let plugin else {
                report.plugins.append(PluginVerdict(name: name, status: .error, detail: error ?? "refused", missing: []))
                continue
            }
            let verdict = self.verdict(plugin) { requirement in
                let f = requirement.feature
                if requirements[f] == nil { order.append(f) }
                requirements[f, default: []].append(requirement)
            }
            report.plugins.append(verdict)
        }
        if loaded.isEmpty {
            report.plugins.append(PluginVerdict(name: "(none)", status: .error, detail: "no plugin enabled; searched: \(catalog.searchedDirs.joined(separator: ", "))", missing: []))
        }
        // Each BPF feature the plugins need, the youngest first (what an older kernel lacks).
        order.sort { $1.minimumVersion.lexicographicallyPrecedes($0.minimumVersion) }
        let featureChecks = order.map { f -> Check in
            // Missing when the kernel lacks any of them; unknown when it could not be asked.
            let answers = requirements[f]!.map(KernelProbe.has)
            if answers.contains(false) { return Check(name: "bpf feature", status: .fail, detail: "\(f.description): missing on \(report.kernel)") }
            if answers.contains(nil) { return Check(name: "bpf feature", status: .warn, detail: "\(f.description): cannot ask the kernel\(root ? "" : " (not root)")") }
            return Check(name: "bpf feature", status: .ok, detail: f.description)
        }
        report.checks.insert(contentsOf: featureChecks, at: 3)
        report.checks.append(cgroupNames())
        return report
    }

    /// Loads `plugin` as `run` would (without attaching), reporting each requirement to `requirement`.
    func verdict(_ plugin: LoadedPlugin, requirement: (KernelRequirement) -> Void) -> PluginVerdict {
        var notes: [String] = []
        do {
            let options = try PluginOptions.resolve(config: config, plugin: plugin)
            let instance = try plugin.createInstance(options: options, logger: logger)
            let object = try ProbeRuntime.load(plugin, instance: instance, options: options, logger: logger, prepared: { object in
                object.kernelRequirements.forEach(requirement)
                notes += object.skipped.map { SkippedTracepoint.explain($0.target) }
            })
            let programs = object?.programs.count ?? 0
            let detail = ["loads (\(programs) program\(programs == 1 ? "" : "s")\(object == nil ? ", no BPF object" : ""))"] + notes
            return PluginVerdict(name: plugin.name, status: .ok, detail: detail.joined(separator: "; "), missing: [])
        } catch let error as BPFError {
            if case .kernelLacks(let missing, _) = error {
                return PluginVerdict(name: plugin.name, status: .refused, detail: oneLogLine(error.description, limit: 1024), missing: missing)
            }
            return PluginVerdict(name: plugin.name, status: .error, detail: oneLogLine(error.description, limit: 1024), missing: [])
        } catch {
            // A plugin's own error text: one line, as in the log.
            return PluginVerdict(name: plugin.name, status: .error, detail: oneLogLine("\(error)", limit: 1024), missing: [])
        }
    }

    /// Whether this process may load tracing programs: CAP_SYS_ADMIN, or CAP_BPF with
    /// CAP_PERFMON (5.8+), in its effective set; uid 0 alone is not enough (a container's
    /// root often lacks them).
    func privileges() -> Check {
        let who = geteuid() == 0 ? "root" : "not root (uid \(geteuid()))"
        let caps = Self.effectiveCapabilities() ?? 0
        func has(_ bit: UInt64) -> Bool { caps & (1 << bit) != 0 }
        let (sysAdmin, perfmon, bpf): (UInt64, UInt64, UInt64) = (21, 38, 39)
        if has(sysAdmin) { return Check(name: "privileges", status: .ok, detail: geteuid() == 0 ? "root" : "\(who) with CAP_SYS_ADMIN") }
        if has(bpf) && has(perfmon) {
            return Check(name: "privileges", status: .ok, detail: "\(who) with CAP_BPF and CAP_PERFMON (mounting tracefs, when it is missing, needs CAP_SYS_ADMIN)")
        }
        let lacking = [(bpf, "CAP_BPF"), (perfmon, "CAP_PERFMON"), (sysAdmin, "CAP_SYS_ADMIN")].filter { !has($0.0) }.map(\.1)
        return Check(name: "privileges", status: .fail, detail: "\(who) without \(lacking.joined(separator: ", ")): loading BPF programs needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN")
    }

    /// CapEff of /proc/self/status.
    static func effectiveCapabilities() -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") })
        else { return nil }
        return UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
    }

    func tracefs() -> Check {
        do {
            let mounted = try Tracefs.ensureMounted()
            return Check(name: "tracefs", status: .ok, detail: Tracefs.path + (mounted ? " (it was not mounted: mounted now, as run would)" : ""))
        } catch {
            return Check(name: "tracefs", status: .fail, detail: error.description)
        }
    }

    func cgroup2() -> Check {
        guard let mount = CgroupResolver.cgroup2Mount(hostRoot: config.hostRoot) else {
            return Check(name: "cgroup2", status: .warn, detail: "no cgroup2 mount under \(config.hostRoot): cgroup_name and container_id stay empty")
        }
        return Check(name: "cgroup2", status: .ok, detail: mount)
    }

    func bpfStats() -> Check {
        let path = "/proc/sys/kernel/bpf_stats_enabled"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return Check(name: "bpf_stats", status: .warn, detail: "\(path) is missing (Linux 5.8+): per-program run time cannot be counted")
        }
        let on = text.trimmingCharacters(in: .whitespacesAndNewlines) != "0"
        return Check(name: "bpf_stats", status: .ok, detail: on ? "on: per-program run time is counted (about 60 ns per run)" : "off: per-program run time is not counted (sysctl kernel.bpf_stats_enabled=1 turns it on)")
    }

    func runtimes() -> Check {
        let docker = DockerEngineSource.find(hostRoot: config.hostRoot, configured: config.dockerSocket)
        let containerd = ContainerdSource.find(hostRoot: config.hostRoot, configured: config.containerdSocket)
        let found = [docker?.description, containerd?.description].compactMap { $0 }
        if found.isEmpty {
            return Check(name: "container runtimes", status: .warn, detail: "no runtime socket (docker.sock, podman.sock, containerd.sock) under \(config.hostRoot): container_image and labels stay empty")
        }
        return Check(name: "container runtimes", status: .ok, detail: found.joined(separator: ", "))
    }

    /// Where rows would go: the agent's servers, a ClickHouse server, or embedded ClickHouse.
    func store() -> Check {
        if let servers = config.agent.server {
            var down: [String] = []
            let list = servers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for s in list {
                guard let hp = HostPort(s) else { down.append("\(s) (not HOST:PORT)"); continue }
                if !TCPProbe.accepts(host: hp.host, port: hp.port, timeout: 3) { down.append(s) }
            }
            if down.isEmpty { return Check(name: "store", status: .ok, detail: "agent: server\(list.count == 1 ? "" : "s") \(list.joined(separator: ", ")) accept connections") }
            return Check(name: "store", status: .fail, detail: "agent: no connection to \(down.joined(separator: ", ")) within 3 s")
        }
        if let url = config.storage.clickHouseURL {
            do {
                let store = try HTTPStore(url: url, timeout: 5)
                return Check(name: "store", status: .ok, detail: store.summary)
            } catch {
                return Check(name: "store", status: .fail, detail: "ClickHouse: \(error)")
            }
        }
        guard let library = ChdbLibrary.locate(configured: config.storage.chdbLibrary), FileManager.default.fileExists(atPath: library) else {
            return Check(name: "store", status: .fail, detail: "embedded ClickHouse: no chdb library (scripts/setup.sh installs it; or storage.chdb_library)")
        }
        let dataDir = config.storage.dataDir ?? StorageConfig.defaultDataDir
        return Check(name: "store", status: .ok, detail: "embedded ClickHouse (\(library)), data in \(dataDir)")
    }

    /// The host's own BPF object, which names cgroups removed before their rows are read.
    func cgroupNames() -> Check {
        do {
            let object = try EmbeddedBPFObject.cgroup_names.bytes.withUnsafeBytes { try BPFObject(bytes: $0, name: "cgroup_names") }
            try object.load()
            return Check(name: "cgroup names", status: .ok, detail: "loads")
        } catch {
            return Check(name: "cgroup names", status: .warn, detail: "\(error): cgroups removed before their rows are read stay unnamed")
        }
    }
}
