import Foundation
import Glibc
import InfraSightTestSupport

/// What the detection suites run: a static helper under a comm of its own (so a trace
/// restricted to it sees no other suite's processes), loopback listeners for it to
/// connect to, `infrasight run` with rules, and the alerts it prints.
struct DetectionWorkload {
    let dir: String
    /// The helper's path and comm (`dt` + 8 hex digits).
    let helper: String
    let comm: String

    /// The helper's modes:
    ///   open PATH N            opens PATH for reading N times
    ///   connect PORT           one TCP connect to 127.0.0.1:PORT
    ///   exec PATH ARG...       execs PATH (so the exec is traced under the helper's comm)
    ///   learn PORT             connect PORT, run /usr/bin/cat /etc/motd, then exec /usr/bin/sleep 600
    static let source = """
        #include <arpa/inet.h>
        #include <errno.h>
        #include <fcntl.h>
        #include <stdio.h>
        #include <netinet/in.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/socket.h>
        #include <sys/wait.h>
        #include <unistd.h>
        static int connect_to(int port) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a;
            memset(&a, 0, sizeof a);
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            int rc = connect(s, (struct sockaddr *)&a, sizeof a);
            if (rc) fprintf(stderr, "connect 127.0.0.1:%d: %s (errno %d)\\n", port, strerror(errno), errno);
            close(s);
            return rc == 0 ? 0 : 3;
        }
        int main(int argc, char **argv) {
            if (argc >= 4 && !strcmp(argv[1], "open")) {
                long n = atol(argv[3]);
                for (long i = 0; i < n; i++) { int fd = open(argv[2], O_RDONLY); if (fd >= 0) close(fd); }
                return 0;
            }
            if (argc >= 3 && !strcmp(argv[1], "connect")) return connect_to(atoi(argv[2]));
            if (argc >= 3 && !strcmp(argv[1], "exec")) {
                execv(argv[2], argv + 2);
                fprintf(stderr, "execv %s: %s (errno %d)\\n", argv[2], strerror(errno), errno);
                return 127;
            }
            if (argc >= 3 && !strcmp(argv[1], "learn")) {
                if (connect_to(atoi(argv[2])) != 0) return 3;
                pid_t child = fork();
                if (child == 0) { execl("/usr/bin/cat", "cat", "/etc/motd", (char *)0); perror("execl /usr/bin/cat"); _exit(127); }
                int status;
                waitpid(child, &status, 0);
                execl("/usr/bin/sleep", "sleep", "600", (char *)0);
                perror("execl /usr/bin/sleep");
                return 127;
            }
            return 2;
        }
        """

    init() throws {
        dir = try makeTempDir(prefix: "detect")
        comm = uniqueComm("dt")
        helper = "\(dir)/\(comm)"
        try compileC(Self.source, to: helper, flags: ["-O2", "-static"])
    }

