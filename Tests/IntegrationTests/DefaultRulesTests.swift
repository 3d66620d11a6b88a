import Foundation
import Glibc
import InfraSightCore
import InfraSightTestSupport
import Testing

/// An alert as `infrasight run --alerts-stdout` prints it (one JSON object per line).
struct PrintedAlert: Sendable {
    let line: String

    var object: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]) ?? [:] }
    var rule: String { object["rule"] as? String ?? "" }
    var severity: String { object["severity"] as? String ?? "" }
    var tags: [String] { object["tags"] as? [String] ?? [] }
    var sourceTable: String { object["source_table"] as? String ?? "" }
    var pid: Int64 { int(object, "pid") ?? -1 }
    var comm: String { object["comm"] as? String ?? "" }
    var user: String { object["user"] as? String ?? "" }
    var containerID: String { object["container_id"] as? String ?? "" }
    var containerImage: String { object["container_image"] as? String ?? "" }
    var output: String { object["output"] as? String ?? "" }
    /// The source row, as stored.
    var row: [String: Any] { object["row"] as? [String: Any] ?? [:] }
    /// A number of the row (64-bit integers may be quoted).
    func rowNumber(_ key: String) -> Int64? {
        if let n = int(row, key) { return n }
        return (row[key] as? String).flatMap { Int64($0) }
    }
}

/// The static helper every reproduction runs, under a name of its own: one action per
/// run (`helper ACTION ARGS... [stay]`); with `stay` it prints `done RESULT` after the
/// action and waits to be killed, so a container's process keeps its pid for the test.
/// It prints `child PID`, `target PID` or `fd N` when the action names another process
/// or a descriptor.
enum RuleHelper {
    static let source = """
        #define _GNU_SOURCE
        #include <arpa/inet.h>
        #include <errno.h>
        #include <fcntl.h>
        #include <netinet/in.h>
        #include <signal.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/mman.h>
        #include <sys/mount.h>
        #include <sys/ptrace.h>
        #include <sys/socket.h>
        #include <sys/stat.h>
        #include <sys/un.h>
        #include <sys/wait.h>
        #include <unistd.h>

        static volatile long target = 1;

        static void say(const char *key, long value) { printf("%s %ld\\n", key, value); fflush(stdout); }

        static int act(int argc, char **argv) {
            const char *what = argv[1];
            if (!strcmp(what, "noop")) return 0;
            if (!strcmp(what, "open")) { /* open PATH r|w */
                int fd = open(argv[2], argv[3][0] == 'w' ? O_WRONLY | O_CREAT | O_TRUNC : O_RDONLY, 0644);
                if (fd < 0) { perror(argv[2]); return 1; }
                close(fd);
                return 0;
            }
            if (!strcmp(what, "environ")) { /* the parent's environment */
                char path[64];
                snprintf(path, sizeof path, "/proc/%d/environ", getppid());
                say("target", getppid());
                int fd = open(path, O_RDONLY);
                if (fd < 0) { perror(path); return 1; }
                char buf[256];
                (void)!read(fd, buf, sizeof buf);
                close(fd);
                return 0;
            }
            if (!strcmp(what, "unix")) { /* unix PATH */
                int s = socket(AF_UNIX, SOCK_STREAM, 0);
                struct sockaddr_un a = {.sun_family = AF_UNIX};
                strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
                if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
                close(s);
                return 0;
            }
            if (!strcmp(what, "tcp")) { /* tcp ADDR PORT [may-fail] */
                int s = socket(AF_INET, SOCK_STREAM, 0);
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
                inet_pton(AF_INET, argv[2], &a.sin_addr);
                int r = connect(s, (struct sockaddr *)&a, sizeof a), e = errno;
                say("connect", r ? -e : 0);
                if (r) fprintf(stderr, "connect %s:%s: %s\\n", argv[2], argv[3], strerror(e));
                close(s);
                return r && argc < 5 ? 1 : 0;
            }
            if (!strcmp(what, "fexec")) { /* itself, copied into a memfd, run with fexecve */
                int self = open("/proc/self/exe", O_RDONLY);
                int fd = memfd_create("payload", 0);
                char buf[65536];
                ssize_t n;
                while ((n = read(self, buf, sizeof buf)) > 0) (void)!write(fd, buf, n);
                close(self);
                say("fd", fd);
                char *args[] = {"payload", "noop", 0};
                char *env[] = {0};
                fexecve(fd, args, env);
                perror("fexecve");
                return 1;
            }
            if (!strcmp(what, "mount")) { /* mount DIR: a tmpfs, unmounted again */
                mkdir(argv[2], 0755);
                if (mount("none", argv[2], "tmpfs", 0, "size=1m")) { perror("mount"); return 1; }
                umount(argv[2]);
                return 0;
            }
            if (!strcmp(what, "traceme")) { /* a child asks its parent to trace it */
                pid_t c = fork();
                if (c == 0) _exit(ptrace(PTRACE_TRACEME, 0, 0, 0) ? 1 : 0);
                say("child", c);
                int st;
                waitpid(c, &st, 0);
                return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
            }
            if (!strcmp(what, "poke")) { /* writes into a traced child's memory (POKEDATA) */
                pid_t c = fork();
                if (c == 0) {
                    ptrace(PTRACE_TRACEME, 0, 0, 0);
                    raise(SIGSTOP);
                    _exit(target == 42 ? 0 : 1);
                }
                say("child", c);
                int st;
                waitpid(c, &st, 0);
                if (ptrace(PTRACE_POKEDATA, c, (void *)&target, (void *)42L)) { perror("POKEDATA"); return 1; }
                ptrace(PTRACE_CONT, c, 0, 0);
                waitpid(c, &st, 0);
                return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
            }
            if (!strcmp(what, "attach")) { /* attaches to a sleeping child, detaches, ends it */
                pid_t c = fork();
                if (c == 0) { pause(); _exit(0); }
                say("child", c);
                if (ptrace(PTRACE_ATTACH, c, 0, 0)) { perror("ATTACH"); return 1; }
                int st;
                waitpid(c, &st, 0);
                ptrace(PTRACE_DETACH, c, 0, 0);
                kill(c, SIGKILL);
                waitpid(c, &st, 0);
                return 0;
            }
            if (!strcmp(what, "wx")) {
                void *p = mmap(0, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) { perror("mmap"); return 1; }
                munmap(p, 8192);
                return 0;
            }
            if (!strcmp(what, "setuid")) { /* setuid PATH */
                if (chmod(argv[2], 04755)) { perror("chmod"); return 1; }
                return 0;
            }
            if (!strcmp(what, "listen-connect")) { /* listens on 127.0.0.1:PORT (in its own network namespace) and connects to it */
                int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
                setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4)) { perror("listen on 127.0.0.1"); return 1; }
                int s = socket(AF_INET, SOCK_STREAM, 0);
                int r = connect(s, (struct sockaddr *)&a, sizeof a), e = errno;
                say("connect", r ? -e : 0);
                if (r) fprintf(stderr, "connect 127.0.0.1:%s: %s\\n", argv[2], strerror(e));
                close(s);
                close(l);
                return r ? 1 : 0;
            }
            fprintf(stderr, "unknown action %s\\n", what);
            return 2;
        }

        int main(int argc, char **argv) {
            if (argc < 2) return 2;
            int stay = !strcmp(argv[argc - 1], "stay");
            if (stay) argv[--argc] = 0;
            int r = act(argc, argv);
            if (stay) {
                say("done", r);
                for (;;) pause();
            }
            return r;
        }
        """

