import Foundation
import Glibc
import InfraSightCore
import Synchronization

/// Answers read-only queries over a unix socket while `run` (or `server`) holds the
/// embedded data directory (ClickHouse lets one process open it).
///
/// Who may ask: the socket lives in the data directory (0700) and is itself 0600, owned by
/// the directory's owner; and each accepted connection's peer credentials (SO_PEERCRED)
/// must be root or that owner, so a socket made reachable by loosened modes still
/// refuses everyone else. What may run: one statement, checked by `ReadOnlyQuery`, run
/// with ClickHouse's `readonly = 1` (`EventStore.readOnlyQuery`).
///
/// Protocol, one query per connection: the client sends `FORMAT\n` + SQL and shuts down
/// its write side (with query parameters, the first line is `FORMAT` followed by a tab and
/// `name=value` pairs separated by tabs, each value percent-encoded); the server answers one status byte (`0` ok, `1` error) and then the
/// output, or the one-line error, and closes.
public final class QueryServer: Sendable {
    public static func socketPath(dataDir: String) -> String { "\(dataDir)/query.sock" }

    let store: EventStore
    let path: String
    let dataDir: String
    /// The data directory's owner when the server started: with root, the one user who may query.
    let ownerUID: uid_t
    private let listener: Int32
    /// True until `stop`: the listener is closed once.
    private let listening = Atomic<Bool>(true)

    public init(store: EventStore, dataDir: String) throws(StorageError) {
        self.store = store
        self.dataDir = dataDir
        path = Self.socketPath(dataDir: dataDir)
        var st = stat()
        guard stat(dataDir, &st) == 0 else {
            throw StorageError("cannot read the owner of \(dataDir): \(String(cString: strerror(errno)))")
        }
        ownerUID = st.st_uid
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
        // Connecting needs write permission on the socket: 0600 and the directory's owner,
        // so root's process serves a directory someone else owns to that someone.
        guard bound == 0, chmod(path, 0o600) == 0, geteuid() != 0 || st.st_uid == 0 || chown(path, st.st_uid, st.st_gid) == 0,
            listen(fd, 16) == 0
        else {
            let e = errno
            close(fd)
            unlink(path)
            throw StorageError("cannot listen on \(path): \(String(cString: strerror(e)))")
        }
        listener = fd
    }

    public func start() {
        let t = Thread { [self] in self.acceptLoop() }
        t.name = "infrasight-query"
        t.start()
    }

    /// Stops accepting and removes the socket.
    public func stop() {
        if listening.exchange(false, ordering: .acquiringAndReleasing) {
            shutdown(listener, Int32(SHUT_RDWR)) // wakes the accept loop, which then sees `listening` false
            close(listener)
        }
        unlink(path)
    }

    /// Connections being answered at once; past `maxConnections` a new one is answered
    /// "busy" at once. Each runs on a thread of its own, so one slow statement does not
    /// hold up the others (the store runs `QueryLimits.concurrency` at once).
    private let connections = Mutex<Int>(0)
    static let maxConnections = 16

    private func acceptLoop() {
        while listening.load(ordering: .acquiring) {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE {
                    // Out of descriptors: wait for answered connections to close theirs.
                    if errno == EMFILE || errno == ENFILE { usleep(100_000) }
                    continue
                }
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let admitted = connections.withLock { n in
                guard n < Self.maxConnections else { return false }
                n += 1
                return true
            }
            guard admitted else {
                Self.reply(client, ok: false, Data("busy: \(Self.maxConnections) queries are being answered; retry".utf8))
                close(client)
                continue
            }
            Thread.detachNewThread { [self] in
                handle(client)
                close(client)
                connections.withLock { $0 -= 1 }
            }
        }
    }

