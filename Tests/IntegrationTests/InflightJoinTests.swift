import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// No silent eviction: every plugin joins a call's enter and exit in the calling thread's
/// own task-local slot, so any number of threads may be inside traced calls at once. Each
/// test holds more threads inside one call at the same moment than the LRU hash that used
/// to join that call could hold (connect and accept 16,384, ptrace 8,192, execve and
/// mount 4,096: an LRU that full evicted entries, and their rows were lost without a
/// count), releases them, and finds every call's own row with its own result, and no
/// kernel drop.
@Suite(.serialized) struct InflightJoinTests {
    /// `NAME MODE N [ARG]`: N threads, each inside one call of MODE at the same time, then
    /// released a few at a time; prints `blocked N` on stderr once all are inside, and then
    /// one line per call: what identifies its row, and what the call returned (-errno on
    /// failure). Modes:
    /// - `connect`: to 198.51.100.99, port 20000+i, which must swallow SYNs (see
    ///   `withBlackholeNamespace`); every connect waits in SYN-SENT until the helper shuts
    ///   its socket down (-ECONNRESET). Key: the destination port.
    /// - `accept`: on one loopback listener; a child connects N times. Key: the peer's port.
    /// - `exec`, `mount`, `ptrace`: a string or iovec the call reads from user memory is in
    ///   pages registered with userfaultfd and missing until the helper supplies them, so
    ///   each call sleeps inside (in getname, copy_mount_string, __get_user). exec: the path
    ///   ARG<i>, which does not exist (key: the path); mount: source `inflight-<i>` onto
    ///   ARG, which does not exist (key: the source); ptrace: PTRACE_GETREGSET of a thread
    ///   of a child that this worker traces (key: the traced thread's id).
    static let helper: (path: String, comm: String) = {
        let dir = try! makeTempDir(prefix: "inflight")
        // Its own command name: the trace is filtered to it, other processes add no rows.
        let comm = "ifl" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try! compileC("""
            #define _GNU_SOURCE
            #include <arpa/inet.h>
            #include <elf.h>
            #include <errno.h>
            #include <fcntl.h>
            #include <linux/userfaultfd.h>
            #include <netinet/in.h>
            #include <poll.h>
            #include <pthread.h>
            #include <signal.h>
            #include <stdatomic.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/ioctl.h>
            #include <sys/mman.h>
            #include <sys/mount.h>
            #include <sys/prctl.h>
            #include <sys/ptrace.h>
            #include <sys/resource.h>
            #include <sys/socket.h>
            #include <sys/syscall.h>
            #include <sys/uio.h>
            #include <sys/user.h>
            #include <sys/wait.h>
            #include <unistd.h>

            #define SLOT 64   /* bytes of the faulting region per worker */
            #define PAGE 4096
            #define BATCH 256 /* workers released at a time: their records leave at once, rings are finite */
            extern char **environ;
            static const char *mode, *prefix;
            static long n;
            static int *fds, *tids;
            static long *rets;
            static int listener, uffd;
            static struct sockaddr_in listening;
            static char *region, *staging;
            static struct { atomic_long ready; pid_t tids[]; } *tracees;
            static struct user_regs_struct *regs;

            static void fail(const char *what) { fprintf(stderr, "%s: %s\\n", what, strerror(errno)); exit(2); }
            static int is(const char *m) { return !strcmp(mode, m); }
            static int faulting(void) { return is("exec") || is("mount") || is("ptrace"); }

            static void *worker(void *arg) {
                long i = (long)arg, r = -1;
                pid_t target = is("ptrace") ? tracees->tids[i] : 0;
                if (target) { /* a tracer is a thread: this one traces its own tracee */
                    int st;
                    if (ptrace(PTRACE_SEIZE, target, 0, 0) || ptrace(PTRACE_INTERRUPT, target, 0, 0)) fail("PTRACE_SEIZE");
                    if (waitpid(target, &st, __WALL) != target) fail("waitpid");
                }
                tids[i] = syscall(SYS_gettid);
                if (is("connect")) {
                    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(20000 + i)};
                    inet_pton(AF_INET, "198.51.100.99", &s.sin_addr);
                    r = connect(fds[i], (void *)&s, sizeof(s));
                } else if (is("accept")) {
                    r = syscall(SYS_accept, listener, 0, 0);
                } else if (is("exec")) {
                    char *argv[] = {"inflight-exec", 0};
                    r = execve(region + i * SLOT, argv, environ);
                } else if (is("mount")) {
                    r = mount(region + i * SLOT, prefix, "tmpfs", 0, 0);
                } else if (is("ptrace")) {
                    r = ptrace(PTRACE_GETREGSET, target, (void *)NT_PRSTATUS, region + i * SLOT);
                }
                rets[i] = r < 0 ? -errno : r;
                return 0;
            }

            static void *tracee(void *arg) {
                tracees->tids[(long)arg] = syscall(SYS_gettid);
                tracees->ready++;
                for (;;) pause();
                return 0;
            }

            static pthread_t spawn(void *(*body)(void *), long i) {
                pthread_attr_t a;
                pthread_t t;
                pthread_attr_init(&a);
                pthread_attr_setstacksize(&a, 64 * 1024);
                if (pthread_create(&t, &a, body, (void *)i)) fail("pthread_create");
                return t;
            }

            /* Sockets of this network namespace in SYN-SENT. */
            static long syn_sent(void) {
                FILE *f = fopen("/proc/self/net/tcp", "r");
                char line[512], st[8];
                long c = 0;
                while (f && fgets(line, sizeof line, f))
                    if (sscanf(line, "%*s %*s %*s %7s", st) == 1 && !strcmp(st, "02")) c++;
                if (f) fclose(f);
                return c;
            }

            /* Workers inside system call `nr` now (/proc/PID/task/TID/syscall starts with its number). */
            static long inside(long nr) {
                long c = 0;
                for (long i = 0; i < n; i++) {
                    char path[64], buf[32] = {0};
                    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tids[i]);
                    FILE *f = tids[i] ? fopen(path, "r") : 0;
                    if (f && fgets(buf, sizeof buf, f) && buf[0] != 'r' && atol(buf) == nr) c++;
                    if (f) fclose(f);
                }
                return c;
            }

            /* Waits until `count()` is n (at most 120 s). */
            static void await(long (*count)(void), const char *what) {
                for (int w = 0; count() < n; w++) {
                    if (w > 2400) { fprintf(stderr, "only %ld of %ld %s\\n", count(), n, what); exit(3); }
                    usleep(50000);
                }
            }
            static long accepting(void) { return inside(SYS_accept); }

            /* Waits for a page fault from every worker on the region: each is a worker asleep inside
             * its call until this process supplies the page. */
            static void await_faults(void) {
                char *seen = calloc(4 << 20, 1);
                long distinct = 0;
                while (distinct < n) {
                    struct pollfd p = {uffd, POLLIN, 0};
                    if (poll(&p, 1, 120000) != 1) { fprintf(stderr, "only %ld of %ld blocked\\n", distinct, n); exit(3); }
                    struct uffd_msg m;
                    if (read(uffd, &m, sizeof m) != sizeof m) fail("read userfaultfd");
                    unsigned tid = m.arg.pagefault.feat.ptid;
                    if (m.event == UFFD_EVENT_PAGEFAULT && tid < (4u << 20) && !seen[tid]) { seen[tid] = 1; distinct++; }
                }
            }

            int main(int argc, char **argv) {
                if (argc < 3) return 1;
                mode = argv[1];
                n = atol(argv[2]);
                prefix = argc > 3 ? argv[3] : "";
                struct rlimit rl;
                getrlimit(RLIMIT_NOFILE, &rl);
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < (rlim_t)n + 64) { fprintf(stderr, "RLIMIT_NOFILE %ld too low\\n", (long)rl.rlim_max); return 2; }
                fds = calloc(n, sizeof(int));
                tids = calloc(n, sizeof(int));
                rets = calloc(n, sizeof(long));
                long pages = (n * SLOT + PAGE - 1) / PAGE;
                if (faulting()) {
                    /* What each call reads from user memory lives in pages that are missing until this
                     * process supplies them (userfaultfd): the call sleeps inside until then. */
                    uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
                    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
                    if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) fail("userfaultfd");
                    region = mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                    staging = mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                    struct uffdio_register reg = {.range = {(unsigned long)region, pages * PAGE}, .mode = UFFDIO_REGISTER_MODE_MISSING};
                    if (region == MAP_FAILED || staging == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg)) fail("UFFDIO_REGISTER");
                }
                pid_t child = 0;
                if (is("ptrace")) {
                    /* The tracees: threads of a child process, one per worker. */
                    tracees = mmap(0, sizeof(*tracees) + n * sizeof(pid_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
                    if (tracees == MAP_FAILED) fail("mmap");
                    if ((child = fork()) == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        for (long i = 0; i < n; i++) spawn(tracee, i);
                        for (;;) pause();
                    }
                    while (tracees->ready < n) usleep(10000);
                    regs = calloc(n, sizeof(*regs));
                    for (long i = 0; i < n; i++) {
                        struct iovec v = {&regs[i], sizeof(regs[i])};
                        memcpy(staging + i * SLOT, &v, sizeof v);
                    }
                } else if (faulting()) {
                    /* exec: PREFIX<i>, a path that does not exist; mount: the source inflight-<i>. */
                    for (long i = 0; i < n; i++)
                        if (snprintf(staging + i * SLOT, SLOT, "%s%ld", is("exec") ? prefix : "inflight-", i) >= SLOT) return 1;
                } else if (is("connect")) {
                    for (long i = 0; i < n; i++)
                        if ((fds[i] = socket(AF_INET, SOCK_STREAM, 0)) < 0) fail("socket");
                } else if (is("accept")) {
                    socklen_t len = sizeof listening;
                    listening.sin_family = AF_INET;
                    listening.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                    listener = socket(AF_INET, SOCK_STREAM, 0);
                    if (bind(listener, (void *)&listening, len) || listen(listener, 4096) || getsockname(listener, (void *)&listening, &len)) fail("listen");
                } else {
                    return 1;
                }
                pthread_t *threads = calloc(n, sizeof(pthread_t));
                for (long i = 0; i < n; i++) threads[i] = spawn(worker, i);

                /* Every worker inside its call at once. */
                if (is("connect")) await(syn_sent, "in SYN-SENT");
                else if (is("accept")) await(accepting, "in accept");
                else await_faults();
                fprintf(stderr, "blocked %ld\\n", n);

                int done[2];
                if (is("accept")) {
                    /* The connections come from a child: this process's descriptors are the accepted ones. */
                    if (pipe(done)) fail("pipe");
                    if ((child = fork()) == 0) {
                        close(done[1]);
                        for (long i = 0; i < n; i++) {
                            int fd = socket(AF_INET, SOCK_STREAM, 0);
                            if (fd < 0 || connect(fd, (void *)&listening, sizeof listening)) fail("connect to the listener");
                            if (i % BATCH == BATCH - 1) usleep(10000);
                        }
                        char c;
                        read(done[0], &c, 1); /* keeps its ends open until the parent is done */
                        _exit(0);
                    }
                    close(done[0]);
                } else {
                    for (long i = 0; i < (faulting() ? pages : n); i++) {
                        if (faulting()) {
                            struct uffdio_copy c = {.dst = (unsigned long)region + i * PAGE, .src = (unsigned long)staging + i * PAGE, .len = PAGE};
                            if (ioctl(uffd, UFFDIO_COPY, &c)) fail("UFFDIO_COPY");
                            usleep(10000);
                        } else {
                            shutdown(fds[i], SHUT_RDWR);
                            if (i % BATCH == BATCH - 1) usleep(10000);
                        }
                    }
                }
                for (long i = 0; i < n; i++) pthread_join(threads[i], 0);
                /* One line per worker: what identifies its row, and what its call returned. */
                for (long i = 0; i < n; i++) {
                    if (is("connect")) {
                        printf("%ld %ld\\n", 20000 + i, rets[i]);
                    } else if (is("accept")) {
                        struct sockaddr_in peer;
                        socklen_t len = sizeof peer;
                        if (rets[i] < 0 || getpeername(rets[i], (void *)&peer, &len)) printf("? %ld\\n", rets[i]);
                        else printf("%d %ld\\n", ntohs(peer.sin_port), rets[i]);
                    } else if (is("ptrace")) {
                        printf("%d %ld\\n", tracees->tids[i], rets[i]);
                    } else {
                        printf("%s %ld\\n", region + i * SLOT, rets[i]);
                    }
                }
                if (child) {
                    if (is("accept")) close(done[1]);
                    else kill(child, SIGKILL);
                    while (waitpid(-1, 0, __WALL) > 0 || errno == EINTR) {}
                }
                return 0;
            }
            """, to: "\(dir)/\(comm)", flags: ["-O1", "-pthread"])
        return ("\(dir)/\(comm)", comm)
    }()