    /// The number after `key` in the helper's output.
    static func number(_ key: String, in output: String) throws -> Int64 {
        for line in output.split(separator: "\n") where line.hasPrefix(key + " ") {
            if let n = Int64(line.dropFirst(key.count + 1)) { return n }
        }
        throw TestFailure("the helper printed no '\(key)': \(output)")
    }
}

/// One `infrasight run` with the default ruleset (and nothing else: no rules.d, no drift)
/// around a reproduction of what every default rule is about, each by a process the test
/// knows: a static helper with a name of its own on the host, and the same helper, a
/// shell and `docker exec` in real containers for the rules about containers. Only the
/// helper's name (and runc's init, which execs a container's processes) is traced: other
/// suites load the host meanwhile, and what the rules judge must not be lost.
final class RuleReproductions: Sendable {
    /// The process that did something, as the test knows it.
    struct Act: Sendable {
        let pid: Int64
        let comm: String
        var containerID = ""
        /// What the helper printed (a child's pid, a descriptor).
        var printed = ""
    }

    let comm: String
    let dir: String
    let acts: [String: Act]
    let alerts: [PrintedAlert]
    let stderr: String
    /// Paths the reproductions used.
    let mountDir: String, setuidFile: String, etcFile: String

    static let recorded = Result(catching: { try RuleReproductions() })
    static func get() throws -> RuleReproductions { try recorded.get() }

