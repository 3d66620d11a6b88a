import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// One traced run that every catalog query and dashboard panel can see: a shell with a
/// name of its own runs a helper with a name of its own, which opens a file under a
/// "sensitive" directory, fails to open a missing one, makes a file setuid, connects to a
/// loopback listener and to a closed port, and maps memory writable and executable.
/// Stored by the real `infrasight run` in `data`, on a node named for this run only.
struct CatalogWorkload {
    let data: String
    let node: String
    let shellPid: Int64
    let shellComm: String
    let helperPid: Int64
    let helperComm: String
    let helperPath: String
    let sensitiveDir: String
    let secret: String
    let missing: String
    let setuidFile: String
    let openPort: Int
    let closedPort: Int
    /// An argument of the helper's, for `search`: quotes and a backslash.
    static let oddArgument = #"a'b\c"#
    /// The run's time range, with a margin, as the catalog's parameters take it.
    let from: Double
    let to: Double

    /// The helper: argv[1] opened, argv[2] opened (missing), argv[3] chmod 04755, then a
    /// connect to its own listener and one to a port just closed, then a W+X mapping;
    /// writes `pid open-port closed-port connect-result refused-result` to argv[4].
    static let helperSource = """
        #include <arpa/inet.h>
        #include <fcntl.h>
        #include <netinet/in.h>
        #include <stdio.h>
        #include <sys/mman.h>
        #include <sys/socket.h>
        #include <sys/stat.h>
        #include <unistd.h>

        static int loopback_socket(int port) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {0};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(port);
            if (port == 0) bind(fd, (struct sockaddr *)&a, sizeof a);
            return fd;
        }
        static int port_of(int fd) {
            struct sockaddr_in a;
            socklen_t n = sizeof a;
            getsockname(fd, (struct sockaddr *)&a, &n);
            return ntohs(a.sin_port);
        }
        static int dial(int port) {
            int fd = loopback_socket(port);
            struct sockaddr_in a = {0};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(port);
            int r = connect(fd, (struct sockaddr *)&a, sizeof a);
            close(fd);
            return r;
        }
        int main(int argc, char **argv) {
            if (argc < 5) return 2;
            int listener = loopback_socket(0);
            listen(listener, 4);
            int open_port = port_of(listener);
            int spare = loopback_socket(0);
            int closed_port = port_of(spare);
            close(spare);
            int fd = open(argv[1], O_RDONLY);
            if (fd >= 0) close(fd);
            fd = open(argv[2], O_RDONLY);
            if (fd >= 0) close(fd);
            chmod(argv[3], 04755);
            int ok = dial(open_port);
            int refused = dial(closed_port);
            void *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            FILE *out = fopen(argv[4], "w");
            fprintf(out, "%d %d %d %d %d\\n", getpid(), open_port, closed_port, ok, refused);
            fclose(out);
            return p == MAP_FAILED;
        }
        """

    /// Runs `infrasight run` around the workload and returns what it did; `run` has exited
    /// (the store is closed) when this returns.
    static func record() throws -> CatalogWorkload {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let work = try makeTempDir(prefix: "catalogwork")
        let data = try makeTempDir(prefix: "catalogdata")
        let helperComm = "ch" + tag, shellComm = "cs" + tag
        let helperPath = "\(work)/\(helperComm)", shellPath = "\(work)/\(shellComm)"
        try compileC(helperSource, to: helperPath, flags: ["-O2", "-static"])
        // /bin/sh is a link (to dash): the program itself, under a name of its own.
        try copyExecutable(URL(fileURLWithPath: "/bin/sh").resolvingSymlinksInPath().path, to: shellPath)
        let sensitiveDir = "\(work)/sensitive"
        try FileManager.default.createDirectory(atPath: sensitiveDir, withIntermediateDirectories: true)
        let secret = "\(sensitiveDir)/key", setuidFile = "\(work)/tool", missing = "\(work)/missing"
        try "k\n".write(toFile: secret, atomically: true, encoding: .utf8)
        try "t\n".write(toFile: setuidFile, atomically: true, encoding: .utf8)
        let node = "catalog-" + tag
        // Only the workload's two commands are traced: other suites load the host meanwhile.
        let config = "\(work)/infrasight.yaml"
        let filter = "{include_comms: [\(shellComm), \(helperComm)]}"
        try """
            node_name: \(node)
            plugins:
              options:
                tracing: \(filter)
                network: \(filter)
                mmap: \(filter)
                ptrace: \(filter)
                mount: \(filter)
                resource: \(filter)
            """.write(toFile: config, atomically: true, encoding: .utf8)

        let from = Date().timeIntervalSince1970 - 5
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--data-dir", data, "--config", config])
        try agent.waitForStderr("infrasight: note: started: ")
        let result = "\(work)/result"
        // `; exit 0` keeps the shell from exec'ing the helper in its own process.
        let script = [helperPath, secret, missing, setuidFile, result, oddArgument].map(shellQuoted).joined(separator: " ") + "; exit 0"
        let shellPid = try spawnAndWait(shellPath, ["-c", script])
        // Stored rows reach the store within the batch interval; give it time, then stop.
        usleep(1_000_000)
        agent.signal(SIGTERM)
        let r = try agent.wait(timeout: 180)
        guard r.status == 0 else { throw TestFailure("infrasight run failed (\(r.status)): \(r.stderr)") }
        let to = Date().timeIntervalSince1970 + 5
        let numbers = try String(contentsOfFile: result, encoding: .utf8).split(separator: " ").map { Int(String($0).trimmingCharacters(in: .whitespacesAndNewlines))! }
        guard numbers.count == 5, numbers[3] == 0, numbers[4] == -1 else { throw TestFailure("helper: \(numbers)") }
        return CatalogWorkload(
            data: data, node: node, shellPid: Int64(shellPid), shellComm: shellComm, helperPid: Int64(numbers[0]), helperComm: helperComm,
            helperPath: helperPath, sensitiveDir: sensitiveDir, secret: secret, missing: missing, setuidFile: setuidFile,
            openPort: numbers[1], closedPort: numbers[2], from: from, to: to)
    }

    static func shellQuoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: #"'\''"#) + "'" }
}
