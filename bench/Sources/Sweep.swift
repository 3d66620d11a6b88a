import Foundation
import Glibc
import InfraSightCore

/// The sustained end-to-end rate: `infrasight server` (embedded ClickHouse) and, per step,
/// a fresh `infrasight agent` tracing opens of a generator thread at a fixed rate for
/// `seconds`. Per step: events generated, rows stored (acknowledged by the server), drops
/// at every stage, the agent's CPU and peak RSS, and the server's RSS (the embedded
/// engine's memory, reported apart from the agent's). After the given rates, the rate
/// keeps doubling until a step loses events or the generator cannot reach its rate.
/// With `rules` the server runs as configured by default (the default ruleset and drift
/// detection evaluate every stored batch); without, detection is off. The server's exit
/// summary says how many rows the rules evaluated and how many they could not.
func sweepBench(rates: [Int], seconds: Double, rules: Bool = true) throws -> String {
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    let work = NSTemporaryDirectory() + "/infrasight-sweep-\(getpid())"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let marker = "\(work)/marker"
    guard FileManager.default.createFile(atPath: marker, contents: Data()) else { throw SweepError("cannot create \(marker)") }
    try """
        plugins:
          enabled: [tracing]
          options:
            tracing:
              include_comms: [sweepgen]
        """.write(toFile: "\(work)/agent.yaml", atomically: true, encoding: .utf8)

    try "rules:\n  default: false\n  dirs: []\n  drift_learn_seconds: 0\n".write(toFile: "\(work)/server.yaml", atomically: true, encoding: .utf8)
    let server = try Child("\(bin)/infrasight", ["server", "--listen", "127.0.0.1:0", "--data-dir", "\(work)/data"] + (rules ? [] : ["--config", "\(work)/server.yaml"]),
                           log: "\(work)/server.log")
    defer { server.stop() }
    let listening = try server.waitFor("listening on 127.0.0.1:")
    guard let port = Int(listening.components(separatedBy: "listening on 127.0.0.1:")[1].prefix(while: \.isNumber)) else {
        throw SweepError("no port in: \(listening)")
    }

    var steps: [String] = []
    var maxLossless = 0
    var queue = rates
    var index = 0
    while index < queue.count {
        let rate = queue[index]
        index += 1
        let agent = try Child("\(bin)/infrasight", ["agent", "--server", "127.0.0.1:\(port)", "--config", "\(work)/agent.yaml",
                                                    "--spool-dir", "\(work)/spool"], log: "\(work)/agent-\(rate).log")
        _ = try agent.waitFor("connected to server")
        let cpu0 = Child.cpuSeconds(agent.pid)
        let started = Date()
        let generated = generateOpens(marker, rate: rate, seconds: seconds)
        let generatedSeconds = Date().timeIntervalSince(started)
        // Let the last batch seal (1 s) and reach the server before measuring.
        usleep(1_500_000)
        let cpuSeconds = Child.cpuSeconds(agent.pid) - cpu0
        let window = Date().timeIntervalSince(started)
        let agentPeakMB = Child.statusKB(agent.pid, "VmHWM:") / 1024
        let serverMB = Child.statusKB(server.pid, "VmRSS:") / 1024
        let summary = agent.stop()
        let n = SummaryLine.parse(summary, plugin: "tracing") ?? [:]
        let stored = n["rows delivered"] ?? 0
        let drops = (n["kernel drops"] ?? 0) + (n["queue drops"] ?? 0) + (n["spool drops"] ?? 0) + (n["decode errors"] ?? 0)
        let achieved = Double(generated) / generatedSeconds
        let lossless = drops == 0 && stored == generated
        if lossless { maxLossless = max(maxLossless, Int(achieved)) }
        steps.append("""
            {"target_per_second":\(rate),"generated":\(generated),"generated_per_second":\(Int(achieved)),\
            "received":\(n["received"] ?? 0),"rows_stored":\(stored),"kernel_drops":\(n["kernel drops"] ?? 0),\
            "decode_errors":\(n["decode errors"] ?? 0),"queue_drops":\(n["queue drops"] ?? 0),"spool_drops":\(n["spool drops"] ?? 0),\
            "lossless":\(lossless),"agent_cpu_percent":\(String(format: "%.1f", cpuSeconds / window * 100)),\
            "agent_cpu_seconds_per_million":\(String(format: "%.2f", cpuSeconds / Double(max(generated, 1)) * 1e6)),\
            "agent_peak_rss_mb":\(agentPeakMB),"server_rss_mb":\(serverMB)}
            """)
        // Past the given rates: double while lossless and the generator keeps up.
        if index == queue.count && lossless && achieved >= 0.9 * Double(rate) && rate < 3_200_000 {
            queue.append(rate * 2)
        }
    }
    // The server's summary: `rules: N rules, rows evaluated N, alerts N, batches not evaluated N (rows N), ...`.
    let summary = server.stop().split(separator: "\n").first { $0.hasPrefix("infrasight: rules: ") || $0.hasPrefix("rules: ") }.map(String.init) ?? ""
    func number(after label: String) -> Int {
        guard let r = summary.range(of: label + " ") else { return 0 }
        return Int(summary[r.upperBound...].prefix(while: \.isNumber)) ?? 0
    }
    return """
        {"bench":"sweep_agent_server_embedded","seconds_per_step":\(seconds),"rules":"\(rules ? "default" : "off")",\
        "rules_in_force":\(number(after: "rules:")),"rules_rows_evaluated":\(number(after: "rows evaluated")),\
        "rules_rows_not_evaluated":\(number(after: "(rows")),"rules_alerts":\(number(after: "alerts")),\
        "steps":[\n  \(steps.joined(separator: ",\n  "))\n],\
        "max_lossless_events_per_second":\(maxLossless),"target_events_per_second":100000,"target_met":\(maxLossless >= 100_000),\
        "target_agent_rss_mb":100}
        """
}

