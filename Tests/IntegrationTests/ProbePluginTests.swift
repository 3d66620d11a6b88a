import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The ptrace, mmap and mount plugins on the real kernel, with exact expectations from C
/// helpers that make known calls and print what they got back.
@Suite(.serialized) struct ProbePluginTests {
    /// Runs `workload` while `infrasight trace --plugins plugins` runs; returns the rows.
    /// `comms`: every plugin of `plugins` filtered in the kernel to these command names
    /// (see `commFilterConfig`; InflightJoinTests' 8,600 ptrace calls are such a flood).
    static func trace(_ plugins: String, comms: [String], _ workload: () throws -> Void) throws -> [[String: Any]] {
        try trace(plugins, config: commFilterConfig(plugins.split(separator: ",").map(String.init), comms: comms), workload)
    }

    static func trace(_ plugins: String, config: String? = nil, _ workload: () throws -> Void) throws -> [[String: Any]] {
        let r = try traceAround(plugins, config: config, workload)
        #expect(!r.stderr.contains("decode errors 1"), "\(r.stderr)")
        return try jsonLines(r.stdout)
    }

    static func helper(_ name: String, _ source: String) throws -> String {
        let dir = try makeTempDir(prefix: "helper")
        let path = "\(dir)/\(name)"
        try compileC(source, to: path, flags: ["-O1"])
        return path
    }

