import Foundation
import Glibc

/// A real ClickHouse server (Debian's clickhouse-server) in a private directory on free
/// ports, with a password on the default user. Stop and start it to simulate outages.
public final class ClickHouseServer {
    public let dir: String
    public let httpPort: Int
    public let tcpPort: Int, interserverPort: Int
    public let password = "s3cret"
    private var process: BackgroundProcess?

    public init() throws {
        guard FileManager.default.fileExists(atPath: "/usr/bin/clickhouse-server") || FileManager.default.fileExists(atPath: "/usr/sbin/clickhouse-server") else {
            throw TestFailure("clickhouse-server is not installed (scripts/test.sh installs it)")
        }
        dir = try makeTempDir(prefix: "clickhouse")
        // Ports the kernel hands out (not random guesses that another suite's server, or the
        // cluster fixture, may hold).
        (httpPort, tcpPort, interserverPort) = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort())
        var config = try String(contentsOfFile: "/etc/clickhouse-server/config.xml", encoding: .utf8)
        config = config.replacingOccurrences(of: "/var/lib/clickhouse/", with: "\(dir)/data/")
            .replacingOccurrences(of: "/var/log/clickhouse-server/", with: "\(dir)/log/")
            .replacingOccurrences(of: "<http_port>8123</http_port>", with: "<http_port>\(httpPort)</http_port>")
            .replacingOccurrences(of: "<tcp_port>9000</tcp_port>", with: "<tcp_port>\(tcpPort)</tcp_port>")
            .replacingOccurrences(of: "<interserver_http_port>9009</interserver_http_port>", with: "<interserver_http_port>\(interserverPort)</interserver_http_port>")
            .replacingOccurrences(of: "<listen_host>::1</listen_host>", with: "")
        try config.write(toFile: "\(dir)/config.xml", atomically: true, encoding: .utf8)
        var users = try String(contentsOfFile: "/etc/clickhouse-server/users.xml", encoding: .utf8)
        if let r = users.range(of: "<password></password>") {
            users.replaceSubrange(r, with: "<password>\(password)</password>")
        }
        try users.write(toFile: "\(dir)/users.xml", atomically: true, encoding: .utf8)
        try start()
    }

    deinit { stop() }

    public var url: String { "http://default:\(password)@127.0.0.1:\(httpPort)/" }

    public func start() throws {
        let binary = FileManager.default.fileExists(atPath: "/usr/bin/clickhouse-server") ? "/usr/bin/clickhouse-server" : "/usr/sbin/clickhouse-server"
        process = try BackgroundProcess(binary, ["--config-file=\(dir)/config.xml"], cwd: dir)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if ping() { return }
            usleep(100_000)
        }
        throw TestFailure("clickhouse-server did not answer /ping within 30 s: \(process?.stderr ?? "")")
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown).
    public func stop() {
        guard let p = process else { return }
        p.signal(SIGKILL)
        _ = p.wait()
        process = nil
    }

    public func ping() -> Bool {
        guard let r = try? run("/usr/bin/curl", ["-s", "-m", "1", "http://127.0.0.1:\(httpPort)/ping"]) else { return false }
        return r.stdout.hasPrefix("Ok")
    }

    /// Runs SQL with curl (independent of the code under test).
    public func query(_ sql: String) throws -> String {
        let r = try run("/usr/bin/curl", ["-s", "-S", "--fail-with-body", "-u", "default:\(password)", "--data-binary", sql, "http://127.0.0.1:\(httpPort)/"])
        guard r.status == 0 else { throw TestFailure("query failed: \(r.stdout) \(r.stderr); \(whatItSaw())") }
        return r.stdout
    }

    /// See `serverState`.
    public func whatItSaw() -> String {
        serverState("the server", process, errorLog: "\(dir)/log/clickhouse-server.err.log")
    }
}

/// Whether the ClickHouse server `name` still runs (or how it ended) and the end of its
/// error log: what a failed statement's message carries, so a closed connection says
/// whether the server crashed and why.
func serverState(_ name: String, _ process: BackgroundProcess?, errorLog: String) -> String {
    let state = process.map { $0.isRunning ? "\(name) runs" : "\(name) exited (\($0.wait().status))" } ?? "\(name) is stopped"
    let log = (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? ""
    return "\(state); the end of its error log: \(log.split(separator: "\n").suffix(15).joined(separator: " | "))"
}
