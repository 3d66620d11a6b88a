import Foundation
import Glibc
import InfraSightTestSupport
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
