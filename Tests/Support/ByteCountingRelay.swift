import Foundation
import Synchronization
import Glibc

/// A TCP relay on 127.0.0.1 to `upstreamPort` that counts the bytes clients send through
/// it: what really crosses the wire (after TLS or compression), which neither end reports.
public final class ByteCountingRelay: @unchecked Sendable {
    public private(set) var port: Int = 0
    private let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var sent = 0

    public init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard listener >= 0, bound == 0, listen(listener, 16) == 0 else {
            throw TestFailure("relay: cannot listen: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Bytes clients have sent toward the upstream so far.
    public var bytesSent: Int { lock.withLock { sent } }

    /// Stops accepting; connections already relayed end when either side closes.
    public func close() { shutdown(listener, Int32(SHUT_RDWR)) }

    private static func loopback(port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        return a
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                Glibc.close(listener) // shut down by close()
                return
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                Glibc.close(client)
                Glibc.close(upstream)
                continue
            }
            // The second direction to end closes both descriptors.
            let directions = Atomic<Int>(2)
            let finish: @Sendable () -> Void = {
                if directions.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    Glibc.close(client)
                    Glibc.close(upstream)
                }
            }
            Thread.detachNewThread { [self] in pump(from: client, to: upstream, counted: true); finish() }
            Thread.detachNewThread { [self] in pump(from: upstream, to: client, counted: false); finish() }
        }
    }

    /// Copies until `from` ends, then ends the other direction too.
    private func pump(from: Int32, to: Int32, counted: Bool) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        copying: while true {
            let n = read(from, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if counted { lock.withLock { sent += n } }
            var offset = 0
            while offset < n {
                let w = buffer.withUnsafeBytes { write(to, $0.baseAddress! + offset, n - offset) }
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { break copying }
                offset += w
            }
        }
        shutdown(to, Int32(SHUT_WR))
        shutdown(from, Int32(SHUT_RD))
    }
}