    /// Runs a helper to completion and returns its pid and stdout words.
    static func runHelper(_ path: String, _ args: [String] = []) throws -> (pid: Int32, out: [String]) {
        let p = try BackgroundProcess(path, args)
        let r = p.wait()
        guard r.status == 0 else { throw TestFailure("\(path) failed: \(r.stderr)") }
        return (p.pid, r.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    @Test func ptraceAttachAndDetachFromAHelper() throws {
        let helper = try Self.helper("ptracer", """
            #include <signal.h>
            #include <stdio.h>
            #include <sys/ptrace.h>
            #include <sys/wait.h>
            #include <unistd.h>
            int main(void) {
                pid_t child = fork();
                if (child == 0) { pause(); return 0; }
                if (ptrace(PTRACE_ATTACH, child, 0, 0) != 0) return 1;
                waitpid(child, 0, 0);
                ptrace((enum __ptrace_request)0x7777, child, 0, 0); /* no such request: EIO */
                if (ptrace(PTRACE_DETACH, child, 0, 0) != 0) return 2;
                kill(child, SIGKILL);
                waitpid(child, 0, 0);
                printf("%d\\n", child);
                return 0;
            }
            """)
        var result: (pid: Int32, out: [String]) = (0, [])
        let rows = try Self.trace("ptrace", comms: ["ptracer"]) { result = try Self.runHelper(helper) }
        let child = try #require(Int64(result.out.first ?? ""))
        let mine = rows.filter { int($0, "pid") == Int64(result.pid) }
        let attach = try #require(mine.first { $0["request_name"] as? String == "PTRACE_ATTACH" }, "\(mine)")
        #expect(int(attach, "request") == 16)
        #expect(int(attach, "target_pid") == child)
        #expect(int(attach, "return_code") == 0)
        #expect(attach["event_type"] as? String == "ptrace")
        #expect(attach["comm"] as? String == "ptracer")
        let unknown = try #require(mine.first { int($0, "request") == 0x7777 })
        #expect(unknown["request_name"] as? String == "PTRACE_UNKNOWN_30583")
        #expect(int(unknown, "return_code") == -Int64(EIO))
        let detach = try #require(mine.first { $0["request_name"] as? String == "PTRACE_DETACH" })
        #expect(int(detach, "request") == 17)
        #expect(int(detach, "target_pid") == child)
    }

    @Test func straceOfTrueShowsItsRequestsOnTheTracedChild() throws {
        var stracePid: Int32 = 0
        // strace's child execs /bin/true under strace's name.
        let rows = try Self.trace("ptrace,tracing", comms: ["strace"]) {
            let p = try BackgroundProcess("/usr/bin/strace", ["-f", "-o", "/dev/null", "/bin/true"])
            _ = p.wait()
            stracePid = p.pid
        }
        // The traced child is the process that exec'd /bin/true, a child of strace.
        let exec = try #require(rows.first { $0["table"] as? String == "tracing_events" && $0["filename"] as? String == "/bin/true" && int($0, "ppid") == Int64(stracePid) })
        let child = try #require(int(exec, "pid"))
        let requests = rows.filter { $0["table"] as? String == "ptrace_events" && int($0, "target_pid") == child && int($0, "pid") == Int64(stracePid) }
        let names = Set(requests.compactMap { $0["request_name"] as? String })
        #expect(names.contains("PTRACE_SEIZE"), "\(names)")
        #expect(names.contains("PTRACE_SYSCALL"), "\(names)")
        #expect(names.contains("PTRACE_GET_SYSCALL_INFO") || names.contains("PTRACE_GETREGS") || names.contains("PTRACE_GETREGSET"), "\(names)")
    }

    @Test func anonymousAndFileBackedMappingsHaveExactFields() throws {
        let dir = try makeTempDir(prefix: "mmap")
        let file = "\(dir)/backing"
        #expect(FileManager.default.createFile(atPath: file, contents: Data(count: 2 << 20)))
        let helper = try Self.helper("mapper", """
            #include <fcntl.h>
            #include <stdio.h>
            #include <sys/mman.h>
            int main(int argc, char **argv) {
                void *a = mmap(0, 1234567, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                int fd = open(argv[1], O_RDONLY);
                void *f = mmap(0, 1234567, PROT_READ, MAP_SHARED, fd, 4096);
                if (a == MAP_FAILED || f == MAP_FAILED) return 1;
                printf("%lu %d %lu\\n", (unsigned long)a, fd, (unsigned long)f);
                return 0;
            }
            """)
        var result: (pid: Int32, out: [String]) = (0, [])
        let rows = try Self.trace("mmap", comms: ["mapper"]) { result = try Self.runHelper(helper, [file]) }
        let anonAddress = try #require(Int64(result.out[0]))
        let fd = try #require(UInt64(result.out[1]))
        let fileAddress = try #require(Int64(result.out[2]))
        let mine = rows.filter { int($0, "pid") == Int64(result.pid) && int($0, "len") == 1_234_567 }
        #expect(mine.count == 2, "\(mine)")
        let anon = try #require(mine.first { int($0, "return_code") == anonAddress })
        #expect(int(anon, "prot") == Int64(PROT_READ | PROT_WRITE))
        #expect(int(anon, "flags") == Int64(MAP_PRIVATE | MAP_ANONYMOUS))
        #expect((anon["fd"] as? NSNumber)?.uint64Value == UInt64.max) // -1, stored as its bit pattern
        #expect(int(anon, "off") == 0)
        #expect(int(anon, "addr") == 0)
        #expect(anon["event_type"] as? String == "mmap")
        let backed = try #require(mine.first { int($0, "return_code") == fileAddress })
        #expect(int(backed, "prot") == Int64(PROT_READ))
        #expect(int(backed, "flags") == Int64(MAP_SHARED))
        #expect((backed["fd"] as? NSNumber)?.uint64Value == fd)
        #expect(int(backed, "off") == 4096)
    }

    @Test func tmpfsMountAndUmountHaveExactFields() throws {
        let dir = try makeTempDir(prefix: "mnt")
        let helper = try Self.helper("mounter", """
            #include <stdio.h>
            #include <sys/mount.h>
            int main(int argc, char **argv) {
                if (mount("infrasight-tmpfs", argv[1], "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") != 0) return 1;
                if (umount2(argv[1], MNT_DETACH) != 0) return 2;
                if (mount("none", "/nonexistent-infrasight", "tmpfs", 0, 0) == 0) return 3;
                return 0;
            }
            """)
        var pid: Int32 = 0
        var cliPid: Int32 = 0
        let rows = try Self.trace("mount", comms: ["mounter", "mount", "umount"]) {
            pid = try Self.runHelper(helper, [dir]).pid
            let m = try BackgroundProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "cli-tmpfs", dir])
            _ = m.wait()
            cliPid = m.pid
            _ = try run("/bin/umount", [dir])
        }
        let mine = rows.filter { int($0, "pid") == Int64(pid) }
        #expect(mine.count == 3, "\(mine)")
        let mount = try #require(mine.first { $0["event_type"] as? String == "mount" && $0["dir_name"] as? String == dir })
        #expect(mount["dev_name"] as? String == "infrasight-tmpfs")
        #expect(mount["type"] as? String == "tmpfs")
        #expect(int(mount, "flags") == Int64(MS_NOSUID | MS_NODEV))
        #expect(int(mount, "return_code") == 0)
        let umount = try #require(mine.first { $0["event_type"] as? String == "umount" })
        #expect(umount["dir_name"] as? String == dir)
        #expect(umount["dev_name"] as? String == "")
        #expect(int(umount, "flags") == Int64(MNT_DETACH))
        #expect(int(umount, "return_code") == 0)
        let failed = try #require(mine.first { $0["dir_name"] as? String == "/nonexistent-infrasight" })
        #expect(int(failed, "return_code") == -Int64(ENOENT))
        // mount(8) itself.
        let cli = try #require(rows.first { int($0, "pid") == Int64(cliPid) && $0["event_type"] as? String == "mount" })
        #expect(cli["dev_name"] as? String == "cli-tmpfs")
        #expect(cli["dir_name"] as? String == dir)
        #expect(cli["type"] as? String == "tmpfs")
    }

