import Foundation
import Glibc

/// Fleet fixtures the suites share: a real `infrasight server` on loopback, agents tracing
/// the open loop helper's opens, the stores' counts and metrics, test certificates.
public enum Fleet {
    /// A running `infrasight server` and the port it listens on.
    public struct Server {
        public let process: BackgroundProcess
        public let port: Int
        public let dataDir: String?

        /// `port` 0 picks a free one.
        public static func start(port: Int = 0, store: [String], extra: [String] = [], environment: [String: String]? = nil) throws -> Server {
            try start(arguments: ["--listen", "127.0.0.1:\(port)"] + store + extra, environment: environment,
                      dataDir: store.first == "--data-dir" ? store[1] : nil)
        }

        /// `infrasight server ARGUMENTS`, which must listen on 127.0.0.1.
        public static func start(arguments: [String], environment: [String: String]? = nil, dataDir: String?) throws -> Server {
            let p = try BackgroundProcess(Paths.infrasight, ["server"] + arguments, environment: environment)
            try p.waitForStderr("listening on 127.0.0.1:", timeout: 60)
            let text = try String(contentsOfFile: p.stderrPath, encoding: .utf8)
            let tail = text.components(separatedBy: "listening on 127.0.0.1:")[1]
            guard let bound = Int(tail.prefix(while: \.isNumber)) else { throw TestFailure("no port in: \(text)") }
            return Server(process: p, port: bound, dataDir: dataDir)
        }

        /// SIGINT, then the exit status and stderr (a server that does not exit in 60 s
        /// fails the test).
        public func stop() throws -> ProcessResult {
            process.signal(SIGINT)
            return try process.wait(timeout: 60)
        }
    }

    /// The open loop helper and an agent config tracing only its opens.
    public static func openLoop() throws -> (helper: String, marker: String, dir: String) {
        let (helper, marker, dir, comm) = try buildOpenLoop()
        try writeTracingConfig(comm: comm, to: "\(dir)/agent.yaml")
        return (helper, marker, dir)
    }

    /// An agent tracing only the open loop helper's opens (`dir`/agent.yaml), into `spool`.
    public static func agent(port: Int, spool: String, extra: [String] = [], environment: [String: String]? = nil, dir: String) throws -> BackgroundProcess {
        let config = "\(dir)/agent.yaml"
        let p = try BackgroundProcess(Paths.infrasight, ["agent", "--server", "127.0.0.1:\(port)", "--config", config, "--spool-dir", spool] + extra,
                                      environment: environment)
        try p.waitForStderr("infrasight: note: started: ", timeout: 60)
        return p
    }

    public static func count(_ dataDir: String, _ sql: String) throws -> Int {
        let r = try run(Paths.infrasight, ["query", "--data-dir", dataDir, sql])
        guard r.status == 0, let n = Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestFailure("query failed: \(r.stdout) \(r.stderr)")
        }
        return n
    }

    public static func metrics(_ port: Int) throws -> String {
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", "http://127.0.0.1:\(port)/metrics"])
        guard r.status == 0 else { throw TestFailure("GET /metrics on \(port): \(r.stderr)") }
        return r.stdout
    }

    /// The value of one sample line of a /metrics page (0 when absent).
    public static func value(_ text: String, _ sample: String) -> Int {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(sample + " ") }) else { return 0 }
        return Int(Double(line.dropFirst(sample.count + 1)) ?? 0)
    }

    public static func openLoop(_ helper: String, _ marker: String, _ n: Int) throws {
        let child = try BackgroundProcess(helper, [marker, String(n)])
        guard child.wait().status == 0 else { throw TestFailure("open loop failed") }
    }

    /// Two CAs: the server trusts agents with certificates from the first only.
    public static func makeCertificates(_ dir: String) throws {
        func ssl(_ args: String) throws {
            let r = try run("/usr/bin/openssl", args.split(separator: " ").map(String.init))
            guard r.status == 0 else { throw TestFailure("openssl \(args): \(r.stderr)") }
        }
        for ca in ["ca1", "ca2"] {
            try ssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=\(ca) -keyout \(dir)/\(ca).key -out \(dir)/\(ca).pem")
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: "\(dir)/san.ext", atomically: true, encoding: .utf8)
        for (name, ca) in [("server", "ca1"), ("agent1", "ca1"), ("agent2", "ca2")] {
            try ssl("req -newkey rsa:2048 -nodes -subj /CN=\(name) -keyout \(dir)/\(name).key -out \(dir)/\(name).csr")
            try ssl("x509 -req -in \(dir)/\(name).csr -CA \(dir)/\(ca).pem -CAkey \(dir)/\(ca).key -CAcreateserial -days 2 -extfile \(dir)/san.ext -out \(dir)/\(name).pem")
        }
    }

}
