import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The network plugin on real sockets: loopback (IPv4, IPv6), two network namespaces
/// joined by a veth pair, a refused connect, and reverse DNS from a real DNS server.
@Suite(.serialized) struct NetworkTests {
    /// `nettool server ADDR` listens on an ephemeral port, prints it, accepts one
    /// connection and prints the peer's port; `nettool client ADDR PORT` connects and
    /// prints its local port, or exits with the errno. `nettool nbclient ADDR PORT`
    /// connects without blocking, waits for the outcome and prints `connect's errno,
    /// SO_ERROR, local port`; with a fourth argument N it sleeps N s instead of waiting.
    static let nettool: String = {
        let dir = try! makeTempDir(prefix: "nettool")
        try! compileC("""
            #include <arpa/inet.h>
            #include <errno.h>
            #include <fcntl.h>
            #include <netinet/in.h>
            #include <poll.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <sys/socket.h>
            #include <unistd.h>
            static int make(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len) {
                memset(ss, 0, sizeof(*ss));
                if (strchr(addr, ':')) {
                    struct sockaddr_in6 *s = (void *)ss; s->sin6_family = AF_INET6; s->sin6_port = htons(port);
                    inet_pton(AF_INET6, addr, &s->sin6_addr); *len = sizeof(*s); return AF_INET6;
                }
                struct sockaddr_in *s = (void *)ss; s->sin_family = AF_INET; s->sin_port = htons(port);
                inet_pton(AF_INET, addr, &s->sin_addr); *len = sizeof(*s); return AF_INET;
            }
            static int port_of(struct sockaddr_storage *ss) {
                return ntohs(ss->ss_family == AF_INET6 ? ((struct sockaddr_in6 *)ss)->sin6_port : ((struct sockaddr_in *)ss)->sin_port);
            }
            int main(int argc, char **argv) {
                struct sockaddr_storage ss; socklen_t len;
                int family = make(argv[2], argc > 3 ? atoi(argv[3]) : 0, &ss, &len);
                int fd = socket(family, SOCK_STREAM, 0);
                if (!strcmp(argv[1], "server")) {
                    int one = 1; setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                    if (bind(fd, (void *)&ss, len) || listen(fd, 4)) return 1;
                    getsockname(fd, (void *)&ss, &len);
                    printf("%d\\n", port_of(&ss)); fflush(stdout);
                    int n = argc > 4 ? atoi(argv[4]) : 1;
                    for (int i = 0; i < n; i++) {
                        struct sockaddr_storage peer; socklen_t plen = sizeof(peer);
                        int c = accept(fd, (void *)&peer, &plen);
                        if (c < 0) return 2;
                        printf("%d %d\\n", c, port_of(&peer)); fflush(stdout);
                        close(c);
                    }
                    return 0;
                }
                if (!strcmp(argv[1], "nbclient")) {
                    fcntl(fd, F_SETFL, O_NONBLOCK);
                    int cerr = connect(fd, (void *)&ss, len) ? errno : 0;
                    if (argc > 4) { sleep(atoi(argv[4])); return 0; }
                    struct pollfd p = {fd, POLLOUT, 0};
                    poll(&p, 1, 10000);
                    int soerr = 0; socklen_t sl = sizeof(soerr);
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                    getsockname(fd, (void *)&ss, &len);
                    printf("%d %d %d\\n", cerr, soerr, port_of(&ss));
                    return 0;
                }
                if (connect(fd, (void *)&ss, len)) return errno;
                getsockname(fd, (void *)&ss, &len);
                printf("%d %d\\n", fd, port_of(&ss));
                return 0;
            }
            """, to: "\(dir)/nettool", flags: ["-O1"])
        return "\(dir)/nettool"
    }()

    /// Starts `infrasight trace --plugins network` with `options` for the plugin, filtered
    /// in the kernel to nettool: unfiltered, the ring buffer is the host's, and another
    /// suite's burst (InflightJoinTests' 17,200 connects and as many accepts) can fill it
    /// and lose the rows asked for (counted as kernel drops).
    static func startTrace(options: String = "") throws -> BackgroundProcess {
        let dir = try makeTempDir(prefix: "cfg")
        try "plugins:\n  options:\n    network:\n      resolve_domains: true\n      include_comms: [nettool]\n\(options)".write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        let trace = try BackgroundProcess(Paths.infrasight, ["trace", "--plugins", "network", "--config", "\(dir)/c.yaml"])
        try trace.waitForStderr("infrasight: note: started: network")
        return trace
    }

