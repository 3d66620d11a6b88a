import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// Every row carries the process's and its parent's start time, so (pid, start_time_ns)
/// names one process across pid reuse (docs/process-identity.md). Here a pid is reused
/// for sure: a helper runs `cat A`, waits for it to exit, and starts `cat B` with the
/// same host pid (clone3's set_tid, which asks the kernel for that pid). The stored rows
/// of the two processes share the pid and are told apart by their start times, which
/// are what /proc/<pid>/stat said for each process and for the helper, their parent.
///
/// Why set_tid and not a lowered pid_max: since Linux 6.14 pid_max is per pid namespace
/// (writing it in a new namespace works on 6.18), but it wraps only that namespace's
/// pids; the host pid, which is the rows' `pid`, comes from the initial namespace and
/// does not repeat. set_tid reuses the host pid itself, without racing other forks.
@Suite(.serialized) struct ProcessIdentityTests {
    /// Runs `/bin/cat argv[1]`, then `/bin/cat argv[2]` with the first one's pid, and
    /// prints `helper-pid pid first-starttime second-starttime helper-starttime clk-tck`
    /// (starttimes as /proc/<pid>/stat field 22 has them, read while each child is a
    /// zombie: exited, not yet reaped). Exit 3: the pid was taken in between (retry).
    static let helperSource = """
        #define _GNU_SOURCE
        #include <errno.h>
        #include <fcntl.h>
        #include <linux/sched.h>
        #include <signal.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/syscall.h>
        #include <sys/wait.h>
        #include <time.h>
        #include <unistd.h>

        static unsigned long long starttime(pid_t pid) {
            char path[64], buf[1024];
            snprintf(path, sizeof path, "/proc/%d/stat", pid);
            int fd = open(path, O_RDONLY);
            if (fd < 0) return 0;
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n <= 0) return 0;
            buf[n] = 0;
            char *p = strrchr(buf, ')'); /* comm may hold spaces */
            if (!p) return 0;
            p += 2; /* field 3 */
            for (int field = 3; field < 22; field++) {
                p = strchr(p, ' ');
                if (!p) return 0;
                p++;
            }
            return strtoull(p, 0, 10);
        }

        static pid_t spawn(pid_t want, char *const argv[]) {
            struct clone_args args;
            memset(&args, 0, sizeof args);
            args.exit_signal = SIGCHLD;
            pid_t tid = want;
            if (want) { args.set_tid = (uint64_t)(uintptr_t)&tid; args.set_tid_size = 1; }
            long r = syscall(SYS_clone3, &args, sizeof args);
            if (r == 0) { execv(argv[0], argv); _exit(127); }
            return (pid_t)r;
        }

        /* Waits for `pid` to exit, reads its start time, then reaps it. */
        static unsigned long long finish(pid_t pid) {
            siginfo_t info;
            if (waitid(P_PID, pid, &info, WEXITED | WNOWAIT)) return 0;
            unsigned long long start = starttime(pid);
            waitpid(pid, 0, 0);
            return start;
        }

        int main(int argc, char **argv) {
            if (argc != 3) return 2;
            char *first[] = {"/bin/cat", argv[1], 0};
            char *second[] = {"/bin/cat", argv[2], 0};
            pid_t pid = spawn(0, first);
            if (pid < 0) { perror("clone3"); return 1; }
            unsigned long long s1 = finish(pid);
            /* Two clock ticks apart, so even /proc's tick-grained start times differ. */
            struct timespec pause = {0, 30 * 1000 * 1000};
            nanosleep(&pause, 0);
            pid_t again = spawn(pid, second);
            if (again < 0) { perror("clone3 set_tid"); return errno == EEXIST ? 3 : 1; }
            unsigned long long s2 = finish(again);
            printf("%d %d %llu %llu %llu %ld\\n", getpid(), again, s1, s2, starttime(getpid()), sysconf(_SC_CLK_TCK));
            return 0;
        }
        """

    func query(_ data: String, _ sql: String) throws -> String {
        let r = try run(Paths.infrasight, ["query", "--data-dir", data, sql])
        guard r.status == 0 else { throw TestFailure("query failed (\(r.status)): \(r.stderr)") }
        return r.stdout
    }