    private init() throws {
        try Docker.ready()
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let comm = "isr" + tag, dir = try makeTempDir(prefix: "defaultrules")
        let mountDir = "\(dir)/mnt", setuidFile = "\(dir)/tool", etcFile = "/etc/infrasight-rulestest-\(tag)"
        (self.comm, self.dir, self.mountDir, self.setuidFile, self.etcFile) = (comm, dir, mountDir, setuidFile, etcFile)
        let helper = "\(dir)/\(comm)"
        try compileC(RuleHelper.source, to: helper, flags: ["-O1", "-Wall", "-static"])
        try "t\n".write(toFile: setuidFile, atomically: true, encoding: .utf8)

        let filter = "{include_comms: [\(comm)]}"
        try """
            plugins:
              enabled: [tracing, network, ptrace, mmap, mount]
              options:
                tracing: {include_comms: [\(comm), "runc:[2:INIT]"]}
                network: \(filter)
                ptrace: \(filter)
                mmap: \(filter)
                mount: \(filter)
            rules:
              dirs: []
              drift_learn_seconds: 0
            """.write(toFile: "\(dir)/config.yaml", atomically: true, encoding: .utf8)
        let data = try makeTempDir(prefix: "defaultrules-data")
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(dir)/config.yaml", "--data-dir", data, "--alerts-stdout"])
        try agent.waitForStderr("infrasight: note: started: ")

        var done: [String: Act] = [:]
        let label = "infrasight.test=defaultrules-\(tag)"
        // By label: a container whose start failed exists too, without an id printed.
        defer {
            let ids = ((try? Docker.docker(["ps", "-aq", "--filter", "label=\(label)"])) ?? "").split(separator: "\n").map(String.init)
            if !ids.isEmpty { _ = try? Docker.docker(["rm", "-f"] + ids) }
        }
        defer { unlink(etcFile) }

        /// Runs the helper on the host (`wrapper` runs it through another program).
        func host(_ rule: String, _ args: [String], through wrapper: [String] = []) throws {
            let p = try BackgroundProcess(wrapper.isEmpty ? helper : wrapper[0], wrapper.isEmpty ? args : Array(wrapper.dropFirst()) + [helper] + args)
            let r = try p.wait(timeout: 30)
            guard r.status == 0 else { throw TestFailure("\(rule): \(comm) \(args) exited \(r.status): \(r.stderr)") }
            done[rule] = Act(pid: Int64(p.pid), comm: comm, printed: r.stdout)
        }
        /// A file that this kernel or host lacks, made in a private mount namespace (a tmpfs
        /// over its directory) for the helper to open: the host is left alone.
        func standIn(_ path: String) -> [String] {
            let directory = (path as NSString).deletingLastPathComponent
            return ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                    "mount -t tmpfs tmpfs \(directory) && : > \(path) && exec \"$0\" \"$@\""]
        }
        try host("read_sensitive_file", ["open", "/etc/shadow", "r"])
        let sudoers = "/etc/sudoers", kcore = "/proc/kcore"
        try host("sudoers_opened", ["open", sudoers, "r"], through: FileManager.default.fileExists(atPath: sudoers) ? [] : standIn(sudoers))
        try host("proc_kcore_read", ["open", kcore, "r"], through: FileManager.default.fileExists(atPath: kcore) ? [] : standIn(kcore))
        try host("container_runtime_socket_access", ["unix", "/var/run/docker.sock"])
        try host("fileless_execution", ["fexec"])
        try host("unexpected_mount", ["mount", mountDir])
        try host("ptrace_traceme", ["traceme"])
        // The child the helper forks is the one that asks.
        let asking = try RuleHelper.number("child", in: done["ptrace_traceme"]!.printed)
        done["ptrace_traceme"] = Act(pid: asking, comm: comm, printed: done["ptrace_traceme"]!.printed)
        try host("ptrace_code_injection", ["poke"])
        try host("ptrace_attach", ["attach"])
        try host("write_below_protected_dir", ["open", etcFile, "w"])
        unlink(etcFile)
        try host("setuid_or_setgid_bit_set", ["setuid", setuidFile])
        try host("write_and_execute_mapping", ["wx"])
        try host("other_process_memory_read", ["environ"])
        // Stratum's port on the loopback of a network namespace of its own: the rule is
        // about the port, and nothing else on the host may hold 3333.
        try host("mining_pool_connection", ["listen-connect", "3333"],
                 through: ["/usr/bin/unshare", "--net", "/bin/sh", "-c", "/usr/sbin/ip link set lo up && exec \"$0\" \"$@\""])

        /// Runs the helper as a container's entrypoint (it stays after acting: its pid).
        func container(_ key: String, _ options: [String], _ args: [String]) throws {
            let id = try Docker.docker(["run", "-d", "--label", label, "-v", "\(dir):/t:ro"] + options + [Docker.image, "/t/\(comm)"] + args + ["stay"])
            var logs = ""
            try waitUntil("the helper in the container (\(key)) done", timeout: 30) {
                logs = try Docker.docker(["logs", id])
                return logs.contains("done ")
            }
            guard logs.contains("done 0") else { throw TestFailure("\(key): the helper in the container failed: \(logs)") }
            let pid = Int64(try Docker.docker(["inspect", "-f", "{{.State.Pid}}", id])) ?? 0
            done[key] = Act(pid: pid, comm: comm, containerID: id, printed: logs)
        }
        try container("container_runtime_socket_access.container", ["-v", "/var/run/docker.sock:/var/run/docker.sock"], ["unix", "/var/run/docker.sock"])
        // The API server's port on the container's own loopback (its network namespace):
        // the rule is about the port, and no packet leaves the container.
        try container("kubernetes_api_from_container", [], ["listen-connect", "6443"])
        // No network: the connect fails at once (ENETUNREACH) and nothing leaves the host.
        try container("cloud_metadata_from_container", ["--network", "none"], ["tcp", "169.254.169.254", "80", "may-fail"])
        // Privileged enough to mount: --privileged itself cannot start here (root on these
        // machines lacks CAP_SYS_RESOURCE, which it would hand the container).
        try container("mount_in_container", ["--cap-add", "SYS_ADMIN"], ["mount", "/mnt"])