    static func stop(_ trace: BackgroundProcess) throws -> [[String: Any]] {
        let r = try trace.interrupt(after: 0.3, timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("decode errors 0"))
        return try jsonLines(r.stdout)
    }

    /// `nettool ARGUMENTS`, inside `netns` if given.
    static func runNettool(_ arguments: [String], netns: String?) throws -> BackgroundProcess {
        try netns.map { try BackgroundProcess("/usr/sbin/ip", ["netns", "exec", $0, nettool] + arguments) } ?? BackgroundProcess(nettool, arguments)
    }

    /// `nettool server ADDR` (inside `netns` if given), accepting one connection, and the
    /// port it listens on.
    static func startServer(_ addr: String, netns: String?) throws -> (process: BackgroundProcess, port: Int) {
        let srv = try runNettool(["server", addr], netns: netns)
        var port = 0
        let deadline = Date().addingTimeInterval(10)
        while port == 0 && Date() < deadline {
            port = Int(srv.stdout.split(separator: "\n").first ?? "") ?? 0
            usleep(20_000)
        }
        guard port > 0 else { throw TestFailure("server did not start: \(srv.stderr)") }
        return (srv, port)
    }

    /// Runs a server (optionally inside a namespace) and a client against it; returns the
    /// server's pid and port, the client's pid and local port.
    static func connection(server: String, client: String, serverNetns: String? = nil, clientNetns: String? = nil)
        throws -> (serverPid: Int32, port: Int, clientPid: Int32, clientPort: Int)
    {
        let (srv, port) = try startServer(server, netns: serverNetns)
        let cli = try runNettool(["client", server, String(port)], netns: clientNetns)
        let c = cli.wait()
        guard c.status == 0 else { throw TestFailure("client failed with errno \(c.status): \(c.stderr)") }
        _ = srv.wait()
        let clientPort = Int(c.stdout.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
        return (srv.pid, port, cli.pid, clientPort)
    }

    static func check(_ rows: [[String: Any]], _ c: (serverPid: Int32, port: Int, clientPid: Int32, clientPort: Int),
                      family: String, client: String, server: String) {
        let v = family == "AF_INET" ? "ipv4" : "ipv6"
        let connect = rows.first { int($0, "pid") == Int64(c.clientPid) && $0["event_type"] as? String == "connect" && $0["sa_family"] as? String == family }
        let accept = rows.first { int($0, "pid") == Int64(c.serverPid) && ($0["event_type"] as? String)?.hasPrefix("accept") == true }
        #expect(connect != nil && accept != nil, "\(rows.filter { $0["sa_family"] as? String != "AF_UNIX" })")
        for row in [connect, accept].compactMap({ $0 }) {
            // Both rows of the connection: source = the client, destination = the server.
            #expect(row["saddr_\(v)"] as? String == client)
            #expect(row["sport"] as? String == String(c.clientPort))
            #expect(row["daddr_\(v)"] as? String == server)
            #expect(row["dport"] as? String == String(c.port))
            #expect(row["saddr_\(v == "ipv4" ? "ipv6" : "ipv4")"] as? String == "")
            #expect(row["protocol"] as? String == "tcp")
            #expect(row["comm"] as? String == "nettool")
            #expect((int(row, "latency_ns") ?? 0) > 0)
        }
        #expect(connect.flatMap { int($0, "return_code") } == 0)
        #expect((accept.flatMap { int($0, "return_code") } ?? -1) >= 3) // the new descriptor
    }

    @Test func loopbackIPv4AndIPv6ConnectAndAcceptHaveTheSameFourTuple() throws {
        let trace = try Self.startTrace()
        let v4 = try Self.connection(server: "127.0.0.1", client: "127.0.0.1")
        let v6 = try Self.connection(server: "::1", client: "::1")
        let rows = try Self.stop(trace)
        Self.check(rows, v4, family: "AF_INET", client: "127.0.0.1", server: "127.0.0.1")
        Self.check(rows, v6, family: "AF_INET6", client: "::1", server: "::1")
        // Loopback is private: never looked up.
        #expect(rows.filter { int($0, "pid") == Int64(v4.clientPid) }.allSatisfy { $0["resolved_domain"] is NSNull })
    }

    @Test func aRefusedConnectHasItsNegativeErrno() throws {
        // A port nobody listens on: bind one, note it, close it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: sin.sin_port))
        close(fd)
        let trace = try Self.startTrace()
        let cli = try BackgroundProcess(Self.nettool, ["client", "127.0.0.1", String(port)])
        #expect(cli.wait().status == ECONNREFUSED)
        let rows = try Self.stop(trace)
        let row = try #require(rows.first { int($0, "pid") == Int64(cli.pid) && $0["event_type"] as? String == "connect" })
        #expect(int(row, "return_code") == -Int64(ECONNREFUSED))
        #expect(row["daddr_ipv4"] as? String == "127.0.0.1")
        #expect(row["dport"] as? String == String(port))
    }

    /// Two namespaces, client `a` and server `b`, joined by a veth pair, with documentation
    /// addresses (TEST-NET-2) that exist only inside them; removed after `body`.
    static func withNamespacePair(_ body: (_ a: String, _ b: String, _ client: String, _ server: String) throws -> Void) throws {
        let tag = String(getpid() % 100_000)
        let (a, b) = ("isa\(tag)", "isb\(tag)")
        let (client, server) = ("198.51.100.1", "198.51.100.2")
        try ip("netns add \(a)")
        try ip("netns add \(b)")
        defer {
            _ = try? run("/usr/sbin/ip", ["netns", "del", a])
            _ = try? run("/usr/sbin/ip", ["netns", "del", b])
        }
        try ip("link add va\(tag) type veth peer name vb\(tag)")
        try ip("link set va\(tag) netns \(a)")
        try ip("link set vb\(tag) netns \(b)")
        try ip("-n \(a) addr add \(client)/24 dev va\(tag)")
        try ip("-n \(b) addr add \(server)/24 dev vb\(tag)")
        try ip("-n \(a) link set va\(tag) up")
        try ip("-n \(b) link set vb\(tag) up")
        try ip("-n \(a) link set lo up")
        try ip("-n \(b) link set lo up")
        try body(a, b, client, server)
    }

    /// dnsmasq answers PTR for the server's address.
    @Test func betweenNetworkNamespacesWithReverseDNS() throws {
        try Self.withNamespacePair { a, b, client, server in try Self.reverseDNS(a, b, client, server) }
    }

    static func reverseDNS(_ a: String, _ b: String, _ client: String, _ server: String) throws {
        let dir = try makeTempDir(prefix: "dns")
        try "\(server) server.infrasight.test\n".write(toFile: "\(dir)/hosts", atomically: true, encoding: .utf8)
        try "".write(toFile: "\(dir)/dnsmasq.conf", atomically: true, encoding: .utf8)
        // A loopback address of this test's own (127/8 is all loopback): no other DNS server
        // or leftover answers in its place.
        let octets = [127, Int.random(in: 1...254), Int.random(in: 1...254), Int.random(in: 2...254)]
        let address = octets.map(String.init).joined(separator: ".")
        let procNetUDP = octets.reversed().map { String(format: "%02X", $0) }.joined() + ":0035"
        let dnsmasq = try BackgroundProcess("/usr/sbin/dnsmasq", [
            "--keep-in-foreground", "--conf-file=\(dir)/dnsmasq.conf", "--listen-address=\(address)", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--addn-hosts=\(dir)/hosts", "--local=/in-addr.arpa/", "--local=/ip6.arpa/",
            "--pid-file=\(dir)/pid",
        ])
        defer {
            dnsmasq.signal(SIGTERM)
            _ = dnsmasq.wait()
        }
        // dnsmasq must answer before the first lookup: a refused query would be a (short-lived)
        // failure in the resolver's cache and the test would see no name.
        try waitUntil("dnsmasq listens on \(address):53 (\(dnsmasq.stderr))", timeout: 10) {
            ((try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8)) ?? "").contains(" \(procNetUDP) ")
        }

        let trace = try Self.startTrace(options: "      dns_server: \(address)\n      dns_timeout_ms: 2000\n")
        let first = try Self.connection(server: server, client: client, serverNetns: b, clientNetns: a)
        // The first connection to a new address is stored before its lookup finishes;
        // the next one finds the name in the cache.
        sleep(1)
        let second = try Self.connection(server: server, client: client, serverNetns: b, clientNetns: a)
        let rows = try Self.stop(trace)
        Self.check(rows, first, family: "AF_INET", client: client, server: server)
        Self.check(rows, second, family: "AF_INET", client: client, server: server)
        let connect = try #require(rows.first { int($0, "pid") == Int64(second.clientPid) && $0["event_type"] as? String == "connect" })
        #expect(connect["resolved_domain"] as? String == "server.infrasight.test")
        // The accept's remote is the client, which has no PTR record: NULL.
        let accept = try #require(rows.first { int($0, "pid") == Int64(second.serverPid) && ($0["event_type"] as? String)?.hasPrefix("accept") == true })
        #expect(accept["resolved_domain"] is NSNull)
    }

