import Foundation
import Glibc
import InfraSightCore

/// Answers read-only queries over a unix socket while `run` holds the embedded data
/// directory (ClickHouse lets one process open it). The socket lives in the data
/// directory, mode 0600: only its owner may query.
///
/// Protocol, one query per connection: the client sends `FORMAT\n` + SQL and shuts down
/// its write side; the server answers one status byte (`0` ok, `1` error) and then the
/// output, or the one-line error, and closes.
public final class QueryServer: @unchecked Sendable {
    public static func socketPath(dataDir: String) -> String { "\(dataDir)/query.sock" }

    let store: EventStore
    let path: String
    private var listener: Int32 = -1
    private var thread: Thread?

    public init(store: EventStore, dataDir: String) throws(StorageError) {
        self.store = store
        path = Self.socketPath(dataDir: dataDir)
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StorageError("cannot create the query socket: \(String(cString: strerror(errno)))") }
        guard var address = UnixSocket.address(path) else {
            close(fd)
            throw StorageError("socket path too long: \(path)")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw StorageError("cannot listen on \(path): \(String(cString: strerror(e)))")
        }
        listener = fd
    }

    public func start() {
        let t = Thread { [unowned self] in self.acceptLoop() }
        t.name = "infrasight-query"
        thread = t
        t.start()
    }

    /// Stops accepting and removes the socket.
    public func stop() {
        let fd = listener
        listener = -1
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
        unlink(path)
    }

    private func acceptLoop() {
        while listener >= 0 {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            handle(client)
            close(client)
        }
    }

    private func handle(_ fd: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let request = UnixSocket.readAll(fd, limit: 1 << 20) else {
            Self.reply(fd, ok: false, Data("query too long (over 1 MiB)".utf8))
            return
        }
        guard let newline = request.firstIndex(of: 0x0A) else {
            Self.reply(fd, ok: false, Data("malformed request".utf8))
            return
        }
        let format = String(decoding: request[..<newline], as: UTF8.self)
        let sql = String(decoding: request[(newline + 1)...], as: UTF8.self)
        let q = UserQuery(sql)
        guard q.isReadOnly else {
            Self.reply(fd, ok: false, Data("while infrasight run holds the data directory, only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) are accepted".utf8))
            return
        }
        do {
            Self.reply(fd, ok: true, try store.query(sql, format: format))
        } catch {
            Self.reply(fd, ok: false, Data(error.description.utf8))
        }
    }

    static func reply(_ fd: Int32, ok: Bool, _ data: Data) {
        var payload = Data([ok ? 0x30 : 0x31])
        payload.append(data)
        payload.withUnsafeBytes { UnixSocket.writeAll(fd, $0) }
    }

    /// Sends a query to a running `infrasight run`. Returns nil when no server listens
    /// there (no socket, or a stale one); throws the server's error.
    public static func ask(dataDir: String, sql: String, format: String) throws(StorageError) -> Data? {
        let path = socketPath(dataDir: dataDir)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let fd = UnixSocket.connect(path) else { return nil }
        defer { close(fd) }
        var request = Data("\(format)\n".utf8)
        request.append(Data(sql.utf8))
        request.withUnsafeBytes { UnixSocket.writeAll(fd, $0) }
        shutdown(fd, Int32(SHUT_WR))
        let response = UnixSocket.readAll(fd, limit: Int.max) ?? []
        guard let status = response.first else { throw StorageError("the running infrasight closed the query connection without an answer") }
        let body = Data(response.dropFirst())
        if status != 0x30 { throw StorageError(String(decoding: body, as: UTF8.self)) }
        return body
    }
}