    /// What the helper's calls returned, by the key of their rows, and the rows and summary
    /// numbers of `plugin` traced meanwhile (only the helper's command name).
    struct Outcome {
        var pid: Int32
        var calls: [String: Int64]
        var rows: [[String: Any]]
        var summary: [String: Int]
    }

    static func traceBlocked(plugin: String, mode: String, count: Int, argument: String = "", netns: String? = nil) throws -> Outcome {
        let dir = try makeTempDir(prefix: "cfg")
        // A ring that holds the whole burst (up to 34,400 records of ~270 bytes: accept's
        // calls and its child's connects): the calls are released within a second, and the
        // tracer, a debug build sharing 2 cores with the other suites, may not read for
        // longer than that. With the plugin's default ring (4 MiB) a starved reader meant
        // counted kernel drops (217 in one run), which this test rightly refuses.
        try "plugins:\n  options:\n    \(plugin):\n      include_comms: [\(helper.comm)]\n      ring_buffer_kb: 65536\n"
            .write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        let trace = try BackgroundProcess(Paths.infrasight, ["trace", "--plugins", plugin, "--config", "\(dir)/c.yaml"])
        try trace.waitForStderr("infrasight: note: started: \(plugin)")
        let arguments = [helper.path, mode, String(count)] + (argument.isEmpty ? [] : [argument])
        let p = try netns.map { try BackgroundProcess("/usr/sbin/ip", ["netns", "exec", $0] + arguments) }
            ?? BackgroundProcess(arguments[0], Array(arguments.dropFirst()))
        let h = try p.wait(timeout: 600)
        let r = try trace.interrupt(after: 0.5, timeout: 300)
        guard h.status == 0, h.stderr.contains("blocked \(count)") else {
            throw TestFailure("\(mode) helper: status \(h.status), \(h.stderr)")
        }
        #expect(r.status == 0, "\(r.stderr)")
        var calls: [String: Int64] = [:]
        for line in h.stdout.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.count == 2, let ret = Int64(words[1]) else { throw TestFailure("helper printed \(line)") }
            calls[String(words[0])] = ret
        }
        #expect(calls.count == count, "\(calls.count) distinct calls of \(count)")
        let summary = try #require(summaryNumbers(r.stderr, plugin: plugin), "\(r.stderr)")
        return Outcome(pid: p.pid, calls: calls, rows: try jsonLines(r.stdout), summary: summary)
    }

    /// A column's value as text (numbers in decimal), as the helper prints its keys.
    static func text(_ row: [String: Any], _ column: String) -> String? {
        row[column] as? String ?? (row[column] as? NSNumber)?.stringValue
    }

    /// Every call has exactly one row (among the helper's rows with the `match` values; its
    /// `key` column is the call's key) with the call's own result, no such row is for a call
    /// that was not made, and the plugin counted no kernel drop.
    static func expectEveryCallHasItsRow(_ o: Outcome, match: [String: String], key: String) {
        var byKey: [String: [[String: Any]]] = [:]
        for row in o.rows where int(row, "pid") == Int64(o.pid) && match.allSatisfy({ text(row, $0.key) == $0.value }) {
            if let k = text(row, key) { byKey[k, default: []].append(row) }
        }
        let missing = o.calls.keys.filter { byKey[$0] == nil }.sorted()
        let repeated = byKey.filter { $0.value.count > 1 }.keys.sorted()
        let wrong = o.calls.filter { k, ret in byKey[k].map { $0.count == 1 && int($0[0], "return_code") != ret } ?? false }
        let strangers = byKey.keys.filter { o.calls[$0] == nil }.sorted()
        #expect(missing.count == 0, "\(missing.count) of \(o.calls.count) calls have no row, e.g. \(missing.prefix(5)); \(o.summary)")
        #expect(repeated.count == 0, "\(repeated.count) calls have several rows, e.g. \(repeated.prefix(5))")
        #expect(wrong.count == 0, "\(wrong.count) rows have another return code, e.g. \(wrong.prefix(5))")
        #expect(strangers.count == 0, "\(strangers.count) rows match no call, e.g. \(strangers.prefix(5))")
        #expect(o.summary["kernel drops"] == 0, "\(o.summary)")
        #expect(o.summary["decode errors"] == 0, "\(o.summary)")
    }

    /// A network namespace, removed after `body`, where a SYN to 198.51.100.99 is sent and
    /// never answered: the address has a fixed neighbour entry on a veth whose other end (in
    /// the same namespace, no address) drops the frames. No ARP, so no "host unreachable":
    /// a blocking connect waits in SYN-SENT for minutes.
    static func withBlackholeNamespace(_ body: (String) throws -> Void) throws {
        let ns = "isf\(getpid() % 100_000)"
        try ip("netns add \(ns)")
        defer { _ = try? run("/usr/sbin/ip", ["netns", "del", ns]) }
        for command in [
            "link set lo up", "link add va type veth peer name vb", "addr add 198.51.100.1/24 dev va",
            "link set va up", "link set vb up", "neigh add 198.51.100.99 lladdr 02:00:5e:00:00:99 dev va nud permanent",
        ] {
            try ip("-n \(ns) \(command)")
        }
        try body(ns)
    }

    @Test func moreThreadsInConnectThanTheOldMapHeldEachHaveTheirRow() throws {
        let count = 17_200  // the LRU held 16,384
        try Self.withBlackholeNamespace { ns in
            let o = try Self.traceBlocked(plugin: "network", mode: "connect", count: count, netns: ns)
            #expect(o.calls.values.allSatisfy { $0 == -Int64(ECONNRESET) }, "\(Set(o.calls.values))")
            Self.expectEveryCallHasItsRow(o, match: ["event_type": "connect", "daddr_ipv4": "198.51.100.99"], key: "dport")
        }
    }

    @Test func moreThreadsInAcceptThanTheOldMapHeldEachHaveTheirRow() throws {
        let count = 17_200
        try Self.withBlackholeNamespace { ns in
            let o = try Self.traceBlocked(plugin: "network", mode: "accept", count: count, netns: ns)
            #expect(o.calls.values.allSatisfy { $0 >= 3 }, "\(Set(o.calls.values.filter { $0 < 3 }))")
            // The accept row's source is the peer: its port is the key.
            Self.expectEveryCallHasItsRow(o, match: ["event_type": "accept"], key: "sport")
        }
    }

    @Test func moreThreadsInPtraceThanTheOldMapHeldEachHaveTheirRow() throws {
        let count = 8_600  // the LRU held 8,192; as many traced threads again
        let o = try Self.traceBlocked(plugin: "ptrace", mode: "ptrace", count: count)
        #expect(o.calls.values.allSatisfy { $0 == 0 }, "\(Set(o.calls.values))")
        Self.expectEveryCallHasItsRow(o, match: ["request_name": "PTRACE_GETREGSET"], key: "target_pid")
    }

    @Test func moreThreadsInExecveThanTheOldMapHeldEachHaveTheirRow() throws {
        let count = 4_300  // the LRU held 4,096
        let dir = try makeTempDir(prefix: "inflight-exec")
        let o = try Self.traceBlocked(plugin: "tracing", mode: "exec", count: count, argument: "\(dir)/missing/e")
        #expect(o.calls.values.allSatisfy { $0 == -Int64(ENOENT) }, "\(Set(o.calls.values))")
        // The path was not readable at enter (its page was missing): it is read at exit.
        Self.expectEveryCallHasItsRow(o, match: ["event_type": "execve"], key: "filename")
        let row = try #require(o.rows.first { $0["filename"] as? String == "\(dir)/missing/e0" })
        #expect(row["argv"] as? String == "inflight-exec")
        #expect(row["comm"] as? String == Self.helper.comm)
    }

    @Test func moreThreadsInMountThanTheOldMapHeldEachHaveTheirRow() throws {
        let count = 4_300  // the LRU held 4,096
        let dir = try makeTempDir(prefix: "inflight-mount")
        let o = try Self.traceBlocked(plugin: "mount", mode: "mount", count: count, argument: "\(dir)/missing")
        #expect(o.calls.values.allSatisfy { $0 == -Int64(ENOENT) }, "\(Set(o.calls.values))")
        Self.expectEveryCallHasItsRow(o, match: ["event_type": "mount", "dir_name": "\(dir)/missing"], key: "dev_name")
        let row = try #require(o.rows.first { $0["dev_name"] as? String == "inflight-0" })
        #expect(row["type"] as? String == "tmpfs")
    }
}