    /// Runs the helper with `arguments` to completion; returns its pid.
    @discardableResult
    func run(_ arguments: [String]) throws -> Int32 {
        let p = try BackgroundProcess(helper, arguments)
        let r = p.wait()
        guard r.status == 0 else { throw TestFailure("\(comm) \(arguments.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
        return p.pid
    }

    /// A config tracing only the helper (and, with `containers`, runc's init, which execs a
    /// container's processes) with `plugins`, the node named `node`, and `rules` lines.
    func config(node: String, plugins: [String] = ["tracing"], containers: Bool = false, rules: String = "") throws -> String {
        let comms = containers ? "[\"runc:[2:INIT]\", \(comm)]" : "[\(comm)]"
        let path = "\(dir)/infrasight-\(UUID().uuidString.prefix(8)).yaml"
        try """
            node_name: \(node)
            plugins:
              enabled: [\(plugins.joined(separator: ", "))]
              options:
            \(plugins.map { "    \($0): {include_comms: \(comms)}" }.joined(separator: "\n"))
            \(rules)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `infrasight run ARGUMENTS`, started (its probes attached).
    static func start(_ arguments: [String]) throws -> BackgroundProcess {
        let p = try BackgroundProcess(Paths.infrasight, ["run"] + arguments)
        try p.waitForStderr("infrasight: note: started: ", timeout: 120)
        return p
    }

    /// The alerts among JSON lines (stdout of `--alerts-stdout`, or an alerts file).
    static func alerts(_ text: String) throws -> [[String: Any]] {
        try jsonLines(text).filter { $0["rule"] != nil }
    }

    /// Waits until `process`'s stdout holds `count` alerts matching `filter`; returns them.
    static func waitForAlerts(_ process: BackgroundProcess, count: Int, timeout: Double = 30,
                              _ filter: ([String: Any]) -> Bool = { _ in true }) throws -> [[String: Any]] {
        var found: [[String: Any]] = []
        do {
            try waitUntil("\(count) alerts", timeout: timeout) {
                found = try alerts(process.stdout).filter(filter)
                return found.count >= count
            }
        } catch {
            throw TestFailure("\(error); \(found.count) alerts: \(found); stderr: \(process.stderr)")
        }
        return found
    }

    /// A listening TCP socket on 127.0.0.1 (its backlog completes connects; nothing is
    /// accepted) and its port.
    static func listener() throws -> (fd: Int32, port: Int) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) == 0 && listen(s, 64) == 0 && getsockname(s, $0, &len) == 0 }
        }
        guard ok else { throw TestFailure("cannot listen on 127.0.0.1: \(String(cString: strerror(errno)))") }
        return (s, Int(UInt16(bigEndian: a.sin_port)))
    }

    /// A port on 127.0.0.1 nothing listens on (bound, then closed).
    static func closedPort() throws -> Int {
        let (fd, port) = try listener()
        close(fd)
        return port
    }

    /// The value of one sample of a /metrics page (nil when absent).
    static func sample(_ metrics: String, _ name: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.dropFirst(name.count + 1)) }
    }

    static func metrics(_ port: Int) throws -> String {
        let r = try InfraSightTestSupport.run("/usr/bin/curl", ["-s", "-m", "5", "http://127.0.0.1:\(port)/metrics"])
        guard r.status == 0 else { throw TestFailure("GET /metrics on \(port): \(r.stderr)") }
        return r.stdout
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 for webhooks: it records each request and answers
/// `statuses[i]` to the i-th (200 after the list), or 307 to `redirectTo` for every
/// request when that is set, closing each connection after one request.
final class WebhookReceiver: @unchecked Sendable {
    struct Request {
        let method: String
        let path: String
        let headers: [String: String]
        let body: Data
        let status: Int
    }

    let port: Int
    private let fd: Int32
    private let statuses: [Int]
    private let redirectTo: String?
    private let lock = NSLock()
    private var received: [Request] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(statuses: [Int], redirectTo: String? = nil) throws {
        (fd, port) = try DetectionWorkload.listener()
        self.statuses = statuses
        self.redirectTo = redirectTo
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    var requests: [Request] { lock.withLock { received } }

    func stop() {
        lock.withLock { stopped = true }
        shutdown(fd, Int32(SHUT_RDWR))
        done.wait()
        close(fd)
    }

    private func serve() {
        defer { done.signal() }
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            if lock.withLock({ stopped }) {
                close(c)
                return
            }
            handle(c)
            close(c)
        }
    }

    private func handle(_ c: Int32) {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var head: String?
        var bodyStart = 0
        var length = 0
        while true {
            let n = read(c, &buffer, buffer.count)
            if n <= 0 { return }
            data.append(contentsOf: buffer[0..<n])
            if head == nil, let end = data.range(of: Data("\r\n\r\n".utf8)) {
                head = String(decoding: data[..<end.lowerBound], as: UTF8.self)
                bodyStart = end.upperBound
                for line in head!.split(separator: "\r\n").dropFirst() where line.lowercased().hasPrefix("content-length:") {
                    length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            if head != nil && data.count - bodyStart >= length { break }
        }
        let lines = head!.split(separator: "\r\n")
        let first = lines[0].split(separator: " ")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let status = lock.withLock { () -> Int in
            let s = redirectTo != nil ? 307 : received.count < statuses.count ? statuses[received.count] : 200
            received.append(Request(method: String(first[0]), path: String(first.count > 1 ? first[1] : ""), headers: headers,
                                    body: data.subdata(in: bodyStart..<(bodyStart + length)), status: s))
            return s
        }
        let reason = status == 200 ? "OK" : status == 307 ? "Temporary Redirect" : "Internal Server Error"
        let location = redirectTo.map { "Location: \($0)\r\n" } ?? ""
        let answer = "HTTP/1.1 \(status) \(reason)\r\n\(location)Content-Length: 0\r\nConnection: close\r\n\r\n"
        _ = answer.withCString { write(c, $0, strlen($0)) }
    }
}
