import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The web console, in headless Chromium, over a store filled by a real traced workload:
/// what a person opening it would see, page by page, with a screenshot of each kept in
/// `.build/test-artifacts/console/`.
@Suite("ConsoleTests", .serialized)
struct ConsoleTests {
    /// Opens the file it is given, connects to 127.0.0.1:PORT, prints its pid and its
    /// parent's, and exits 0 when the connection was made.
    static let childSource = """
        #include <arpa/inet.h>
        #include <fcntl.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <sys/socket.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            int fd = open(argv[1], O_RDONLY);
            if (fd >= 0) close(fd);
            int s = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {0};
            a.sin_family = AF_INET;
            a.sin_port = htons(atoi(argv[2]));
            a.sin_addr.s_addr = htonl(0x7f000001);
            int r = connect(s, (struct sockaddr *)&a, sizeof a);
            close(s);
            printf("%d %d\\n", getpid(), getppid());
            return r == 0 ? 0 : 3;
        }
        """

    static let artifacts = Paths.packageRoot + "/.build/test-artifacts/console"

    /// The console's base URL from the run's "console on http://HOST:PORT/" line.
    static func consoleURL(_ process: BackgroundProcess) throws -> String {
        try process.waitForStderr("console on http")
        let line = try #require(process.stderr.split(separator: "\n").first { $0.contains("console on http") })
        let address = try #require(line.split(separator: "://").dropFirst().first?.split(separator: "/").first)
        let port = try #require(address.split(separator: ":").last)
        return "\(line.contains("console on https") ? "https" : "http")://127.0.0.1:\(port)/"
    }

    /// The base URL and the token a console generated at its first start (its login URL,
    /// printed once, and the token file in the data directory agree).
    static func generatedLogin(_ process: BackgroundProcess, data: String) throws -> (base: String, token: String) {
        let base = try consoleURL(process)
        let token = try String(contentsOfFile: "\(data)/console-token", encoding: .utf8).trimmingCharacters(in: .newlines)
        #expect(token.count == 64 && token.allSatisfy(\.isHexDigit), "\(token)")
        // Not a terminal: the log names the file, never the token.
        #expect(process.stderr.contains("?token=TOKEN with the token in \(data)/console-token, mode 0600"), "\(process.stderr)")
        #expect(!process.stderr.contains(token), "\(process.stderr)")
        #expect(mode("\(data)/console-token") == 0o600)
        return (base, token)
    }

