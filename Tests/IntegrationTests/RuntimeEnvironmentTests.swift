import Foundation
import Glibc
import InfraSightTestSupport
import InfraSightBPF
import Testing

/// How the agent copes with its environment: tracefs missing, a terminal for the status line.
@Suite(.serialized) struct RuntimeEnvironmentTests {
    /// In a private mount namespace without tracefs, the agent mounts it and says so.
    @Test func tracefsIsMountedWhenMissingAndALineSaysSo() throws {
        let r = try run("/usr/bin/unshare", [
            "--mount", "--propagation", "private", "/bin/sh", "-c",
            "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; test ! -d /sys/kernel/tracing/events || exit 9; exec \(Paths.infrasight) trace --plugins tracing --duration 1",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: note: mounted tracefs at /sys/kernel/tracing (it was not mounted)"), "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: tracing: received "))
    }

    /// On a terminal, `run` shows a live status line (events/s, rows stored, drops).
    @Test func runShowsAStatusLineOnATerminal() throws {
        let data = try makeTempDir(prefix: "statusdata")
        let r = try run("/usr/bin/script", ["-qec", "\(Paths.infrasight) run --data-dir \(data) --duration 3", "/dev/null"])
        #expect(r.status == 0, "\(r.stdout)")
        #expect(r.stdout.contains("events/s "), "\(r.stdout)")
        #expect(r.stdout.contains("| rows stored "))
        #expect(r.stdout.contains("| drops "))
    }
}

/// Prometheus metrics and health endpoints of `run`.
@Suite(.serialized) struct MetricsEndpointTests {
    func get(_ url: String) throws -> (code: Int, body: String) {
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", "-w", "\n%{http_code}", url])
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test func runServesMetricsHealthAndReadiness() throws {
        let port = try freeLoopbackPort()
        let data = try makeTempDir(prefix: "metricsdata")
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--data-dir", data, "--metrics-listen", "127.0.0.1:\(port)"])
        try agent.waitForStderr("infrasight: note: started: ")
        #expect(try get("http://127.0.0.1:\(port)/healthz").code == 200)
        #expect(try get("http://127.0.0.1:\(port)/readyz") == (200, "ready\n"))
        _ = try run("/bin/cat", ["/etc/hostname"])
        sleep(2)
        let metrics = try get("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.code == 200)
        for name in ["infrasight_events_received_total", "infrasight_kernel_drops_total", "infrasight_decode_errors_total",
                     "infrasight_queue_drops_total", "infrasight_store_drops_total", "infrasight_rows_stored_total"] {
            #expect(metrics.body.contains("\(name){plugin=\"tracing\"}"), "\(name)")
            #expect(metrics.body.contains("\(name){plugin=\"network\"}"), "\(name)")
        }
        #expect(metrics.body.contains("# TYPE infrasight_rows_stored_total counter"))
        #expect(metrics.body.contains("infrasight_batch_queue_bytes "))
        #expect(try get("http://127.0.0.1:\(port)/nope").code == 404)
        agent.signal(SIGINT)
        #expect(try agent.wait(timeout: 180).status == 0)
    }

    /// With the kernel's run-time statistics on, /metrics shows what each BPF program
    /// costs: runs and seconds per plugin and program, counting the opens we make.
    @Test func runReportsItsProgramsCostWhileStatisticsAreOn() throws {
        let stats = try ProgramStats.enable()
        defer { close(stats) }
        let port = try freeLoopbackPort()
        let data = try makeTempDir(prefix: "programstats")
        let config = data + ".yaml"
        try "plugins:\n  enabled: [tracing]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--config", config, "--data-dir", data, "--metrics-listen", "127.0.0.1:\(port)"])
        try agent.waitForStderr("infrasight: note: started: ")
        let opens = 200
        let (helper, marker, _, _) = try buildOpenLoop()
        let child = try BackgroundProcess(helper, [marker, String(opens)])
        #expect(child.wait().status == 0)
        let exits = "infrasight_bpf_program_runs_total{plugin=\"tracing\",program=\"exit_openat\"}"
        var page = ""
        try waitUntil("exit_openat's run count reaches \(opens)", timeout: 10) {
            page = try get("http://127.0.0.1:\(port)/metrics").body
            return Fleet.value(page, exits) >= opens
        }
        let seconds = page.split(separator: "\n").first { $0.hasPrefix("infrasight_bpf_program_run_seconds_total{plugin=\"tracing\",program=\"exit_openat\"} ") }
        let value = Double(seconds?.split(separator: " ").last ?? "") ?? 0
        #expect(value > 0, "\(seconds ?? "no run-seconds sample")")
        #expect(page.contains("# TYPE infrasight_bpf_program_runs_total counter"))
        agent.signal(SIGINT)
        #expect(try agent.wait(timeout: 180).status == 0)
    }
}