        // A container whose entrypoint is a shell, then a shell started in it with docker exec.
        let shellContainer = try Docker.docker(["run", "-d", "--label", label, Docker.image, "sh", "-c", "cat /etc/motd; exec sleep 600"])
        let entrypoint = Int64(try Docker.docker(["inspect", "-f", "{{.State.Pid}}", shellContainer])) ?? 0
        done["shell_in_container.entrypoint"] = Act(pid: entrypoint, comm: "sh", containerID: shellContainer)
        _ = try Docker.docker(["exec", "-d", shellContainer, "sh", "-c", "echo $$ > /shell.pid; exec sleep 600"])
        var inside: Int64 = 0
        try waitUntil("the exec'd shell wrote its pid", timeout: 30) {
            inside = Int64((try? Docker.docker(["exec", shellContainer, "cat", "/shell.pid"])) ?? "") ?? 0
            return inside > 0
        }
        let shellPid = try Self.hostPid(of: inside, inContainer: shellContainer)
        done["shell_in_container"] = Act(pid: shellPid, comm: "sh", containerID: shellContainer, printed: "\(inside)")

        // Every reproduction's alert is out (from a syscall to its alert ≤ 2 s at the
        // default batch delay; the wait allows a loaded machine), then the run stops.
        let expected: [(rule: String, pid: Int64)] = done.filter { !$0.key.contains(".") }.map { ($0.key, $0.value.pid) }
            + [("container_runtime_socket_access", done["container_runtime_socket_access.container"]!.pid)]
        try waitUntil("every reproduction raised its alert (\(agent.stderr.suffix(400)))", timeout: 60) {
            let printed = try jsonLines(agent.stdout).map { ($0["rule"] as? String ?? "", int($0, "pid") ?? 0) }
            return expected.allSatisfy { e in printed.contains { $0.0 == e.rule && $0.1 == e.pid } }
        }
        let r = try agent.interrupt(after: 1)
        guard r.status == 0 else { throw TestFailure("infrasight run exited \(r.status): \(r.stderr)") }
        self.acts = done
        stderr = r.stderr
        alerts = r.stdout.split(separator: "\n").map { PrintedAlert(line: String($0)) }
    }

    /// The host pid of the process `inside` (a pid in the container's namespace).
    static func hostPid(of inside: Int64, inContainer id: String) throws -> Int64 {
        guard let mount = CgroupResolver().mountPoint else { throw TestFailure("no cgroup2 mount") }
        let procs = try String(contentsOfFile: "\(mount)/docker/\(id)/cgroup.procs", encoding: .utf8)
        for pid in procs.split(separator: "\n") {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) else { continue }
            let ids = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst()
            if ids.last.flatMap({ Int64($0) }) == inside { return Int64(pid)! }
        }
        throw TestFailure("no process of container \(id) has pid \(inside) in it")
    }

    /// The alerts of process `pid` (of container `containerID`, if given); a pid names one
    /// process here: the run is short, and only the helper's name is traced.
    func alerts(of pid: Int64, containerID: String? = nil) -> [PrintedAlert] {
        alerts.filter { $0.pid == pid && (containerID == nil || $0.containerID == containerID) }
    }
}

/// Each default rule against the real behaviour it is about: exactly that rule fires for
/// the process that did it, with the rule's severity and the process's pid, comm and
/// container, and the file, socket, address or target in its output and row. The
/// reproductions share one traced run (`RuleReproductions`); a quiet baseline (a build, a
/// git commit, a package installed and purged, Python, curl, a container) raises nothing.
@Suite(.serialized) struct DefaultRulesTests {
    /// The one alert of `rule` for the act `key`, after checking that the process raised
    /// that rule and no other, with the rule's severity, the act's pid, comm and container.
    @discardableResult
    func onlyAlert(_ rule: String, severity: String, act key: String? = nil, comm: String? = nil, table: String) throws -> (alert: PrintedAlert, act: RuleReproductions.Act) {
        let r = try RuleReproductions.get()
        let act = try #require(r.acts[key ?? rule], "no reproduction \(key ?? rule)")
        let mine = r.alerts(of: act.pid, containerID: act.containerID.isEmpty ? nil : act.containerID)
        #expect(mine.map(\.rule).allSatisfy { $0 == rule }, "pid \(act.pid) raised \(mine.map(\.rule)); \(mine.map(\.output))")
        let alert = try #require(mine.first { $0.rule == rule }, "no \(rule) alert for pid \(act.pid) among \(r.alerts.count): \(r.alerts.map { "\($0.rule) \($0.pid)" }); \(r.stderr.suffix(600))")
        #expect(alert.severity == severity)
        #expect(!alert.tags.isEmpty)
        #expect(alert.sourceTable == table)
        #expect(alert.comm == (comm ?? act.comm))
        #expect(alert.user == "root")
        #expect(alert.containerID == act.containerID)
        #expect(alert.containerImage == (act.containerID.isEmpty ? "" : Docker.image))
        #expect(alert.rowNumber("pid") == act.pid && alert.rowNumber("start_time_ns").map { $0 > 0 } == true, "\(alert.row)")
        #expect(alert.row["container_id"] as? String == act.containerID)
        return (alert, act)
    }