func sweepRates() -> [Int] {
    let args = Array(CommandLine.arguments.dropFirst())
    if let i = args.firstIndex(of: "--rates"), i + 1 < args.count {
        return args[i + 1].split(separator: ",").compactMap { Int($0) }
    }
    return [10_000, 25_000, 50_000, 100_000, 200_000]
}

/// Opens (and closes) `path` at `rate` per second for `seconds` from a thread whose comm
/// is `sweepgen`; returns how many opens it made (fewer than asked when it cannot keep up).
func generateOpens(_ path: String, rate: Int, seconds: Double) -> Int {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var count = 0
    let thread = Thread {
        Thread.current.name = "sweepgen" // the comm the agent filters on
        var start = timespec(), now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        let total = Int(Double(rate) * seconds)
        while count < total {
            clock_gettime(CLOCK_MONOTONIC, &now)
            let elapsed = Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9
            if elapsed >= seconds { break }
            let due = min(total, Int(elapsed * Double(rate)) + 1)
            if count >= due {
                usleep(200)
                continue
            }
            while count < due {
                let fd = open(path, O_RDONLY)
                if fd >= 0 { close(fd) }
                count += 1
            }
        }
        done.signal()
    }
    thread.start()
    done.wait()
    return count
}

/// The machine the figures come from.
func machineJSON() -> String {
    let cpu = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").split(separator: "\n")
        .first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) } ?? "?"
    var u = utsname()
    uname(&u)
    let kernel = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    let memKB = Child.statusKB(0, "MemTotal:", file: "/proc/meminfo")
    return """
        {"cpu":"\(cpu)","cores":\(sysconf(Int32(_SC_NPROCESSORS_ONLN))),"memory_mb":\(memKB / 1024),"kernel":"\(kernel)"}
        """
}

struct SweepError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A child process (posix_spawn) with stdout and stderr in `log`.
final class Child {
    let pid: pid_t
    let log: String
    private var exited = false

    init(_ path: String, _ args: [String], log: String) throws {
        self.log = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, environ)
        guard rc == 0 else { throw SweepError("cannot start \(path): \(String(cString: strerror(rc)))") }
        pid = child
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Waits (60 s at most) until the output holds `text`; returns the output.
    func waitFor(_ text: String) throws -> String {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let out = output
            if out.contains(text) { return out }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exited = true
                throw SweepError("\(log): exited before '\(text)': \(out)")
            }
            usleep(50_000)
        }
        throw SweepError("\(log): no '\(text)' within 60 s: \(output)")
    }

    /// SIGINT, wait, and the output.
    @discardableResult
    func stop() -> String {
        if !exited {
            kill(pid, SIGINT)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            exited = true
        }
        return output
    }

    /// Waits for the exit (no signal).
    func waitExit() {
        guard !exited else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        exited = true
    }

    /// User + system CPU seconds of a process.
    static func cpuSeconds(_ pid: pid_t) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the comm: state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A "Key: N kB" line of /proc/PID/status (or `file`), in kB.
    static func statusKB(_ pid: pid_t, _ key: String, file: String? = nil) -> Int {
        let text = (try? String(contentsOfFile: file ?? "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
}