    /// `nettool nbclient` against ADDR PORT (optionally inside `netns`): its pid, and the
    /// errno of connect, SO_ERROR and the local port it printed.
    static func nonBlockingConnect(_ addr: String, _ port: Int, netns: String? = nil) throws
        -> (pid: Int32, connectErrno: Int, soError: Int, localPort: Int)
    {
        let p = try runNettool(["nbclient", addr, String(port)], netns: netns)
        let r = p.wait()
        let f = r.stdout.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        guard r.status == 0, f.count == 3 else { throw TestFailure("nbclient: \(r.status) \(r.stdout) \(r.stderr)") }
        return (p.pid, f[0], f[1], f[2])
    }

    static func connectRow(_ rows: [[String: Any]], _ pid: Int32) throws -> [String: Any] {
        try #require(rows.first { int($0, "pid") == Int64(pid) && $0["event_type"] as? String == "connect" },
                     "no connect row of \(pid) in \(rows.filter { $0["sa_family"] as? String != "AF_UNIX" })")
    }

    /// A non-blocking connect's row carries its outcome, not EINPROGRESS: it is sent when the
    /// handshake ends (between namespaces, after connect returned; on loopback, usually
    /// before), with the handshake's end as its exit time. One still pending when the trace
    /// stops is sent then, with -115 (EINPROGRESS): nothing is lost.
    @Test func aNonBlockingConnectIsRecordedWithItsOutcome() throws {
        try Self.withNamespacePair { a, b, _, server in
            let (srv, port) = try Self.startServer(server, netns: b)
            let (loopback, loopbackPort) = try Self.startServer("127.0.0.1", netns: nil)

            let trace = try Self.startTrace()
            let ok = try Self.nonBlockingConnect(server, port, netns: a)
            let refused = try Self.nonBlockingConnect(server, 9, netns: a) // nothing listens on 9
            let local = try Self.nonBlockingConnect("127.0.0.1", loopbackPort)
            // An address on the link that nobody has: no ARP answer, the SYN never leaves.
            let pending = try Self.runNettool(["nbclient", "198.51.100.99", "80", "4"], netns: a)
            try waitUntil("the connect to 198.51.100.99 is in SYN-SENT", timeout: 10) {
                try run("/usr/sbin/ip", ["netns", "exec", a, "ss", "-tnH", "state", "syn-sent"]).stdout.contains("198.51.100.99:80")
            }
            let rows = try Self.stop(trace)
            _ = srv.wait()
            _ = loopback.wait()
            _ = pending.wait()

            #expect(ok.connectErrno == Int(EINPROGRESS) && ok.soError == 0)
            let okRow = try Self.connectRow(rows, ok.pid)
            #expect(int(okRow, "return_code") == 0)
            #expect(okRow["sport"] as? String == String(ok.localPort))
            #expect(okRow["dport"] as? String == String(port))
            #expect(okRow["protocol"] as? String == "tcp")
            #expect((int(okRow, "latency_ns") ?? 0) > 0)

            #expect(refused.soError == Int(ECONNREFUSED))
            #expect(int(try Self.connectRow(rows, refused.pid), "return_code") == -Int64(ECONNREFUSED))

            #expect(local.soError == 0)
            let localRow = try Self.connectRow(rows, local.pid)
            #expect(int(localRow, "return_code") == 0)
            #expect(localRow["sport"] as? String == String(local.localPort))

            let pendingRow = try Self.connectRow(rows, pending.pid)
            #expect(int(pendingRow, "return_code") == -Int64(EINPROGRESS))
            #expect(pendingRow["daddr_ipv4"] as? String == "198.51.100.99")
            #expect(pendingRow["comm"] as? String == "nettool")
        }
    }
}