    @Test func readingShadowRaisesReadSensitiveFile() throws {
        let (alert, _) = try onlyAlert("read_sensitive_file", severity: "high", table: "tracing_events")
        #expect(alert.row["filename"] as? String == "/etc/shadow")
        #expect(alert.output.hasPrefix("/etc/shadow opened by \(alert.comm) (pid \(alert.pid), user root"), "\(alert.output)")
    }

    @Test func openingSudoersRaisesSudoersOpened() throws {
        let (alert, _) = try onlyAlert("sudoers_opened", severity: "high", table: "tracing_events")
        #expect(alert.row["filename"] as? String == "/etc/sudoers")
        #expect(alert.output.hasPrefix("/etc/sudoers opened by \(alert.comm) (pid \(alert.pid)"), "\(alert.output)")
    }

    @Test func connectingToTheDockerSocketFromTheHostRaisesContainerRuntimeSocketAccess() throws {
        let (alert, _) = try onlyAlert("container_runtime_socket_access", severity: "high", table: "network_events")
        #expect(alert.row["unix_path"] as? String == "/var/run/docker.sock")
        #expect(alert.row["protocol"] as? String == "unix")
        #expect(alert.output.hasSuffix("connected to /var/run/docker.sock"), "\(alert.output)")
    }

    @Test func connectingToTheDockerSocketFromAContainerRaisesContainerRuntimeSocketAccess() throws {
        let (alert, act) = try onlyAlert("container_runtime_socket_access", severity: "high", act: "container_runtime_socket_access.container", table: "network_events")
        #expect(alert.row["unix_path"] as? String == "/var/run/docker.sock")
        #expect(alert.rowNumber("user_pid") == 1)
        #expect(alert.output.contains("container \(Docker.image) \(act.containerID)) connected to /var/run/docker.sock"), "\(alert.output)")
    }

    @Test func openingProcKcoreRaisesProcKcoreRead() throws {
        let (alert, _) = try onlyAlert("proc_kcore_read", severity: "critical", table: "tracing_events")
        #expect(alert.row["filename"] as? String == "/proc/kcore")
        #expect(alert.output.hasPrefix("/proc/kcore opened by \(alert.comm) (pid \(alert.pid)"), "\(alert.output)")
    }