    @Test func resourceRowsAddUpToWhatAChildDidAndEndWithAnInactiveRow() throws {
        let dir = try makeTempDir(prefix: "resource")
        let helper = try Self.helper("burner", """
            #include <fcntl.h>
            #include <stdlib.h>
            #include <string.h>
            #include <time.h>
            #include <unistd.h>
            /* CPU time, not wall time: on a loaded machine the burn still uses 1.3 s of CPU. */
            static double now(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
            int main(int argc, char **argv) {
                int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
                char *block = malloc(1 << 20);
                memset(block, 7, 1 << 20);
                for (int i = 0; i < 8; i++) if (write(fd, block, 1 << 20) != 1 << 20) return 1;
                close(fd);
                volatile unsigned long x = 0;
                double end = now() + 1.3;   /* CPU-bound: longer than the 1 s interval */
                while (now() < end) x++;
                return 0;
            }
            """)
        var pid: Int32 = 0
        let rows = try Self.trace("resource", config: "plugins:\n  options:\n    resource:\n      interval_seconds: 1\n      include_comms: [burner]\n") {
            pid = try Self.runHelper(helper, ["\(dir)/out"]).pid
        }
        let mine = rows.filter { int($0, "pid") == Int64(pid) }
        #expect(!mine.isEmpty)
        let cpu = mine.reduce(Int64(0)) { $0 + (int($1, "cpu_ns") ?? 0) }
        let written = mine.reduce(Int64(0)) { $0 + (int($1, "bytes_written") ?? 0) }
        #expect(cpu >= 1_000_000_000, "cpu_ns \(cpu)")
        #expect(written >= 8 << 20, "bytes_written \(written)")
        #expect(mine.reduce(Int64(0)) { $0 + (int($1, "vm_mmap_bytes") ?? 0) } > 0)
        #expect(mine.reduce(Int64(0)) { $0 + (int($1, "user_faults") ?? 0) } > 0)
        // Active rows while it ran, then exactly one last row with isActive = 0.
        #expect(mine.contains { int($0, "isActive") == 1 })
        #expect(mine.filter { int($0, "isActive") == 0 }.count == 1)
        #expect(int(mine.last!, "isActive") == 0, "\(mine.map { [int($0, "isActive") ?? -1, int($0, "cpu_ns") ?? -1, int($0, "wall_time_ms") ?? -1] })")
        #expect(mine.allSatisfy { $0["comm"] as? String == "burner" && $0["table"] as? String == "resource_events" })
    }

    @Test func aBadResourceIntervalIsRefusedWithItsReason() throws {
        let dir = try makeTempDir(prefix: "cfg")
        try "plugins:\n  options:\n    resource:\n      interval_seconds: 0\n".write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        let r = try run(Paths.infrasight, ["trace", "--plugins", "resource", "--config", "\(dir)/c.yaml", "--duration", "1"])
        #expect(r.status == 1)
        #expect(r.stderr == "infrasight: plugin resource: refused its options: option interval_seconds must be between 1 and 3600\n")
    }
}
