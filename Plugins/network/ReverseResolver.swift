import Foundation
import Glibc
import Synchronization

/// Reverse DNS for remote addresses, off the hot path: `name(for:)` never blocks; a miss
/// queues a lookup for a background thread and answers "pending". Results are cached,
/// positive for `positiveTTL`, negative (the server says there is no PTR) for
/// `negativeTTL`, and failures (timeout, unreachable server, SERVFAIL) only for
/// `failureTTL`, so a DNS server that was briefly down does not hide names for a minute;
/// in a cache of at most `capacity` addresses; at most `queueCapacity` lookups wait.
///
/// With `server` set, PTR queries go over UDP to that server with `timeout`; otherwise the
/// system resolver (getnameinfo, /etc/resolv.conf and its own timeouts) is used.
final class ReverseResolver: Sendable {
    struct Address: Hashable, Sendable {
        let family: Int32
        let high: UInt64
        let low: UInt64

        init(family: Int32, bytes: UnsafeRawPointer) {
            self.family = family
            high = bytes.loadUnaligned(as: UInt64.self)
            low = family == AF_INET6 ? bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self) : 0
        }

        var bytes: [UInt8] {
            var h = high, l = low
            let all = withUnsafeBytes(of: &h) { Array($0) } + withUnsafeBytes(of: &l) { Array($0) }
            return Array(all.prefix(family == AF_INET6 ? 16 : 4))
        }
    }

    enum Answer: Sendable { case name([UInt8]), none, pending }

    /// What one lookup found.
    enum Lookup: Equatable, Sendable { case name(String), absent, failed }

    private struct Entry: Sendable { let name: [UInt8]?; let expires: Double }

    let server: String?
    let timeout: Double
    let capacity = 4096
    let queueCapacity = 256
    let positiveTTL = 600.0
    let negativeTTL = 60.0
    let failureTTL = 5.0
    private struct State {
        var cache: [Address: Entry] = [:]
        /// Lookups waiting, oldest first (each signalled once on `wake`).
        var queue: [Address] = []
        var queued = Set<Address>()
        var started = false
        var stopped = false
    }
    private let state = Mutex(State())
    /// One signal per queued lookup, and one from `stop`.
    private let wake = DispatchSemaphore(value: 0)

    init(server: String?, timeout: Double) {
        self.server = server
        self.timeout = timeout
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The cached answer, or `.pending` after queueing a lookup. Never blocks on DNS.
    func name(for address: Address) -> Answer {
        let now = Self.now()
        let (answer, queued, startThread): (Answer, Bool, Bool) = state.withLock { s in
            if let e = s.cache[address], e.expires > now {
                return (e.name.map(Answer.name) ?? .none, false, false)
            }
            guard !s.stopped && !s.queued.contains(address) && s.queue.count < queueCapacity else { return (.pending, false, false) }
            s.queue.append(address)
            s.queued.insert(address)
            defer { s.started = true }
            return (.pending, true, !s.started)
        }
        if startThread {
            let t = Thread { self.work() } // holds the resolver until stop() ends it
            t.name = "infrasight-rdns"
            t.start()
        }
        if queued { wake.signal() }
        return answer
    }

    /// Ends the lookup thread once its current lookup (bounded by `timeout`) is done;
    /// `name(for:)` answers from the cache only, afterwards.
    func stop() {
        state.withLock { s in
            s.stopped = true
            s.queue.removeAll()
            s.queued.removeAll()
        }
        wake.signal()
    }

    private func work() {
        while true {
            wake.wait()
            let next: Address?? = state.withLock { s in
                if s.stopped { return .none }
                return .some(s.queue.isEmpty ? nil : s.queue.removeFirst())
            }
            guard let next else { return } // stopped
            guard let address = next else { continue } // a signal whose lookup `stop` removed
            let found = server.map { PTRQuery.lookup(address, server: $0, timeout: timeout) } ?? Self.system(address)
            let now = Self.now()
            state.withLock { s in
                s.queued.remove(address)
                if s.cache.count >= capacity {
                    s.cache = s.cache.filter { $0.value.expires > now }
                    if s.cache.count >= capacity, let victim = s.cache.keys.first { s.cache.removeValue(forKey: victim) }
                }
                switch found {
                case .name(let name): s.cache[address] = Entry(name: Array(name.utf8), expires: now + positiveTTL)
                case .absent: s.cache[address] = Entry(name: nil, expires: now + negativeTTL)
                case .failed: s.cache[address] = Entry(name: nil, expires: now + failureTTL)
                }
            }
        }
    }

    /// getnameinfo with NI_NAMEREQD: a name only when a PTR record exists.
    static func system(_ address: Address) -> Lookup {
        var host = [CChar](repeating: 0, count: 1025)
        let bytes = address.bytes
        let rc: Int32
        if address.family == AF_INET {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: bytes) }
            rc = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getnameinfo($0, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0, NI_NAMEREQD)
                }
            }
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
            rc = withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getnameinfo($0, socklen_t(MemoryLayout<sockaddr_in6>.size), &host, socklen_t(host.count), nil, 0, NI_NAMEREQD)
                }
            }
        }
        switch rc {
        case 0: return .name(host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        case EAI_NONAME: return .absent
        default: return .failed
        }
    }

    /// Addresses that are never looked up (their names are local knowledge, and asking a
    /// public resolver about them leaks internal topology): RFC 1918, loopback,
    /// link-local, CGNAT, multicast, unspecified, IPv6 ULA/link-local/multicast, and
    /// IPv4-mapped forms of those.
    static func isPrivate(family: Int32, _ b: [UInt8]) -> Bool {
        if family == AF_INET {
            guard b.count == 4 else { return true }
            switch (b[0], b[1]) {
            case (0, _), (10, _), (127, _): return true
            case (100, 64...127): return true
            case (169, 254): return true
            case (172, 16...31): return true
            case (192, 168): return true
            case (224...255, _): return true
            default: return false
            }
        }
        guard b.count == 16 else { return true }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF {
            return isPrivate(family: AF_INET, Array(b[12..<16]))
        }
        if b.allSatisfy({ $0 == 0 }) { return true }                         // ::
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }    // ::1
        if b[0] & 0xFE == 0xFC { return true }                               // fc00::/7
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return true }               // fe80::/10
        if b[0] == 0xFF { return true }                                      // multicast
        return false
    }
}