    func lines(_ text: String) -> [[String]] {
        text.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    @Test func aReusedPidNamesTwoProcessesToldApartByTheirStartTimes() throws {
        let dir = try makeTempDir(prefix: "identity")
        let helper = "\(dir)/pidreuse"
        try compileC(Self.helperSource, to: helper, flags: ["-O1", "-Wall", "-Werror"])
        let (fileA, fileB) = ("\(dir)/first.txt", "\(dir)/second.txt")
        try "a\n".write(toFile: fileA, atomically: true, encoding: .utf8)
        try "b\n".write(toFile: fileB, atomically: true, encoding: .utf8)
        // tracing filtered in the kernel to the test's programs: the helper's exec (under
        // the test's own comm), its children (pidreuse, then cat). Unfiltered, other suites'
        // floods fill the ring buffer and the exact rows below can be lost (counted).
        let comm = uniqueComm()
        try "plugins:\n  enabled: [tracing, resource]\n  options:\n    tracing:\n      include_comms: [\(comm), pidreuse, cat]\n    resource:\n      include_comms: [pidreuse, cat]\n"
            .write(toFile: "\(dir)/config.yaml", atomically: true, encoding: .utf8)

        let data = try makeTempDir(prefix: "identity-data")
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(dir)/config.yaml", "--data-dir", data])
        try agent.waitForStderr("infrasight: note: started: ")
        var printed: [String] = []
        for _ in 0..<5 {
            let r = try withThreadComm(comm) { try run(helper, [fileA, fileB]) }
            // The children's output (the files' text) comes first; the helper's line last.
            if r.status == 0 { printed = (r.stdout.split(separator: "\n").last ?? "").split(separator: " ").map(String.init); break }
            #expect(r.status == 3, "the helper failed: \(r.stderr)")
        }
        let numbers = printed.compactMap { UInt64($0) }
        try #require(numbers.count == 6, "the helper printed \(printed)")
        let (parent, pid, procFirst, procSecond, procParent, ticksPerSecond) =
            (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5])
        #expect(procSecond > procFirst, "the two processes started at least a tick apart")
        try waitUntil("both processes' opens are stored", timeout: 30) {
            try query(data, "SELECT count() FROM audit.tracing_events WHERE pid = \(pid) AND filename IN ('\(fileA)', '\(fileB)')") == "2\n"
        }
        agent.signal(SIGTERM)
        let r = try agent.wait(timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")

        // The two opens: one pid, two start times, each /proc's for its process (a tick
        // is 1e9 / CLK_TCK ns: /proc divides the same nanoseconds), one parent.
        let tick = 1_000_000_000 / ticksPerSecond
        let opens = lines(try query(data, """
            SELECT filename, start_time_ns, ppid, parent_start_time_ns FROM audit.tracing_events
            WHERE pid = \(pid) AND filename IN ('\(fileA)', '\(fileB)') ORDER BY monotonic_ts_enter_ns
            """))
        try #require(opens.count == 2, "\(opens)")
        #expect(opens.map { $0[0] } == [fileA, fileB])
        let starts = opens.compactMap { UInt64($0[1]) }
        try #require(starts.count == 2)
        #expect(starts[0] != starts[1] && starts[0] > 0)
        #expect(starts.map { $0 / tick } == [procFirst, procSecond], "start_time_ns \(starts) against /proc's ticks \(procFirst), \(procSecond)")
        #expect(opens.map { $0[2] } == ["\(parent)", "\(parent)"])
        let parentStart = UInt64(opens[0][3]) ?? 0
        #expect(opens[1][3] == opens[0][3])
        #expect(parentStart / tick == procParent, "parent_start_time_ns \(parentStart) against /proc's \(procParent) ticks")

        // Every row of the pid falls to one of the two processes by its start time: each
        // has its own exec and opens only its own file.
        let processes = lines(try query(data, """
            SELECT start_time_ns, countIf(event_type = 'execve' AND argv LIKE '%first.txt'), countIf(event_type = 'execve' AND argv LIKE '%second.txt'),
                   countIf(filename = '\(fileA)'), countIf(filename = '\(fileB)'), uniqExact(parent_start_time_ns)
            FROM audit.tracing_events WHERE pid = \(pid) AND ppid = \(parent) GROUP BY start_time_ns ORDER BY start_time_ns
            """))
        #expect(processes == [["\(starts[0])", "1", "0", "1", "0", "1"], ["\(starts[1])", "0", "1", "0", "1", "1"]])

        // The parent's own rows carry, as its start time, what its children carry as
        // their parent's: the children of (parent, start) are exactly the two processes.
        #expect(try query(data, "SELECT DISTINCT start_time_ns FROM audit.tracing_events WHERE pid = \(parent) AND event_type = 'execve' AND filename = '\(helper)'") == "\(parentStart)\n")
        #expect(try query(data, """
            SELECT DISTINCT pid, start_time_ns FROM audit.tracing_events
            WHERE (ppid, parent_start_time_ns) = (\(parent), \(parentStart)) ORDER BY start_time_ns
            """) == "\(pid)\t\(starts[0])\n\(pid)\t\(starts[1])\n")

        // The resource plugin's last row of each process (sent at its exit) names the
        // same processes: rows of two tables join on (pid, start_time_ns).
        #expect(try query(data, """
            SELECT start_time_ns, parent_start_time_ns, isActive FROM audit.resource_events
            WHERE pid = \(pid) AND ppid = \(parent) AND isActive = 0 ORDER BY start_time_ns
            """) == "\(starts[0])\t\(parentStart)\t0\n\(starts[1])\t\(parentStart)\t0\n")
        #expect(try query(data, """
            SELECT t.filename FROM audit.tracing_events AS t
            INNER JOIN audit.resource_events AS r ON t.pid = r.pid AND t.start_time_ns = r.start_time_ns
            WHERE r.pid = \(pid) AND r.ppid = \(parent) AND r.isActive = 0 AND t.filename IN ('\(fileA)', '\(fileB)') ORDER BY r.start_time_ns
            """) == "\(fileA)\n\(fileB)\n")
    }
}
