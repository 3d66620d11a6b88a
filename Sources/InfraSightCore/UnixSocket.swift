import Glibc

/// The few unix-socket and clock operations the agent's own clients and servers share
/// (the query socket, the container runtime's API).
public enum UnixSocket {
    /// The address of `path`, or nil when it does not fit in sun_path.
    public static func address(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return address
    }

    /// True when `path` is a unix socket.
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
    }

    /// A stream socket connected to `path` (with send/receive timeouts when `timeout` is
    /// given), or nil with `errno` saying why (EACCES, ECONNREFUSED, ...). The caller
    /// closes it.
    public static func connect(_ path: String, timeout: Double? = nil) -> Int32? {
        guard var address = address(path) else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        if let timeout {
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let e = errno
            close(fd)
            errno = e
            return nil
        }
        return fd
    }

    /// The process, user and group at the other end of a connected unix socket, as the
    /// kernel recorded them when it connected (SO_PEERCRED): not something the peer says.
    public static func peerCredentials(_ fd: Int32) -> (pid: pid_t, uid: uid_t, gid: gid_t)? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc exports it only with
        // _GNU_SOURCE, so its layout is spelled out here).
        var credentials: (pid: pid_t, uid: uid_t, gid: gid_t) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<pid_t>.size + MemoryLayout<uid_t>.size + MemoryLayout<gid_t>.size)
        let expected = length
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, length == expected else { return nil }
        return credentials
    }

    /// Reads until end of stream, an error, `limit` bytes (then nil: too much), or the
    /// monotonic `deadline` in seconds.
    public static func readAll(_ fd: Int32, limit: Int, deadline: Double? = nil) -> [UInt8]? {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while deadline.map({ MonotonicClock.seconds() < $0 }) ?? true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += chunk[0..<n]
            if out.count > limit { return nil }
        }
        return out
    }

    /// Writes all of `bytes`; false when the peer is gone.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}

/// CLOCK_MONOTONIC, the clock of the kernel's event timestamps.
public enum MonotonicClock {
    @inline(__always) public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    @inline(__always) public static func seconds() -> Double { Double(nanoseconds()) / 1e9 }
}