/// One PTR query over UDP (RFC 1035), for a configured DNS server.
enum PTRQuery {
    static func name(for address: ReverseResolver.Address) -> String {
        let b = address.bytes
        if address.family == AF_INET {
            return "\(b[3]).\(b[2]).\(b[1]).\(b[0]).in-addr.arpa"
        }
        let hex = Array("0123456789abcdef")
        var labels: [String] = []
        for byte in b.reversed() {
            labels.append(String(hex[Int(byte & 0xF)]))
            labels.append(String(hex[Int(byte >> 4)]))
        }
        return labels.joined(separator: ".") + ".ip6.arpa"
    }

    static func lookup(_ address: ReverseResolver.Address, server: String, timeout: Double) -> ReverseResolver.Lookup {
        let id = UInt16.random(in: 0...UInt16.max)
        var packet: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name(for: address).split(separator: ".") {
            packet.append(UInt8(label.utf8.count))
            packet += Array(label.utf8)
        }
        packet += [0, 0, 12, 0, 1] // root, QTYPE PTR, QCLASS IN

        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return .failed }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = UInt16(53).bigEndian
        guard inet_pton(AF_INET, server, &to.sin_addr) == 1 else { return .failed }
        let sent = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, packet, packet.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard sent == packet.count else { return .failed }
        var answer = [UInt8](repeating: 0, count: 1500)
        let n = recv(fd, &answer, answer.count, 0)
        guard n >= 12 else { return .failed }
        return parse(Array(answer[0..<n]), id: id)
    }

    /// The first PTR answer's name; `.absent` for NXDOMAIN or an answer without a PTR;
    /// `.failed` for another id, a server error code or a malformed message.
    static func parse(_ m: [UInt8], id: UInt16) -> ReverseResolver.Lookup {
        guard m.count >= 12, UInt16(m[0]) << 8 | UInt16(m[1]) == id, m[2] & 0x80 != 0 else { return .failed }
        switch m[3] & 0x0F {
        case 0: break
        case 3: return .absent
        default: return .failed
        }
        guard let name = firstPTR(m) else { return .absent }
        return .name(name)
    }

    static func firstPTR(_ m: [UInt8]) -> String? {
        let qd = Int(m[4]) << 8 | Int(m[5]), an = Int(m[6]) << 8 | Int(m[7])
        var i = 12
        for _ in 0..<qd {
            guard skipName(m, &i), i + 4 <= m.count else { return nil }
            i += 4
        }
        for _ in 0..<an {
            guard skipName(m, &i), i + 10 <= m.count else { return nil }
            let type = Int(m[i]) << 8 | Int(m[i + 1])
            let length = Int(m[i + 8]) << 8 | Int(m[i + 9])
            i += 10
            guard i + length <= m.count else { return nil }
            if type == 12 {
                var j = i
                return readName(m, &j)
            }
            i += length
        }
        return nil
    }

    static func skipName(_ m: [UInt8], _ i: inout Int) -> Bool {
        while i < m.count {
            let len = Int(m[i])
            if len == 0 { i += 1; return true }
            if len & 0xC0 == 0xC0 { i += 2; return i <= m.count }
            i += 1 + len
        }
        return false
    }

    static func readName(_ m: [UInt8], _ i: inout Int) -> String? {
        var labels: [String] = []
        var p = i
        var jumps = 0
        while p < m.count {
            let len = Int(m[p])
            if len == 0 { break }
            if len & 0xC0 == 0xC0 {
                guard p + 1 < m.count, jumps < 16 else { return nil }
                p = (len & 0x3F) << 8 | Int(m[p + 1])
                jumps += 1
                continue
            }
            guard p + 1 + len <= m.count else { return nil }
            labels.append(String(decoding: m[(p + 1)..<(p + 1 + len)], as: UTF8.self))
            p += 1 + len
        }
        return labels.isEmpty ? nil : labels.joined(separator: ".")
    }
}