    @Test func theConsoleShowsWhatAWorkloadDid() throws {
        let dir = try makeTempDir(prefix: "console")
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let (parentComm, childComm) = ("isp" + tag, "isc" + tag)
        let child = "\(dir)/\(childComm)", parent = "\(dir)/\(parentComm)"
        try compileC(Self.childSource, to: child, flags: ["-O1", "-Wall", "-Werror"])
        try copyExecutable("/bin/dash", to: parent)
        let marker = "\(dir)/marker-\(tag).txt"
        try "x\n".write(toFile: marker, atomically: true, encoding: .utf8)
        let listener = try LoopbackListener()
        defer { listener.close() }
        // Only the workload's commands are traced: a test host is busy, and its own load
        // must not crowd the workload's rows out of the ring buffers.
        let comms = "[\(parentComm), \(childComm)]"
        try """
            plugins:
              enabled: [tracing, network, mmap]
              options:
                tracing: { include_comms: \(comms) }
                network: { include_comms: \(comms) }
                mmap: { include_comms: \(comms) }
            """.write(toFile: "\(dir)/config.yaml", atomically: true, encoding: .utf8)
        let data = try makeTempDir(prefix: "console-data")
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(dir)/config.yaml", "--data-dir", data, "--ui-listen", "127.0.0.1:0"])
        try agent.waitForStderr("infrasight: note: started: ")
        let (base, token) = try Self.generatedLogin(agent, data: data)
        let bearer = ["Authorization": "Bearer \(token)"]

        // The parent shell forks the child (`; true` keeps dash from exec'ing it in place).
        let first = try run(parent, ["-c", "\(child) \(marker) \(listener.port); true"])
        #expect(first.status == 0, "\(first.stderr)")
        let ids = first.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) }
        try #require(ids.count == 2, "the child printed \(first.stdout)")
        let (childPid, parentPid) = (ids[0], ids[1])
        // Then it keeps working (to a closed port), so the overview has live rates to show.
        let busy = try BackgroundProcess(parent, ["-c", "while :; do \(child) \(marker) 1 >/dev/null; sleep 0.2; done"])
        defer {
            busy.signal(SIGKILL)
            _ = busy.wait()
        }
        try waitUntil("the child's launch is stored", timeout: 30) {
            let answer = try HTTPClient.request("GET", base + "api/query/recent_execs?from=0.001&to=9999999999&search=\(childComm)&limit=1000", headers: bearer)
            return answer.text.contains("\"pid\": \(childPid),")
        }

        try FileManager.default.createDirectory(atPath: Self.artifacts, withIntermediateDirectories: true)
        let browser = try Browser()
        defer { browser.close() }
        // The login URL the console printed: a session cookie, then the pages.
        try browser.open(base + "?token=\(token)")
        func load(_ page: String) throws {
            try browser.open(base + "#/\(page)")
            try browser.waitFor("\(page) to load", "return document.body.dataset.loaded === '1'")
        }
        func noErrors(_ page: String) throws {
            let errors = try browser.texts(".error").filter { !$0.isEmpty }
            #expect(errors.isEmpty, "\(page) shows errors: \(errors)")
        }

        // Overview: live rates from this process's counters (two polls 2 s apart).
        try load("overview?range=15m")
        try browser.waitFor("a non-zero live rate", timeout: 30,
                            "const v = document.querySelector('#rate-received .value'); return !!v && parseFloat(v.innerText) > 0")
        try noErrors("overview")
        #expect(try browser.texts("#panel-event_totals td").contains("tracing_events"))
        try browser.screenshot(to: "\(Self.artifacts)/overview.png")

        // Process explorer: search the child's command, pick the first launch, see its
        // parent above it in the tree and what it did in the timeline.
        try load("processes?range=15m")
        try browser.type(try browser.find("#search"), childComm)
        try browser.click(try browser.find("#search-go"))
        try browser.waitFor("the search's results", "return !!document.querySelector(\"tr.proc[data-pid='\(childPid)']\") && document.body.dataset.loaded === '1'")
        #expect(try browser.texts("tr.proc").allSatisfy { $0.contains(childComm) })
        try browser.click(try browser.find("tr.proc[data-pid='\(childPid)']"))
        try browser.waitFor("the tree and timeline", "return document.body.dataset.loaded === '1' && !!document.querySelector('#tree') && !!document.querySelector('#process-timeline table')")
        try noErrors("processes")
        let selfPid = try browser.run("return document.querySelector('#tree li.self > span').dataset.pid") as? String
        #expect(selfPid == String(childPid))
        let parentOfSelf = try browser.run("const p = document.querySelector('#tree li.self').parentElement.closest('li.node'); return p ? [p.querySelector(':scope > span').dataset.pid, p.querySelector(':scope > span').dataset.comm] : null") as? [String]
        let tree = try browser.texts("#tree")
        #expect(parentOfSelf == [String(parentPid), parentComm], "the tree: \(tree)")
        let timeline = try browser.texts("#process-timeline tbody tr")
        let opened = timeline.firstIndex { $0.contains("open") && $0.contains(marker) }
        let connected = timeline.firstIndex { $0.contains("network") && $0.contains("127.0.0.1:\(listener.port)") }
        #expect(opened != nil && connected != nil, "timeline: \(timeline)")
        if let opened, let connected { #expect(opened < connected, "the open came first: \(timeline)") }
        #expect(timeline.first?.contains("execve") == true, "the timeline starts with its launch: \(timeline.first ?? "")")
        try browser.screenshot(to: "\(Self.artifacts)/processes.png")

        // The other pages load every panel without an error.
        for page in ["files", "network", "containers", "security"] {
            try load("\(page)?range=15m")
            try noErrors(page)
            try browser.screenshot(to: "\(Self.artifacts)/\(page).png")
        }
        try load("files?range=15m&comm=\(childComm)")
        #expect(try browser.texts("#panel-file_activity td").contains(marker))
        try load("network?range=15m&comm=\(childComm)")
        #expect(try browser.texts("#panel-top_destinations td").contains("127.0.0.1:\(listener.port)"))

        // The SQL box refuses a write and answers a read.
        try load("sql")
        let box = try browser.find("#sql-text")
        try browser.type(box, "INSERT INTO audit.tracing_events (pid) VALUES (1)")
        try browser.click(try browser.find("#sql-run"))
        try browser.waitFor("the refusal", "return document.querySelector('#sql-error').innerText.length > 0")
        let refusal = try browser.texts("#sql-error").first ?? ""
        #expect(refusal.hasPrefix("refused: only read-only statements"), "\(refusal)")
        try browser.type(box, "SELECT count() AS opens FROM audit.tracing_events WHERE pid = \(childPid) AND filename = '\(marker)'")
        try browser.click(try browser.find("#sql-run"))
        try browser.waitFor("the answer", "return !!document.querySelector('#sql-result table')")
        #expect(try browser.texts("#sql-result td") == ["1"])
        try browser.screenshot(to: "\(Self.artifacts)/sql.png")

        busy.signal(SIGKILL)
        _ = busy.wait()
        let r = try agent.interrupt(after: 0.3, timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func theConsoleAlwaysWantsATokenAndAdmitsOnlyItsHolders() throws {
        let dir = try makeTempDir(prefix: "console-token")
        let data = try makeTempDir(prefix: "console-token-data")
        let token = "tok-\(UUID().uuidString)"
        let tokenFile = "\(dir)/token"
        try token.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o644)
        let loose = try run(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--data-dir", data, "--ui-listen", "0.0.0.0:0", "--ui-token-file", tokenFile, "--duration", "1"])
        #expect(loose.status == 2)
        #expect(loose.stderr.contains("accessible by group or others"), "\(loose.stderr)")
        chmod(tokenFile, 0o600)
        let shortFile = "\(dir)/short"
        try "0123456789abcde\n".write(toFile: shortFile, atomically: true, encoding: .utf8)
        chmod(shortFile, 0o600)
        let short = try run(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--data-dir", data, "--ui-listen", "127.0.0.1:0", "--ui-token-file", shortFile, "--duration", "1"])
        #expect(short.status == 2)
        #expect(short.stderr == "infrasight: the token in \(shortFile) is 15 bytes, under the 16 a token needs (head -c 24 /dev/urandom | base64 makes one)\n", "\(short.stderr)")
        let shortEnvironment = try run(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--data-dir", data, "--ui-listen", "127.0.0.1:0", "--duration", "1"],
                                       environment: ["INFRASIGHT_UI_TOKEN": "0123456789abcde"])
        #expect(shortEnvironment.status == 2)
        #expect(shortEnvironment.stderr == "infrasight: INFRASIGHT_UI_TOKEN is 15 bytes, under the 16 a token needs (head -c 24 /dev/urandom | base64 makes one)\n", "\(shortEnvironment.stderr)")

        // A server over a ClickHouse server (the console works with --clickhouse-url too).
        let clickhouse = try ClickHouseServer()
        let server = try BackgroundProcess(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--ui-listen", "0.0.0.0:0", "--ui-token-file", tokenFile],
                                           environment: ["INFRASIGHT_CLICKHOUSE_URL": clickhouse.url])
        let base = try Self.consoleURL(server)
        let bearer = ["Authorization": "Bearer \(token)"]
        #expect(try HTTPClient.request("GET", base + "api/status").status == 401)
        #expect(try HTTPClient.request("GET", base + "api/status", headers: ["Authorization": "Bearer wrong"]).status == 401)
        let status = try HTTPClient.request("GET", base + "api/status", headers: bearer)
        #expect(status.status == 200)
        #expect(((status.json as? [String: Any])?["store"] as? String)?.contains("ClickHouse") == true, "\(status.text)")
        // Logging in with the token in the URL: a cookie, and a redirect to a URL without it.
        #expect(try HTTPClient.request("GET", base + "?token=wrong").status == 401)
        let login = try HTTPClient.request("GET", base + "?token=\(token)")
        #expect(login.status == 303)
        #expect(login.headers["location"] == "/")
        // The cookie carries a session id, never the token.
        let cookie = try #require(login.headers["set-cookie"])
        #expect(cookie.hasPrefix("infrasight_session=") && !cookie.contains(token) && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "\(cookie)")
        let session = String(cookie.dropFirst("infrasight_session=".count).prefix { $0 != ";" })
        #expect(session.count == 64, "\(cookie)")
        for forged in [token, String(repeating: "0", count: 64)] {
            let answer = try HTTPClient.request("GET", base + "api/catalog", headers: ["Cookie": "infrasight_session=\(forged)"])
            #expect(answer.status == 401, "\(answer.status): \(answer.text.prefix(200))")
        }
        let page = try HTTPClient.request("GET", base, headers: ["Cookie": "infrasight_session=\(session)"])
        #expect(page.status == 200 && page.text.contains("<script src=\"/console.js\""))
        #expect(page.headers["content-security-policy"]?.contains("default-src 'self'") == true)
        // A statement needs the X-InfraSight header (no other site can post one) and is read-only.
        let select = Data("SELECT 40 + 2 AS answer".utf8)
        #expect(try HTTPClient.request("POST", base + "api/sql", headers: bearer, body: select).status == 403)
        let answer = try HTTPClient.request("POST", base + "api/sql", headers: bearer.merging(["X-InfraSight": "1"]) { a, _ in a }, body: select)
        #expect(answer.status == 200, "\(answer.text)")
        #expect(((answer.json as? [String: Any])?["data"] as? [[String: Any]])?.first?["answer"] as? Int == 42, "\(answer.text)")
        let drop = try HTTPClient.request("POST", base + "api/sql", headers: bearer.merging(["X-InfraSight": "1"]) { a, _ in a }, body: Data("DROP TABLE audit.tracing_events".utf8))
        #expect(drop.status == 400 && drop.text.contains("refused: only read-only statements"), "\(drop.text)")
        // Debian's 18.16 has no query parameters: the catalog's pages say so, the SQL box works.
        let nodes = try HTTPClient.request("GET", base + "api/query/nodes?from=0.001&to=9999999999", headers: bearer)
        #expect(nodes.status == 400 && nodes.text.contains("cannot bind query parameters (19.3 and later can)"), "\(nodes.text)")
        // Nothing but the embedded pages is served.
        #expect(try HTTPClient.request("GET", base + "../../etc/passwd", headers: bearer).status == 404)
        #expect(try HTTPClient.request("GET", base + "api/query/no_such_query", headers: bearer).text.contains("no query named"))
        server.signal(SIGTERM)
        let r = try server.wait(timeout: 60)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func aLocalUserWhoIsNotRootGetsNothingFromTheLoopbackConsole() throws {
        let other = try UnprivilegedUser()
        defer { other.remove() }
        let secret = "\(try makeTempDir(prefix: "console-secret"))/secret"
        try "secret-\(UUID().uuidString)\n".write(toFile: secret, atomically: true, encoding: .utf8)
        chmod(secret, 0o600)
        let data = try makeTempDir(prefix: "console-local")
        let server = try BackgroundProcess(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--data-dir", data, "--ui-listen", "127.0.0.1:0"])
        let (base, token) = try Self.generatedLogin(server, data: data)
        // As that user, with curl: no page, no catalog, no row, no statement; nor the token file.
        func curl(_ args: [String]) throws -> String {
            let r = try other.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}"] + args)
            return r.stdout
        }
        #expect(try curl([base + "api/catalog"]) == "401")
        #expect(try curl([base + "api/query/nodes?from=0.001&to=9999999999"]) == "401")
        #expect(try curl(["-H", "X-InfraSight: 1", "--data-binary", "SELECT “file”('\(secret)')", base + "api/sql"]) == "401")
        #expect(try curl(["-H", "Host: localhost", base + "api/status"]) == "401")
        let reading = try other.run("/bin/cat", ["\(data)/console-token"])
        #expect(reading.status != 0 && reading.stderr.contains("Permission denied"), "\(reading)")
        // Its holder reads; the Unicode-quoted file() is refused by the engine's own parse.
        let bearer = ["Authorization": "Bearer \(token)", "X-InfraSight": "1"]
        #expect(try HTTPClient.request("GET", base + "api/catalog", headers: bearer).status == 200)
        let unicode = try HTTPClient.request("POST", base + "api/sql", headers: bearer, body: Data("SELECT “file”('\(secret)')".utf8))
        #expect(unicode.status == 400 && unicode.text.contains("refused: file() reads or writes files on this host"), "\(unicode.text)")
        #expect(!unicode.text.contains("secret-"))
        // A restart keeps the token (the login URL stays good).
        server.signal(SIGTERM)
        #expect(try server.wait(timeout: 60).status == 0)
        let again = try BackgroundProcess(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--data-dir", data, "--ui-listen", "127.0.0.1:0"])
        let base2 = try Self.consoleURL(again)
        #expect(!again.stderr.contains(token) && again.stderr.contains("with the token in \(data)/console-token"), "\(again.stderr)")
        #expect(try HTTPClient.request("GET", base2 + "api/catalog", headers: bearer).status == 200)
        again.signal(SIGTERM)
        #expect(try again.wait(timeout: 60).status == 0)
    }

    @Test func tlsDoesNotStandInForTheToken() throws {
        let dir = try makeTempDir(prefix: "console-tls")
        try Fleet.makeCertificates(dir)
        let data = try makeTempDir(prefix: "console-tls-data")
        let server = try BackgroundProcess(Paths.infrasight, [
            "server", "--listen", "127.0.0.1:0", "--data-dir", data, "--ui-listen", "0.0.0.0:0",
            "--ui-tls-cert", "\(dir)/server.pem", "--ui-tls-key", "\(dir)/server.key",
        ])
        let (base, token) = try Self.generatedLogin(server, data: data)
        #expect(base.hasPrefix("https://"))
        func curl(_ args: [String]) throws -> String {
            try run("/usr/bin/curl", ["-s", "--cacert", "\(dir)/ca1.pem", "-o", "/dev/null", "-w", "%{http_code}"] + args).stdout
        }
        #expect(try curl([base + "api/catalog"]) == "401")
        #expect(try curl(["-H", "Host: localhost", base + "api/catalog"]) == "401")
        #expect(try curl(["-H", "Authorization: Bearer \(token)", base + "api/catalog"]) == "200")
        // Under TLS the session cookie is Secure.
        let login = try run("/usr/bin/curl", ["-s", "--cacert", "\(dir)/ca1.pem", "-D", "-", "-o", "/dev/null", base + "?token=\(token)"]).stdout
        #expect(login.lowercased().contains("set-cookie: infrasight_session=") && login.contains("; Secure"), "\(login)")
        server.signal(SIGTERM)
        #expect(try server.wait(timeout: 60).status == 0)
    }

    /// Raw sockets, as a client that holds resources would use them.
    @Test func theConsoleDecidesOnTheHeadAndBoundsWhatClientsHold() throws {
        let data = try makeTempDir(prefix: "console-bounds")
        let server = try BackgroundProcess(Paths.infrasight, ["server", "--listen", "127.0.0.1:0", "--data-dir", data, "--ui-listen", "127.0.0.1:0"])
        let (base, token) = try Self.generatedLogin(server, data: data)
        let port = try #require(Int(base.split(separator: ":").last!.dropLast()))

        // A head that promises a 1 MiB body, with no token: answered 401 at once, body unread.
        let eager = try RawConnection(port: port)
        try eager.send("POST /api/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nX-InfraSight: 1\r\nContent-Length: 1048576\r\n\r\n")
        let answer = try eager.readUntilClosed(timeout: 10)
        #expect(answer.hasPrefix("HTTP/1.1 401"), "\(answer)")
        eager.close()
        // With the token, a body over 1 MiB by its Content-Length: 413 before it is sent.
        let big = try RawConnection(port: port)
        try big.send("POST /api/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nX-InfraSight: 1\r\nAuthorization: Bearer \(token)\r\nContent-Length: 1048577\r\n\r\n")
        #expect(try big.readUntilClosed(timeout: 10).hasPrefix("HTTP/1.1 413"))
        big.close()

        // More connections than the cap, none admitted: each past the cap closes the oldest
        // unadmitted one, unread, so the server never holds more than the cap...
        func sockets() throws -> Int {
            // Its sockets, not its files: the engine opens and closes files on its own.
            let dir = "/proc/\(server.pid)/fd"
            return try FileManager.default.contentsOfDirectory(atPath: dir).filter {
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\($0)"))?.hasPrefix("socket:") == true
            }.count
        }
        let before = try sockets()
        var held: [RawConnection] = []
        defer { for c in held { c.close() } }
        for _ in 0..<(128 + 20) { held.append(try RawConnection(port: port)) }
        for c in held.prefix(20) { #expect(try c.readUntilClosed(timeout: 10) == "") }
        let during = try sockets()
        #expect(during <= before + 128, "the server went from \(before) to \(during) sockets")
        // ...and the token's holder still gets in while they are held.
        let admitted = try HTTPClient.request("GET", base + "api/catalog", headers: ["Authorization": "Bearer \(token)"])
        #expect(admitted.status == 200, "\(admitted.status)")
        // Idle and half-sent requests are closed after the request deadline (15 s).
        let slow = held[30]
        try slow.send("GET /api/catalog HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        #expect(try slow.readUntilClosed(timeout: 60) == "")
        for c in held.dropFirst(21) { _ = try c.readUntilClosed(timeout: 60) }
        for c in held { c.close() }
        held = []
        // The console answers its holder afterwards.
        try waitUntil("the console answers again", timeout: 30) {
            try HTTPClient.request("GET", base + "api/catalog", headers: ["Authorization": "Bearer \(token)"]).status == 200
        }

        // Wrong tokens are rate-limited: past 10 from this address, even the right one waits.
        for i in 0..<10 { #expect(try HTTPClient.request("GET", base + "?token=wrong\(i)").status == 401) }
        #expect(try HTTPClient.request("GET", base + "?token=\(token)").status == 429)
        #expect(try HTTPClient.request("GET", base + "api/catalog", headers: ["Authorization": "Bearer \(token)"]).status == 429)
        server.signal(SIGTERM)
        #expect(try server.wait(timeout: 60).status == 0)
    }
}

/// A plain TCP connection to 127.0.0.1:port, for requests no HTTP client would send.
final class RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok else {
            Glibc.close(fd)
            throw TestFailure("cannot connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw TestFailure("write: \(String(cString: strerror(errno)))") }
    }

    /// Everything the peer sends until it closes; throws when it has not closed within `timeout` s.
    func readUntilClosed(timeout: Double) throws -> String {
        var out: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw TestFailure("the peer did not close within \(timeout) s; it sent \(out.count) bytes") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left * 1000)) > 0 else { continue }
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { return String(decoding: out, as: UTF8.self) }
            out += buffer[0..<n]
        }
    }

    func close() { Glibc.close(fd) }
}

/// A TCP listener on 127.0.0.1 (a free port) that accepts and closes connections.
final class LoopbackListener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { throw TestFailure("cannot listen on loopback") }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                Glibc.close(client)
            }
        }
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}
