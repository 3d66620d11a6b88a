import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// Feature probes before load: a plugin that needs what this kernel lacks is refused by
/// name, the others run, and `plugins.required`, /readyz, the metrics, `plugins list` and
/// `doctor` all say so. The kernel matrix (scripts/kernel-matrix.sh) checks the same on
/// real older kernels; here the missing feature is a helper no kernel has.
@Suite(.serialized) struct KernelFeatureTests {
    /// A BPF program calling helper #9999, which no kernel has: the kernel itself answers
    /// that it lacks it, as 5.10 answers for task-local storage.
    static let futureBPF = """
        #define SEC(name) __attribute__((section(name), used))
        char LICENSE[] SEC("license") = "GPL";
        static long (*bpf_from_the_future)(void) = (void *) 9999;
        SEC("tracepoint/syscalls/sys_enter_getppid")
        int future(void *ctx) { return bpf_from_the_future(); }
        """

    static var release: String { (try? run("/bin/uname", ["-r"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "?" }

    static func jsonObject(_ text: String) throws -> [String: Any] {
        guard let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw TestFailure("not a JSON object: \(text)") }
        return o
    }

    func get(_ url: String) throws -> (code: Int, body: String) { try MetricsEndpointTests().get(url) }

    @Test func aPluginNeedingWhatThisKernelLacksIsRefusedByNameAndTheOthersRun() throws {
        let dir = try makeTempDir()
        _ = try KernelErrorTests.buildPlugin(in: dir, name: "future", bpf: Self.futureBPF)
        let reason = "needs BPF helper #9999 (not in any release InfraSight knows); this kernel is \(Self.release)"

        // Alone: nothing can start; one line naming the feature, exit 1 (libbpf's
        // "failed to load object" is not what a user reads).
        let alone = try run(Paths.infrasight, ["trace", "--plugin-dir", dir, "--plugins", "future", "--duration", "1"])
        #expect(alone.status == 1)
        #expect(alone.stderr == "infrasight: plugin future: \(reason)\n", "\(alone.stderr)")

        // `run` beside tracing: tracing runs; the log, /readyz and the metrics name future.
        let config = "\(dir)/infrasight.yaml"
        try "plugins:\n  dirs: [\(dir)]\n  enabled: [future, tracing]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let port = try freeLoopbackPort()
        let data = try makeTempDir(prefix: "featuredata")
        let both = try BackgroundProcess(Paths.infrasight, ["run", "--config", config, "--data-dir", data, "--metrics-listen", "127.0.0.1:\(port)"])
        try both.waitForStderr("infrasight: note: started: ")
        #expect(try get("http://127.0.0.1:\(port)/readyz") == (200, "ready\nplugin future not running: \(reason)\n"))
        let metrics = try get("http://127.0.0.1:\(port)/metrics").body
        #expect(metrics.contains("infrasight_plugin_running{plugin=\"future\"} 0"), "\(metrics)")
        #expect(metrics.contains("infrasight_plugin_running{plugin=\"tracing\"} 1"))
        #expect(metrics.contains("infrasight_plugins_not_running{reason=\"kernel_feature\"} 1"))
        #expect(metrics.contains("infrasight_plugins_not_running{reason=\"verifier\"} 0"))
        both.signal(SIGINT)
        let r = try both.wait(timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: error: plugin future: \(reason)\n"), "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: note: started: tracing → "), "\(r.stderr)")

        // Required: the same failure stops the process, naming the setting.
        try "plugins:\n  dirs: [\(dir)]\n  enabled: [future, tracing]\n  required: [future]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let required = try run(Paths.infrasight, ["trace", "--config", config, "--duration", "1"])
        #expect(required.status == 1)
        #expect(required.stderr == "infrasight: required plugin future (plugins.required) did not start: \(reason)\n", "\(required.stderr)")
        // Required tracing, which starts: future is reported and the trace runs.
        try "plugins:\n  dirs: [\(dir)]\n  enabled: [future, tracing]\n  required: [tracing]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let fine = try run(Paths.infrasight, ["trace", "--config", config, "--duration", "1"])
        #expect(fine.status == 0, "\(fine.stderr)")
        #expect(fine.stderr.contains("infrasight: error: plugin future: \(reason)\n"))

        // `plugins list` says it without loading anything into the kernel.
        let list = try run(Paths.infrasight, ["plugins", "list", "--plugin-dir", dir, "--json"])
        let entries = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(entries.first { $0["name"] as? String == "future" }?["kernel"] as? String == reason, "\(list.stdout)")
        #expect(entries.first { $0["name"] as? String == "tracing" }?["kernel"] as? String == "ok")

        // doctor: exit 1, future refused with the feature, tracing ok.
        let doctor = try run(Paths.infrasight, ["doctor", "--plugin-dir", dir, "--plugins", "future,tracing", "--json"])
        #expect(doctor.status == 1, "\(doctor.stderr)")
        let report = try Self.jsonObject(doctor.stdout)
        let plugins = report["plugins"] as? [[String: Any]] ?? []
        #expect(plugins.map { $0["name"] as? String } == ["future", "tracing"])
        let future = plugins.first { $0["name"] as? String == "future" }
        #expect(future?["status"] as? String == "refused")
        #expect(future?["detail"] as? String == reason)
        let missing = future?["missing"] as? [[String: String]]
        #expect(missing == [["feature": "BPF helper #9999", "minimum_kernel": "?"]])
        #expect(plugins.first { $0["name"] as? String == "tracing" }?["status"] as? String == "ok")
        let checks = report["checks"] as? [[String: String]] ?? []
        #expect(checks.contains { $0["name"] == "bpf feature" && $0["status"] == "fail" && $0["detail"] == "BPF helper #9999 (not in any release InfraSight knows): missing on \(Self.release)" }, "\(checks)")
        #expect(report["passed"] as? Bool == false)
    }

    /// A helper call inside a subprogram is not in the instructions read before load: the
    /// verifier's refusal of it is turned into the same named refusal.
    @Test func aMissingHelperInASubprogramIsNamedToo() throws {
        let dir = try makeTempDir()
        _ = try KernelErrorTests.buildPlugin(in: dir, name: "deep", bpf: """
            #define SEC(name) __attribute__((section(name), used))
            char LICENSE[] SEC("license") = "GPL";
            static long (*bpf_from_the_future)(void) = (void *) 9999;
            static __attribute__((noinline)) int inner(void) { return bpf_from_the_future(); }
            SEC("tracepoint/syscalls/sys_enter_getppid")
            int deep(void *ctx) { return inner(); }
            """)
        let r = try run(Paths.infrasight, ["trace", "--plugin-dir", dir, "--plugins", "deep", "--duration", "1"])
        #expect(r.status == 1)
        #expect(r.stderr == "infrasight: plugin deep: needs BPF helper #9999 (not in any release InfraSight knows); this kernel is \(Self.release)\n", "\(r.stderr)")
    }

    /// A call whose immediate is no helper id at all (negative) is the verifier's to refuse;
    /// it crashes nothing, and the other plugins run.
    @Test func aNegativeHelperIdIsTheVerifiersToRefuse() throws {
        let dir = try makeTempDir()
        _ = try KernelErrorTests.buildPlugin(in: dir, name: "neg", bpf: """
            #define SEC(name) __attribute__((section(name), used))
            char LICENSE[] SEC("license") = "GPL";
            static long (*not_a_helper)(void) = (void *) -5;
            SEC("tracepoint/syscalls/sys_enter_getppid")
            int neg(void *ctx) { return not_a_helper(); }
            """)
        let list = try run(Paths.infrasight, ["plugins", "list", "--plugin-dir", dir, "--json"])
        #expect(list.status == 0, "\(list.stderr)")
        let r = try run(Paths.infrasight, ["trace", "--plugin-dir", dir, "--plugins", "neg,tracing", "--duration", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: error: plugin neg: the kernel verifier rejected BPF program neg: "), "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: note: started: tracing\n"))
    }

    /// Root without CAP_PERFMON and CAP_SYS_ADMIN (a container's root, often): the kernel
    /// cannot be asked, so nothing is called missing; the load says permission denied.
    @Test func rootWithoutTheCapabilitiesIsToldSoNotToUpgradeItsKernel() throws {
        let limited = ["--bounding-set=-perfmon,-sys_admin", "--inh-caps=-perfmon,-sys_admin", "--"]
        let trace = try run("/usr/bin/setpriv", limited + [Paths.infrasight, "trace", "--plugins", "tracing", "--duration", "1"])
        #expect(trace.status == 1)
        #expect(!trace.stderr.contains("needs "), "\(trace.stderr)")
        #expect(trace.stderr.contains("permission denied; run as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"), "\(trace.stderr)")
        let doctor = try run("/usr/bin/setpriv", limited + [Paths.infrasight, "doctor", "--json"])
        #expect(doctor.status == 1)
        let report = try Self.jsonObject(doctor.stdout)
        let checks = report["checks"] as? [[String: String]] ?? []
        #expect(checks.first { $0["name"] == "privileges" }?["detail"] == "root without CAP_PERFMON, CAP_SYS_ADMIN: loading BPF programs needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN", "\(checks)")
        #expect(!checks.contains { $0["name"] == "bpf feature" && $0["status"] == "fail" }, "\(checks)")
        let plugins = report["plugins"] as? [[String: Any]] ?? []
        #expect(plugins.allSatisfy { $0["status"] as? String == "error" }, "\(plugins)")
    }

    /// A kernel without syscall tracepoints (CONFIG_FTRACE_SYSCALLS off; simulated by hiding
    /// them in a private mount namespace): the warning says the calls are not recorded,
    /// never that none is missed.
    @Test func withoutSyscallTracepointsTheWarningSaysCallsAreNotRecorded() throws {
        let r = try run("/usr/bin/unshare", [
            "--mount", "--propagation", "private", "/bin/sh", "-c",
            "mount -t tmpfs none /sys/kernel/tracing/events/syscalls && exec \(Paths.infrasight) trace --plugins resource --duration 1",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: warning: plugin resource: tracepoint syscalls/sys_exit_write is not on this kernel, which has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS is off): write calls are not recorded"), "\(r.stderr)")
        #expect(!r.stderr.contains("so no such call is missed"))
    }

    @Test func requiredMustBeEnabled() throws {
        let dir = try makeTempDir()
        let config = "\(dir)/infrasight.yaml"
        try "plugins:\n  enabled: [tracing]\n  required: [mmap]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try run(Paths.infrasight, ["trace", "--config", config, "--duration", "1"])
        #expect(r.status == 2)
        #expect(r.stderr == "infrasight: config \(config): plugins.required names mmap, which plugins.enabled does not enable\n", "\(r.stderr)")
    }

    /// On this host every first-party plugin loads, and each check has its line.
    @Test func doctorPassesOnThisHostWithALinePerCheck() throws {
        let r = try run(Paths.infrasight, ["doctor", "--json"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        let report = try Self.jsonObject(r.stdout)
        #expect(report["kernel"] as? String == Self.release)
        #expect(report["passed"] as? Bool == true)
        let checks = report["checks"] as? [[String: String]] ?? []
        let names = Set(checks.compactMap { $0["name"] })
        for name in ["kernel", "privileges", "btf", "bpf feature", "tracefs", "cgroup2", "bpf_stats", "container runtimes", "store", "cgroup names"] {
            #expect(names.contains(name), "\(name) missing from \(names)")
        }
        #expect(!checks.contains { $0["status"] == "fail" }, "\(checks)")
        let features = checks.filter { $0["name"] == "bpf feature" }.compactMap { $0["detail"] }
        for f in ["task-local storage in tracing programs (Linux 5.13+)", "the BPF ring buffer (Linux 5.8+)", "tracepoint sched_switch in the kernel's BTF (Linux 5.5+)"] {
            #expect(features.contains(f), "\(features)")
        }
        // The youngest feature first: what an older kernel lacks leads.
        #expect(features.first == "task-local storage in tracing programs (Linux 5.13+)")
        let plugins = report["plugins"] as? [[String: Any]] ?? []
        #expect(plugins.compactMap { $0["name"] as? String }.sorted() == ["mmap", "mount", "network", "ptrace", "resource", "tracing"])
        #expect(plugins.allSatisfy { $0["status"] as? String == "ok" }, "\(plugins)")

        // The text form: a line per check and plugin, led by its status.
        let text = try run(Paths.infrasight, ["doctor"])
        #expect(text.status == 0)
        let lines = text.stdout.split(separator: "\n")
        #expect(lines.count == checks.count + plugins.count + 1)
        let statuses = ["ok ", "warn ", "fail ", "refused ", "error "]
        #expect(lines.dropLast().allSatisfy { line in statuses.contains { line.hasPrefix($0) } }, "\(text.stdout)")
        #expect(lines.contains("ok      plugin tracing: loads (\(try programCount("tracing")) programs)"), "\(text.stdout)")
    }

    /// What `plugins info --json` lists as the plugin's programs.
    func programCount(_ plugin: String) throws -> Int {
        let r = try run(Paths.infrasight, ["plugins", "info", plugin, "--json"])
        let info = try Self.jsonObject(r.stdout)
        return (info["programs"] as? [Any])?.count ?? -1
    }

    /// As `nobody`, doctor says what is wrong and exits 1.
    @Test func doctorWithoutPrivilegesFailsAndSaysWhy() throws {
        let r = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Paths.infrasight, "doctor", "--json"])
        #expect(r.status == 1, "\(r.stderr)")
        let report = try Self.jsonObject(r.stdout)
        let checks = report["checks"] as? [[String: String]] ?? []
        #expect(checks.first { $0["name"] == "privileges" } == ["name": "privileges", "status": "fail", "detail": "not root (uid 65534) without CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN: loading BPF programs needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN"])
        // The kernel cannot be asked without privileges: unknown, never "missing".
        #expect(checks.filter { $0["name"] == "bpf feature" }.allSatisfy { $0["status"] != "fail" }, "\(checks)")
        let plugins = report["plugins"] as? [[String: Any]] ?? []
        #expect(plugins.count == 6)
        #expect(plugins.allSatisfy { ($0["status"] as? String) == "error" && (($0["detail"] as? String) ?? "").contains("permission denied") }, "\(plugins)")
    }
}