    /// fexecve runs execveat(fd, "", AT_EMPTY_PATH): the kernel names the program
    /// /dev/fd/N, and the process takes the memfd's name as its comm.
    @Test func runningAProgramFromAMemfdRaisesFilelessExecution() throws {
        let r = try RuleReproductions.get()
        let fd = try RuleHelper.number("fd", in: try #require(r.acts["fileless_execution"]).printed)
        let (alert, act) = try onlyAlert("fileless_execution", severity: "high", comm: "memfd:payload", table: "tracing_events")
        #expect(alert.row["filename"] as? String == "/dev/fd/\(fd)")
        #expect(alert.row["syscall"] as? String == "execveat")
        #expect(alert.row["argv"] as? String == "payload noop")
        #expect(alert.output.contains("ran from a descriptor (/dev/fd/\(fd), pid \(act.pid)"), "\(alert.output)")
    }

    @Test func mountingATmpfsOnTheHostRaisesUnexpectedMount() throws {
        let r = try RuleReproductions.get()
        let (alert, _) = try onlyAlert("unexpected_mount", severity: "medium", table: "mount_events")
        #expect(alert.row["dir_name"] as? String == r.mountDir)
        #expect(alert.row["type"] as? String == "tmpfs")
        #expect(alert.output.hasSuffix("mounted none on \(r.mountDir) (type tmpfs)"), "\(alert.output)")
    }

    @Test func mountingATmpfsInAPrivilegedContainerRaisesMountInContainer() throws {
        let (alert, act) = try onlyAlert("mount_in_container", severity: "high", table: "mount_events")
        #expect(alert.row["dir_name"] as? String == "/mnt")
        #expect(alert.row["type"] as? String == "tmpfs")
        #expect(alert.rowNumber("return_code") == 0)
        #expect(alert.output.contains("in container \(Docker.image) \(act.containerID) mounted none on /mnt (type tmpfs)"), "\(alert.output)")
    }

    @Test func aChildAskingToBeTracedRaisesPtraceTraceme() throws {
        let r = try RuleReproductions.get()
        let child = try RuleHelper.number("child", in: try #require(r.acts["ptrace_traceme"]).printed)
        let (alert, act) = try onlyAlert("ptrace_traceme", severity: "medium", table: "ptrace_events")
        #expect(alert.pid == child && act.pid == child, "the alert names the child \(child) that called it")
        #expect(alert.row["request_name"] as? String == "PTRACE_TRACEME")
        #expect(alert.output.contains("(pid \(child), user root"), "\(alert.output)")
    }

    @Test func writingIntoATracedChildRaisesPtraceCodeInjection() throws {
        let r = try RuleReproductions.get()
        let child = try RuleHelper.number("child", in: try #require(r.acts["ptrace_code_injection"]).printed)
        let (alert, act) = try onlyAlert("ptrace_code_injection", severity: "high", table: "ptrace_events")
        #expect(alert.row["request_name"] as? String == "PTRACE_POKEDATA")
        #expect(alert.rowNumber("target_pid") == child)
        #expect(alert.output == "\(act.comm) (pid \(act.pid), user root) wrote into pid \(child) with PTRACE_POKEDATA")
        // The child asked to be traced: that is its own alert, the only one.
        #expect(r.alerts(of: child).map(\.rule) == ["ptrace_traceme"])
    }

    @Test func attachingToAnotherProcessRaisesPtraceAttach() throws {
        let r = try RuleReproductions.get()
        let child = try RuleHelper.number("child", in: try #require(r.acts["ptrace_attach"]).printed)
        let (alert, act) = try onlyAlert("ptrace_attach", severity: "medium", table: "ptrace_events")
        #expect(alert.row["request_name"] as? String == "PTRACE_ATTACH")
        #expect(alert.rowNumber("target_pid") == child)
        #expect(alert.output == "\(act.comm) (pid \(act.pid), user root) attached to pid \(child) (PTRACE_ATTACH)")
        #expect(r.alerts(of: child).isEmpty)
    }

    @Test func aContainerConnectingToPort6443RaisesKubernetesApiFromContainer() throws {
        let (alert, act) = try onlyAlert("kubernetes_api_from_container", severity: "medium", table: "network_events")
        #expect(try RuleHelper.number("connect", in: act.printed) == 0, "the container's own listener accepted: \(act.printed)")
        #expect(alert.row["daddr_ipv4"] as? String == "127.0.0.1")
        #expect(alert.row["dport"] as? String == "6443")
        #expect(alert.output.hasSuffix("in \(Docker.image) \(act.containerID) connected to the Kubernetes API at 127.0.0.1:6443"), "\(alert.output)")
    }

    @Test func aContainerTryingTheMetadataAddressRaisesCloudMetadataFromContainer() throws {
        let (alert, act) = try onlyAlert("cloud_metadata_from_container", severity: "high", table: "network_events")
        // The container has no network: the attempt fails at once, and still counts.
        #expect(try RuleHelper.number("connect", in: act.printed) == -Int64(ENETUNREACH))
        #expect(alert.rowNumber("return_code") == -Int64(ENETUNREACH))
        #expect(alert.row["daddr_ipv4"] as? String == "169.254.169.254")
        #expect(alert.row["dport"] as? String == "80")
        #expect(alert.output.hasSuffix("in \(Docker.image) \(act.containerID) connected to the metadata service 169.254.169.254:80"), "\(alert.output)")
    }

    @Test func aShellStartedWithDockerExecRaisesShellInContainerAndTheEntrypointShellDoesNot() throws {
        let r = try RuleReproductions.get()
        let (alert, act) = try onlyAlert("shell_in_container", severity: "medium", table: "tracing_events")
        #expect(alert.rowNumber("user_pid") == Int64(act.printed))
        #expect(alert.row["argv"] as? String == "sh -c echo $$ > /shell.pid; exec sleep 600")
        #expect(alert.output.hasPrefix("shell sh started in \(Docker.image) \(act.containerID) (pid \(act.pid),"), "\(alert.output)")
        let entrypoint = try #require(r.acts["shell_in_container.entrypoint"])
        #expect(r.alerts.filter { $0.containerID == entrypoint.containerID }.map(\.pid) == [act.pid], "only the exec'd shell, not the entrypoint \(entrypoint.pid)")
    }

    @Test func openingAFileBelowEtcForWritingRaisesWriteBelowProtectedDir() throws {
        let r = try RuleReproductions.get()
        let (alert, _) = try onlyAlert("write_below_protected_dir", severity: "high", table: "tracing_events")
        #expect(alert.row["filename"] as? String == r.etcFile)
        #expect(alert.rowNumber("flags") == Int64(O_WRONLY | O_CREAT | O_TRUNC))
        #expect(alert.output.hasPrefix("\(r.etcFile) opened for writing by \(alert.comm) (pid \(alert.pid)"), "\(alert.output)")
        #expect(!FileManager.default.fileExists(atPath: r.etcFile))
    }

    @Test func settingTheSetuidBitRaisesSetuidOrSetgidBitSet() throws {
        let r = try RuleReproductions.get()
        let (alert, _) = try onlyAlert("setuid_or_setgid_bit_set", severity: "high", table: "tracing_events")
        #expect(alert.row["filename"] as? String == r.setuidFile)
        #expect(alert.rowNumber("mode") == 0o4755)
        #expect(alert.output.contains("set mode \(0o4755) on \(r.setuidFile)"), "\(alert.output)")
    }

    @Test func aWritableExecutableMappingRaisesWriteAndExecuteMapping() throws {
        let (alert, _) = try onlyAlert("write_and_execute_mapping", severity: "medium", table: "mmap_events")
        #expect(alert.rowNumber("prot") == Int64(PROT_READ | PROT_WRITE | PROT_EXEC))
        #expect(alert.rowNumber("len") == 8192)
        #expect(alert.output.contains("mapped 8192 bytes writable and executable (prot 7"), "\(alert.output)")
    }

    @Test func readingAnotherProcessesEnvironRaisesOtherProcessMemoryRead() throws {
        let r = try RuleReproductions.get()
        let target = try RuleHelper.number("target", in: try #require(r.acts["other_process_memory_read"]).printed)
        let (alert, _) = try onlyAlert("other_process_memory_read", severity: "high", table: "tracing_events")
        #expect(target == Int64(getpid()), "the helper's parent is this test process")
        #expect(alert.row["filename"] as? String == "/proc/\(target)/environ")
        #expect(alert.output.hasSuffix("opened /proc/\(target)/environ"), "\(alert.output)")
    }

    @Test func connectingToAMiningPoolPortRaisesMiningPoolConnection() throws {
        let (alert, _) = try onlyAlert("mining_pool_connection", severity: "high", table: "network_events")
        #expect(alert.row["daddr_ipv4"] as? String == "127.0.0.1")
        #expect(alert.row["dport"] as? String == "3333")
        #expect(alert.row["protocol"] as? String == "tcp")
        #expect(alert.rowNumber("return_code") == 0)
        #expect(alert.output.contains("connected to 127.0.0.1:3333"), "\(alert.output)")
    }

    /// What a build machine or a developer does all day, run as one process tree in a
    /// cgroup of its own: compile and run a C program, commit to a git repository, build a
    /// package (a file under /usr/share and a conffile under /etc) and install and purge
    /// it, Python file I/O, curl to a local HTTP server, a container whose entrypoint shell
    /// runs cat and sleep.
    static let baselineWorkload = #"""
        set -eu
        W=$1 TAG=$2 PORT=$3 IMAGE=$4 DOCKER=$5
        cd "$W"
        cat > hello.c <<'C'
        #include <stdio.h>
        int main(void) { FILE *f = fopen("out.txt", "w"); fputs("hello\n", f); fclose(f); puts("hello"); return 0; }
        C
        cc -O1 -o hello hello.c
        ./hello > /dev/null
        mkdir repo && cd repo
        git init -q .
        git config user.email baseline@example.invalid && git config user.name baseline
        cp ../hello.c . && git add hello.c && git commit -q -m 'first commit' && git log --oneline > /dev/null
        cd ..
        mkdir -p pkg/DEBIAN pkg/usr/share/$TAG pkg/etc
        printf 'Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: Baseline <baseline@example.invalid>\nDescription: InfraSight baseline test package\n' $TAG > pkg/DEBIAN/control
        echo /etc/$TAG.conf > pkg/DEBIAN/conffiles
        echo data > pkg/usr/share/$TAG/data.txt && echo 'key = value' > pkg/etc/$TAG.conf
        dpkg-deb --root-owner-group -b pkg $TAG.deb > /dev/null
        dpkg -i $TAG.deb > /dev/null
        dpkg -P $TAG > /dev/null
        /usr/bin/python3 -c "import json; open('data.json', 'w').write(json.dumps({'a': 1})); print(json.load(open('data.json')))" > /dev/null
        /usr/bin/python3 -m http.server --bind 127.0.0.1 $PORT > /dev/null 2>&1 &
        server=$!
        i=0; until curl -sf -o /dev/null http://127.0.0.1:$PORT/; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
        kill $server
        $DOCKER run --rm --cidfile cid $IMAGE sh -c 'cat /etc/motd > /dev/null; sleep 1'
        """#

    /// The whole host traced (no filter: a rule must stay quiet on what it really sees),
    /// the full default ruleset. The workload's processes are those of its cgroup and its
    /// container, the runtime's processes that name its container (runc's, the shim's),
    /// and their children: none of them may raise an alert. Other suites run meanwhile
    /// and may raise their own.
    @Test func aBenignWorkloadOfBuildsPackagesScriptsAndAContainerRaisesNothing() throws {
        try Docker.ready()
        let tag = "isbaseline" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let work = try makeTempDir(prefix: "baseline")
        try Self.baselineWorkload.write(toFile: "\(work)/workload.sh", atomically: true, encoding: .utf8)
        let mount = try #require(CgroupResolver().mountPoint, "no cgroup2 mount")
        let cgroup = "\(mount)/\(tag)"
        try FileManager.default.createDirectory(atPath: cgroup, withIntermediateDirectories: false)
        defer { rmdir(cgroup) }
        var st = stat()
        stat(cgroup, &st)
        let cgroupID = Int64(st.st_ino)
        defer { _ = try? run("/usr/bin/dpkg", ["-P", tag]) }
        try """
            plugins:
              enabled: [tracing, network, ptrace, mmap, mount]
            rules:
              dirs: []
              drift_learn_seconds: 0
            """.write(toFile: "\(work)/config.yaml", atomically: true, encoding: .utf8)
        let data = try makeTempDir(prefix: "baseline-data")
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(work)/config.yaml", "--data-dir", data, "--alerts-stdout"])
        try agent.waitForStderr("infrasight: note: started: ")
        let port = try freeLoopbackPort()
        let workload = try BackgroundProcess("/bin/sh", ["-c", "echo $$ > \(cgroup)/cgroup.procs && exec /bin/sh \(work)/workload.sh \(work) \(tag) \(port) \(Docker.image) \(Docker.client)"])
        let w = try workload.wait(timeout: 180)
        #expect(w.status == 0, "the workload failed: \(w.stderr)")
        let container = ((try? String(contentsOfFile: "\(work)/cid", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let r = try agent.interrupt(after: 2)
        #expect(r.status == 0, "\(r.stderr)")
        try #require(container.count == 64, "no container id: \(w.stderr)")

        func query(_ sql: String) throws -> [[String]] {
            let q = try run(Paths.infrasight, ["query", "--data-dir", data, sql])
            guard q.status == 0 else { throw TestFailure("query failed: \(q.stderr)") }
            return q.stdout.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        }
        // The workload was seen: the build, git, dpkg, Python, curl, docker and the container.
        let comms = Set(try query("SELECT DISTINCT comm FROM audit.tracing_events WHERE event_type = 'execve' AND (cgroup_id = \(cgroupID) OR container_id = '\(container)')").map { $0[0] })
        // The whole host is traced (on purpose): beside another suite's flood, its ring
        // buffers may drop rows, which the summary counts; a missing exec says so.
        for comm in ["cc", "cc1", "as", "ld", "git", "dpkg", "dpkg-deb", "python3", "curl", "docker", "sh", "cat", "sleep"] {
            #expect(comms.contains(comm), "no exec of \(comm) among \(comms.sorted()); \(r.stderr.split(separator: "\n").filter { $0.contains("kernel drops") })")
        }
        let processes = Set(try query("""
            SELECT DISTINCT pid, start_time_ns FROM audit.tracing_events
            WHERE cgroup_id = \(cgroupID) OR container_id = '\(container)' OR (event_type = 'execve' AND position(argv, '\(container)') > 0)
            """).map { $0.joined(separator: " ") })
        let alerts = r.stdout.split(separator: "\n").map { PrintedAlert(line: String($0)) }
        let mine = alerts.filter { alert in
            let process = "\(alert.pid) \(alert.rowNumber("start_time_ns") ?? 0)"
            let parent = "\(alert.rowNumber("ppid") ?? 0) \(alert.rowNumber("parent_start_time_ns") ?? 0)"
            return alert.rowNumber("cgroup_id") == cgroupID || alert.containerID == container || alert.line.contains(container)
                || processes.contains(process) || processes.contains(parent)
        }
        #expect(mine.isEmpty, "\(mine.count) alerts from the workload: \(mine.map { "\($0.rule): \($0.output)" })")
    }

    @Test func everyDefaultRuleHasAReproductionAndTheRunEvaluatedWithoutErrors() throws {
        let r = try RuleReproductions.get()
        let list = try run(Paths.infrasight, ["rules", "list"])
        #expect(list.status == 0, "\(list.stderr)")
        let reproduced = Set(r.acts.keys.map { String($0.split(separator: ".")[0]) })
        let names = Set(r.alerts.map(\.rule))
        #expect(names.isSubset(of: reproduced), "\(names.subtracting(reproduced))")
        #expect(reproduced.count == 18, "\(reproduced.sorted())")
        for rule in reproduced { #expect(list.stdout.contains(rule), "rules list lacks \(rule)") }
        #expect(r.stderr.contains("infrasight: note: rules: 18 in force on 5 tables"), "\(r.stderr)")
        let summary = try #require(SummaryLine.parse(r.stderr, plugin: "rules"), "\(r.stderr)")
        #expect(summary["evaluation errors"] == 0 && summary["alerts not stored"] == 0, "\(summary)")
        #expect(r.stderr.contains("batches not evaluated 0 (rows 0)"), "\(r.stderr)")
    }
}
