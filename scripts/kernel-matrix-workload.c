/*
 * The kernel matrix's workload (scripts/kernel-matrix.sh): every first-party plugin's
 * system calls, each a known number of times with a marker of this run, made through
 * syscall(2) so that the C library cannot pick another call (glibc's open() is openat,
 * its chmod() may be fchmodat). It prints what it did and what the kernel answered, one
 * `key=value` a line, for the matrix to compare with the tracer's rows.
 *
 *   kernel-matrix-workload MARKER DIR OPENS EXECS CHMODS CONNECTS
 *
 * MARKER names every file, mount and argument of this run; DIR is a writable directory.
 * Exits 0 when every call that must succeed did (fchmodat2 may be ENOSYS: before 6.6).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

struct how { uint64_t flags, mode, resolve; }; /* struct open_how */

static int failed;

#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (!(cond)) {                                         \
            fprintf(stderr, "workload: " __VA_ARGS__);         \
            fprintf(stderr, " (errno %d)\n", errno);           \
            failed = 1;                                        \
        }                                                      \
    } while (0)

static long sys_ret(long r) { return r < 0 ? -errno : r; }

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &n);
    return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s MARKER DIR OPENS EXECS CHMODS CONNECTS\n", argv[0]);
        return 2;
    }
    const char *marker = argv[1], *dir = argv[2];
    int opens = atoi(argv[3]), execs = atoi(argv[4]), chmods = atoi(argv[5]), connects = atoi(argv[6]);
    char file[512], missing[512], mapfile[512], iofile[512], mnt[512], nomnt[512], badexec[512];
    snprintf(file, sizeof file, "%s/%s-file", dir, marker);
    snprintf(missing, sizeof missing, "%s/%s-missing", dir, marker);
    snprintf(mapfile, sizeof mapfile, "%s/%s-map", dir, marker);
    snprintf(iofile, sizeof iofile, "%s/%s-io", dir, marker);
    snprintf(mnt, sizeof mnt, "%s/%s-mnt", dir, marker);
    snprintf(nomnt, sizeof nomnt, "/nonexistent-%s", marker);
    snprintf(badexec, sizeof badexec, "/nonexistent-%s-exec", marker);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("pid=%d\n", getpid());
    printf("file=%s\nmissing=%s\nmnt=%s\nnomnt=%s\nbadexec=%s\n", file, missing, mnt, nomnt, badexec);

    /* tracing: open family */
    long fd = syscall(SYS_creat, file, 0644);
    CHECK(fd >= 0, "creat %s", file);
    printf("creat=%ld\n", sys_ret(fd));
    close(fd);
    int ok = 0;
    long last = -1;
    for (int i = 0; i < opens; i++) {
        fd = syscall(SYS_openat, AT_FDCWD, file, O_RDONLY);
        if (fd >= 0) {
            ok++;
            last = fd;
            close(fd);
        }
    }
    CHECK(ok == opens, "openat: %d of %d", ok, opens);
    printf("openat_ok=%d\nopenat_fd=%ld\n", ok, last);
    struct how how = {O_RDONLY, 0, 0};
    fd = syscall(SYS_openat2, AT_FDCWD, file, &how, sizeof how);
    printf("openat2=%ld\n", sys_ret(fd));
    if (fd >= 0)
        close(fd);
    fd = syscall(SYS_openat, AT_FDCWD, missing, O_RDONLY);
    CHECK(fd < 0 && errno == ENOENT, "openat of a missing file");
    printf("missing_ret=%ld\n", sys_ret(fd));

    /* tracing: chmod family */
    int cfd = syscall(SYS_open, file, O_RDONLY); /* the legacy open(2), once */
    CHECK(cfd >= 0, "open %s", file);
    printf("open_ret=%d\nfchmod_fd=%d\n", cfd, cfd);
    int n_chmod = 0, n_fchmodat = 0, n_fchmod = 0, n_fchmodat2 = 0;
    long fchmodat2_ret = 0;
    for (int i = 0; i < chmods; i++) {
        n_chmod += syscall(SYS_chmod, file, 0600) == 0;
        n_fchmodat += syscall(SYS_fchmodat, AT_FDCWD, file, 0640) == 0;
        n_fchmod += syscall(SYS_fchmod, cfd, 0644) == 0;
        long r = syscall(SYS_fchmodat2, AT_FDCWD, file, 0604, 0);
        n_fchmodat2 += r == 0;
        fchmodat2_ret = sys_ret(r);
    }
    close(cfd);
    CHECK(n_chmod == chmods && n_fchmodat == chmods && n_fchmod == chmods, "chmod family");
    CHECK(n_fchmodat2 == chmods || fchmodat2_ret == -ENOSYS, "fchmodat2");
    printf("chmod_ok=%d\nfchmodat_ok=%d\nfchmod_ok=%d\nfchmodat2_ok=%d\nfchmodat2_ret=%ld\n",
           n_chmod, n_fchmodat, n_fchmod, n_fchmodat2, fchmodat2_ret);

    /* tracing: execs, each with the marker in its argv; then one of a missing program */
    int exec_ok = 0;
    for (int i = 0; i < execs; i++) {
        char arg[256];
        snprintf(arg, sizeof arg, "%s-exec-%d", marker, i);
        pid_t child = fork();
        if (child == 0) {
            char *args[] = {"/bin/true", arg, NULL};
            execv(args[0], args);
            _exit(127);
        }
        int status = 0;
        waitpid(child, &status, 0);
        exec_ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    CHECK(exec_ok == execs, "execs: %d of %d", exec_ok, execs);
    printf("exec_ok=%d\n", exec_ok);
    pid_t bad = fork();
    if (bad == 0) {
        char *args[] = {badexec, NULL};
        execv(args[0], args);
        _exit(errno == ENOENT ? 0 : 1);
    }
    int bstatus = 0;
    waitpid(bad, &bstatus, 0);
    CHECK(WIFEXITED(bstatus) && WEXITSTATUS(bstatus) == 0, "exec of a missing program");
    printf("badexec_pid=%d\n", bad);

    /* network: connects to a loopback listener, accepted by accept and accept4 in turn,
     * then one connect to a port nobody listens on */
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    CHECK(bind(listener, (struct sockaddr *)&a, sizeof a) == 0 && listen(listener, 64) == 0, "listen");
    int port = port_of(listener);
    printf("port=%d\nclient_ports=", port);
    int n_connect = 0, n_accept = 0, n_accept4 = 0;
    long accept_fd = -1;
    for (int i = 0; i < connects; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in to = loopback(port);
        n_connect += syscall(SYS_connect, c, &to, sizeof to) == 0;
        printf("%s%d", i ? "," : "", port_of(c));
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        long s = i % 2 ? syscall(SYS_accept4, listener, &peer, &plen, 0) : syscall(SYS_accept, listener, &peer, &plen);
        if (s >= 0) {
            if (i % 2)
                n_accept4++;
            else
                n_accept++;
            accept_fd = s;
            close(s);
        }
        close(c);
    }
    printf("\n");
    CHECK(n_connect == connects && n_accept + n_accept4 == connects, "connects %d, accepts %d+%d of %d", n_connect, n_accept, n_accept4, connects);
    printf("connect_ok=%d\naccept_ok=%d\naccept4_ok=%d\naccept_fd=%ld\n", n_connect, n_accept, n_accept4, accept_fd);
    int spare = socket(AF_INET, SOCK_STREAM, 0);
    a = loopback(0);
    bind(spare, (struct sockaddr *)&a, sizeof a);
    int closed_port = port_of(spare);
    close(spare);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = loopback(closed_port);
    long r = syscall(SYS_connect, c, &to, sizeof to);
    CHECK(r < 0 && errno == ECONNREFUSED, "connect to a closed port");
    printf("closed_port=%d\nrefused_ret=%ld\n", closed_port, sys_ret(r));
    close(c);
    close(listener);

    /* ptrace: attach to a child, one request the kernel does not know (EIO), detach */
    pid_t tracee = fork();
    if (tracee == 0) {
        pause();
        _exit(0);
    }
    long att = ptrace(PTRACE_ATTACH, tracee, 0, 0);
    CHECK(att == 0, "PTRACE_ATTACH");
    waitpid(tracee, NULL, __WALL);
    long unk = ptrace((enum __ptrace_request)0x7777, tracee, 0, 0);
    printf("ptrace_unknown_ret=%ld\n", sys_ret(unk));
    long det = ptrace(PTRACE_DETACH, tracee, 0, 0);
    CHECK(det == 0, "PTRACE_DETACH");
    kill(tracee, SIGKILL);
    waitpid(tracee, NULL, 0);
    printf("tracee=%d\n", tracee);

    /* mmap: an anonymous mapping and a file-backed one, both 1234567 bytes long */
    int mfd = open(mapfile, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(mfd >= 0 && ftruncate(mfd, 2 << 20) == 0, "map file");
    void *anon = mmap(0, 1234567, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *backed = mmap(0, 1234567, PROT_READ, MAP_SHARED, mfd, 4096);
    CHECK(anon != MAP_FAILED && backed != MAP_FAILED, "mmap");
    printf("map_anon=%lu\nmap_file=%lu\nmap_fd=%d\n", (unsigned long)anon, (unsigned long)backed, mfd);

    /* mount: a tmpfs mounted and detached, and a mount on a missing directory (ENOENT) */
    CHECK(mkdir(mnt, 0700) == 0, "mkdir %s", mnt);
    char dev[256];
    snprintf(dev, sizeof dev, "%s-tmpfs", marker);
    printf("mount_dev=%s\n", dev);
    CHECK(mount(dev, mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") == 0, "mount");
    CHECK(umount2(mnt, MNT_DETACH) == 0, "umount2");
    r = mount("none", nomnt, "tmpfs", 0, 0);
    CHECK(r < 0 && errno == ENOENT, "mount on a missing directory");
    printf("nomount_ret=%ld\n", sys_ret(r));

    /* resource: 8 MiB written, then 1.5 s of CPU (longer than the 1 s interval) */
    int io = open(iofile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *block = malloc(1 << 20);
    memset(block, 7, 1 << 20);
    int written = 0;
    for (int i = 0; i < 8; i++)
        written += write(io, block, 1 << 20) == 1 << 20;
    close(io);
    CHECK(written == 8, "write");
    volatile unsigned long x = 0;
    double end = cpu_now() + 1.5;
    while (cpu_now() < end)
        x++;
    printf("done=%d\n", !failed);
    return failed;
}