    private func handle(_ fd: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // The request is read before anything is refused, so a refused client is not cut
        // off mid-write and reads its one-line answer.
        let request = UnixSocket.readAll(fd, limit: 1 << 20)
        guard let peer = UnixSocket.peerCredentials(fd) else {
            Self.reply(fd, ok: false, Data("refused: the peer's credentials cannot be read".utf8))
            return
        }
        guard peer.uid == 0 || peer.uid == ownerUID else {
            Self.reply(fd, ok: false, Data("refused: uid \(peer.uid) may not query \(dataDir); only root and its owner (uid \(ownerUID)) may".utf8))
            return
        }
        guard let request else {
            Self.reply(fd, ok: false, Data("query too long (over 1 MiB)".utf8))
            return
        }
        guard let newline = request.firstIndex(of: 0x0A) else {
            Self.reply(fd, ok: false, Data("malformed request".utf8))
            return
        }
        let head = String(decoding: request[..<newline], as: UTF8.self).split(separator: "\t", omittingEmptySubsequences: false)
        let format = String(head[0])
        var parameters: [String: String] = [:]
        for pair in head.dropFirst() {
            guard let equals = pair.firstIndex(of: "="), let value = pair[pair.index(after: equals)...].removingPercentEncoding else {
                Self.reply(fd, ok: false, Data("malformed request".utf8))
                return
            }
            parameters[String(pair[..<equals])] = value
        }
        let sql = String(decoding: request[(newline + 1)...], as: UTF8.self)
        do {
            var query = try ReadOnlyQuery(sql, format: format, parameters: parameters)
            let cancellation = QueryCancellation()
            query.cancellation = cancellation
            let done = Atomic<Bool>(false)
            // The client has shut down its side for writing; when it closes the socket
            // altogether (POLLHUP: gone, e.g. ^C) before the answer, its query is stopped.
            Thread.detachNewThread {
                var p = pollfd(fd: fd, events: 0, revents: 0)
                while !done.load(ordering: .acquiring) {
                    if poll(&p, 1, 200) > 0 && p.revents & Int16(POLLHUP) != 0 {
                        cancellation.cancel()
                        return
                    }
                }
            }
            defer { done.store(true, ordering: .releasing) }
            Self.reply(fd, ok: true, try store.readOnlyQuery(query))
        } catch {
            Self.reply(fd, ok: false, Data(error.description.utf8))
        }
    }

    static func reply(_ fd: Int32, ok: Bool, _ data: Data) {
        var payload = Data([ok ? 0x30 : 0x31])
        payload.append(data)
        _ = payload.withUnsafeBytes { UnixSocket.writeAll(fd, $0) } // a client that left has no use for it
    }

    /// Sends a query to a running `infrasight run`. Returns nil when no server listens
    /// there (no socket, or a stale one); throws the server's error, and a permission error
    /// when the socket cannot be reached (the data directory is 0700 and the socket 0600).
    public static func ask(dataDir: String, sql: String, format: String, parameters: [String: String] = [:]) throws(StorageError) -> Data? {
        let path = socketPath(dataDir: dataDir)
        var st = stat()
        if stat(path, &st) != 0 {
            if errno == ENOENT { return nil }
            throw unreachable(path, dataDir: dataDir, errno)
        }
        guard let fd = UnixSocket.connect(path) else {
            // ECONNREFUSED: a socket left by a process that is gone; nothing holds the store.
            if errno == ECONNREFUSED { return nil }
            throw unreachable(path, dataDir: dataDir, errno)
        }
        defer { close(fd) }
        var head = format
        for (name, value) in parameters.sorted(by: { $0.key < $1.key }) {
            head += "\t\(name)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        }
        var request = Data("\(head)\n".utf8)
        request.append(Data(sql.utf8))
        _ = request.withUnsafeBytes { UnixSocket.writeAll(fd, $0) } // a server that closed early answers nothing: said below
        shutdown(fd, Int32(SHUT_WR))
        let response = UnixSocket.readAll(fd, limit: Int.max) ?? []
        guard let status = response.first else { throw StorageError("the running infrasight closed the query connection without an answer") }
        let body = Data(response.dropFirst())
        if status != 0x30 { throw StorageError(String(decoding: body, as: UTF8.self)) }
        return body
    }

    static func unreachable(_ path: String, dataDir: String, _ code: Int32) -> StorageError {
        let hint = code == EACCES ? " (only root and the owner of \(dataDir) may query it)" : ""
        return StorageError("cannot reach \(path): \(String(cString: strerror(code)))\(hint)")
    }
}
