import Glibc
import InfraSightSDK
import NetworkRecord

/// The `network` plugin: connect(2), accept(2), accept4(2) into audit.network_events.
///
/// Direction: on every row the *source* (saddr/sport) is the side that initiated the
/// connection and the *destination* (daddr/dport) the side that accepted it. A connect
/// row's source is the local socket; an accept row's source is the peer. So both rows of
/// one connection carry the same four values. IPv4 goes in the _ipv4 columns, IPv6 in the
/// _ipv6 ones; ports are decimal text, empty for AF_UNIX (whose path, if any, is in the
/// appended `unix_path` column; an abstract name is shown as `@name`).
///
/// `resolved_domain` is the PTR name of the remote address (a connect's destination, an
/// accept's peer), looked up off the hot path and cached. It is NULL when the address is
/// private/loopback/link-local (never looked up), has no PTR record, or is not known yet:
/// the first connection to a new address is stored before its lookup finishes.
public final class NetworkProbe: ProbeModule {
    public static let name = "network"
    public static let version = "0.1.0"
    public static let summary = "Network connections: connect, accept and accept4 with addresses, ports and reverse DNS"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.network.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.network_events] }
    public static var options: [ProbeOption] {
        [
            ProbeOption("resolve_domains", .bool, "look up PTR names of remote addresses", default: "true"),
            ProbeOption("dns_server", .string, "IPv4 address of the DNS server for PTR queries (default: the system resolver)"),
            ProbeOption("dns_timeout_ms", .int, "timeout of one PTR query to dns_server", default: "1000"),
        ]
    }

    let family = NetworkEventsColumns.sa_family
    let saddr4 = NetworkEventsColumns.saddr_ipv4
    let daddr4 = NetworkEventsColumns.daddr_ipv4
    let sport = NetworkEventsColumns.sport
    let dport = NetworkEventsColumns.dport
    let saddr6 = NetworkEventsColumns.saddr_ipv6
    let daddr6 = NetworkEventsColumns.daddr_ipv6
    let domain = NetworkEventsColumns.resolved_domain
    let eventType = NetworkEventsColumns.event_type
    let protocolColumn = NetworkEventsColumns.protocol
    let unixPath = NetworkEventsColumns.unix_path
    let resolver: ReverseResolver?
    private var scratch = [UInt8](repeating: 0, count: 128)

    public init(options: ProbeOptions) throws {
        let server = try options.string("dns_server")
        if let server {
            var probe = in_addr()
            guard inet_pton(AF_INET, server, &probe) == 1 else { throw ProbeError("option dns_server must be an IPv4 address, not \(server)") }
        }
        let timeout = try options.int("dns_timeout_ms") ?? 1000
        guard (10...30_000).contains(timeout) else { throw ProbeError("option dns_timeout_ms must be between 10 and 30000") }
        resolver = (try options.bool("resolve_domains") ?? true) ? ReverseResolver(server: server, timeout: Double(timeout) / 1000) : nil
    }

    static let saddrOffset = MemoryLayout<is_network_event>.offset(of: \is_network_event.saddr)!
    static let daddrOffset = MemoryLayout<is_network_event>.offset(of: \is_network_event.daddr)!
    static let pathOffset = MemoryLayout<is_network_event>.offset(of: \is_network_event.unix_path)!

    /// The reverse-DNS thread ends with tracing.
    public func stop() { resolver?.stop() }

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        guard let e = record.load(as: is_network_event.self) else { return .malformed }
        let base = record.bytes.baseAddress!
        switch Int32(e.hdr.kind) {
        case Int32(IS_NET_CONNECT.rawValue): row.put(eventType, string: "connect")
        case Int32(IS_NET_ACCEPT.rawValue): row.put(eventType, string: "accept")
        case Int32(IS_NET_ACCEPT4.rawValue): row.put(eventType, string: "accept4")
        default: return .malformed
        }
        let fam = Int32(e.family)
        switch fam {
        case AF_INET: row.put(family, string: "AF_INET")
        case AF_INET6: row.put(family, string: "AF_INET6")
        case AF_UNIX: row.put(family, string: "AF_UNIX")
        case 0: row.put(family, string: "")
        default: row.put(family, prefix: "AF_", decimal: Int64(fam))
        }
        switch Int32(e.protocol) {
        case 6: row.put(protocolColumn, string: "tcp") // IPPROTO_TCP
        case 17: row.put(protocolColumn, string: "udp") // IPPROTO_UDP
        default: row.put(protocolColumn, string: fam == AF_UNIX ? "unix" : "")
        }
        var remote: UnsafeRawPointer?
        if fam == AF_INET || fam == AF_INET6 {
            let (s, d) = fam == AF_INET ? (saddr4, daddr4) : (saddr6, daddr6)
            writeAddress(fam, base + Self.saddrOffset, into: row, column: s)
            writeAddress(fam, base + Self.daddrOffset, into: row, column: d)
            row.put(sport, decimal: Int64(e.sport))
            row.put(dport, decimal: Int64(e.dport))
            remote = base + (e.hdr.kind == UInt16(IS_NET_CONNECT.rawValue) ? Self.daddrOffset : Self.saddrOffset)
        } else if fam == AF_UNIX {
            writeUnixPath(base + Self.pathOffset, length: min(Int(e.unix_path_len), Int(IS_UNIX_PATH_LEN)), into: row)
        }
        if let remote, let resolver {
            let bytes = Array(UnsafeRawBufferPointer(start: remote, count: fam == AF_INET ? 4 : 16))
            if !ReverseResolver.isPrivate(family: fam, bytes),
                case .name(let name) = resolver.name(for: .init(family: fam, bytes: remote))
            {
                name.withUnsafeBytes { row.put(domain, bytes: $0.baseAddress!, length: $0.count) }
            } else {
                row.putNull(domain)
            }
        } else {
            row.putNull(domain)
        }
        return .row
    }

    private func writeAddress(_ family: Int32, _ bytes: UnsafeRawPointer, into row: RowWriter, column: some TextValued) {
        scratch.withUnsafeMutableBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { text in
                guard inet_ntop(family, bytes, text, socklen_t(b.count)) != nil else { return }
                row.put(column, bytes: UnsafeRawPointer(text), length: strlen(text))
            }
        }
    }

    private func writeUnixPath(_ p: UnsafeRawPointer, length: Int, into row: RowWriter) {
        let bytes = p.assumingMemoryBound(to: UInt8.self)
        guard length > 0 else { return }
        if bytes[0] != 0 {
            var n = 0
            while n < length, bytes[n] != 0 { n += 1 }
            row.put(unixPath, bytes: p, length: n)
            return
        }
        // Abstract: "@" + the name up to its trailing zero bytes.
        var end = length
        while end > 1, bytes[end - 1] == 0 { end -= 1 }
        guard end > 1 else { return }
        scratch.withUnsafeMutableBufferPointer { b in
            b[0] = UInt8(ascii: "@")
            let count = min(end - 1, b.count - 1)
            for i in 0..<count { b[1 + i] = bytes[1 + i] }
            row.put(unixPath, bytes: UnsafeRawPointer(b.baseAddress!), length: 1 + count)
        }
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(NetworkProbe.self) }
