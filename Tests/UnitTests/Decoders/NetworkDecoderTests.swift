import CInfraSightEvent
import Glibc
import InfraSightCore
import NetworkRecord
import Testing

/// Builds `network` records.
enum NetworkRecords {
    static let size = MemoryLayout<is_network_event>.size

    static func kind(_ k: is_network_kind) -> UInt16 { UInt16(k.rawValue) }

    /// An address's 16 bytes from its text (IPv4 in the first four, the rest `fill`).
    static func address(_ text: String, fill: UInt8 = 0) -> [UInt8] {
        var out = [UInt8](repeating: fill, count: 16)
        if text.contains(":") {
            precondition(inet_pton(AF_INET6, text, &out) == 1, text)
        } else {
            var v4 = [UInt8](repeating: 0, count: 4)
            precondition(inet_pton(AF_INET, text, &v4) == 1, text)
            out.replaceSubrange(0..<4, with: v4)
        }
        return out
    }

    static func event(
        _ kind: is_network_kind, family: Int32, protocol proto: UInt16 = 6, saddr: [UInt8] = [], sport: UInt16 = 0,
        daddr: [UInt8] = [], dport: UInt16 = 0, fd: Int32 = 5, unixPath: [UInt8] = [], unixPathLength: Int? = nil,
        returnCode: Int64 = 0
    ) -> (header: is_event_header, bytes: [UInt8]) {
        var e = is_network_event()
        e.hdr = Records.header(kind: Self.kind(kind), size: size, returnCode: returnCode)
        e.family = UInt16(family)
        e.protocol = proto
        e.sport = sport
        e.dport = dport
        Records.set(&e.saddr, saddr)
        Records.set(&e.daddr, daddr)
        e.fd = fd
        Records.set(&e.unix_path, unixPath)
        e.unix_path_len = UInt32(unixPathLength ?? unixPath.count)
        e.sockaddr_ptr = 0x7ffc_0000_1000 // kernel side only
        return (e.hdr, Records.bytes(of: e))
    }

    /// A TCP connect from 10.0.0.5:40000 to 93.184.216.34:443 (bytes after the four of
    /// each IPv4 address are garbage: only four are read).
    static func connect4() -> (header: is_event_header, bytes: [UInt8]) {
        event(IS_NET_CONNECT, family: AF_INET, saddr: address("10.0.0.5", fill: 0xAB), sport: 40000,
              daddr: address("93.184.216.34", fill: 0xCD), dport: 443, returnCode: 0)
    }

    /// What the plugin writes for a row of `eventType` in `family`, with the columns of
    /// the other families unset.
    static func columns(_ eventType: String, family: String, protocol proto: String, _ more: [String: Cell]) -> [String: Cell] {
        ["event_type": .string(eventType), "sa_family": .string(family), "protocol": .string(proto),
         "resolved_domain": .null].merging(more) { $1 }
    }
}

/// The `network` decoder on synthetic records: every family's columns exact, unix paths
/// bounded (abstract names as `@name`), malformed records counted as decode errors.
/// Reverse DNS is off (resolve_domains: false) except where a test says otherwise, so no
/// test sends a query.
@Suite struct NetworkDecoderTests {
    typealias N = NetworkRecords
    static let noDNS = #"{"resolve_domains":false}"#

    @Test func anIPv4ConnectBecomesARowWithEveryColumnExact() throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let sample = N.sample
        expectSame(d.feed(sample.bytes), d.expectedRow(sample.header, plugin: sample.columns))
    }

    @Test func anIPv6AcceptFillsTheIPv6ColumnsWithThePeerAsSource() throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let (h, bytes) = N.event(IS_NET_ACCEPT4, family: AF_INET6, saddr: N.address("2001:db8::7"), sport: 51234,
                                 daddr: N.address("2001:db8:0:1::80"), dport: 8080, fd: 9, returnCode: 9)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: N.columns("accept4", family: "AF_INET6", protocol: "tcp", [
            "saddr_ipv6": .string("2001:db8::7"), "sport": .string("51234"),
            "daddr_ipv6": .string("2001:db8:0:1::80"), "dport": .string("8080"),
        ])))
    }

    @Test func aV4MappedIPv6AddressIsShownAsSuch() throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let (_, bytes) = N.event(IS_NET_ACCEPT, family: AF_INET6, saddr: N.address("::ffff:192.0.2.1"), sport: 1,
                                 daddr: N.address("::"), dport: 65535)
        let cells = d.feed(bytes).cells
        #expect(cells["event_type"] == .string("accept"))
        #expect(cells["saddr_ipv6"] == .string("::ffff:192.0.2.1"))
        #expect(cells["daddr_ipv6"] == .string("::"))
        #expect(cells["sport"] == .string("1") && cells["dport"] == .string("65535"))
    }

    @Test(arguments: [(UInt16(6), "tcp"), (17, "udp"), (0, ""), (132, "")])
    func theProtocolIsNamedForTCPAndUDPOnly(number: UInt16, name: String) throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let (_, bytes) = N.event(IS_NET_CONNECT, family: AF_INET, protocol: number, saddr: N.address("10.1.1.1"),
                                 daddr: N.address("10.1.1.2"), dport: 53)
        #expect(d.feed(bytes).cells["protocol"] == .string(name))
    }

    @Test func aUnixPathEndsAtItsNULAndNamesNoAddressOrPort() throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let path = Array("/run/app.sock".utf8) + [0] + Array("stale bytes".utf8)
        let (h, bytes) = N.event(IS_NET_CONNECT, family: AF_UNIX, protocol: 0, sport: 7, dport: 8, unixPath: path,
                                 unixPathLength: Int(IS_UNIX_PATH_LEN), returnCode: -111)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: N.columns("connect", family: "AF_UNIX", protocol: "unix", [
            "unix_path": .string("/run/app.sock"),
        ])))
    }

    @Test(arguments: [Int(IS_UNIX_PATH_LEN), Int(IS_UNIX_PATH_LEN) + 1, 4096, Int(UInt32.max)])
    func aUnixPathWithoutNULIsCutAtItsField(length: Int) throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let path = [UInt8](repeating: UInt8(ascii: "p"), count: Int(IS_UNIX_PATH_LEN))
        let (_, bytes) = N.event(IS_NET_CONNECT, family: AF_UNIX, protocol: 0, unixPath: path, unixPathLength: length)
        #expect(d.feed(bytes).cells["unix_path"] == .string(String(repeating: "p", count: Int(IS_UNIX_PATH_LEN))))
    }

    static let abstractCases: [(path: [UInt8], length: Int, stored: Cell)] = [
        ([0] + Array("my-abstract".utf8) + [0, 0, 0], 15, .string("@my-abstract")), // trailing zeros dropped
        ([0] + Array("a\0b".utf8), 4, .string("@a\0b")),                            // inner zeros kept
        ([0, 0, 0], 3, .unset),                                                    // nothing but zeros
        (Array("/ignored".utf8), 0, .unset),                                       // no path (unnamed socket)
        ([0] + [UInt8](repeating: UInt8(ascii: "z"), count: 107), 4096, .string("@" + String(repeating: "z", count: 107))),
    ]

    @Test(arguments: abstractCases)
    func anAbstractNameIsShownWithAnAt(path: [UInt8], length: Int, stored: Cell) throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let (_, bytes) = N.event(IS_NET_ACCEPT, family: AF_UNIX, protocol: 0, unixPath: path, unixPathLength: length)
        #expect(d.feed(bytes).cells["unix_path"] == stored)
    }

    @Test(arguments: BadUTF8.cases)
    func invalidUTF8InAUnixPathIsRepaired(bytes path: [UInt8], stored: String) throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let (_, bytes) = N.event(IS_NET_CONNECT, family: AF_UNIX, protocol: 0, unixPath: path)
        #expect(d.feed(bytes).cells["unix_path"] == .string(stored))
    }

    @Test(arguments: [(Int32(0), ""), (AF_NETLINK, "AF_16"), (AF_PACKET, "AF_17"), (0xFFFF, "AF_65535")])
    func otherFamiliesAreNamedByNumberWithNoAddresses(family: Int32, name: String) throws {
        let d = try DecoderHarness("network", options: Self.noDNS)
        let (h, bytes) = N.event(IS_NET_CONNECT, family: family, protocol: 0, saddr: N.address("10.0.0.1"), sport: 1,
                                 daddr: N.address("10.0.0.2"), dport: 2, unixPath: Array("/x".utf8))
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: N.columns("connect", family: name, protocol: "", [:])))
    }

    @Test func aPrivateRemoteIsNeverLookedUp() throws {
        // Reverse DNS on (the default): private, loopback and link-local remotes stay NULL.
        let d = try DecoderHarness("network")
        for (family, remote) in [(AF_INET, "192.168.1.10"), (AF_INET, "127.0.0.1"), (AF_INET6, "::1"), (AF_INET6, "fe80::1")] {
            let (_, bytes) = N.event(IS_NET_CONNECT, family: family, saddr: N.address(family == AF_INET ? "10.0.0.5" : "fd00::5"),
                                     daddr: N.address(remote), dport: 22)
            let cells = d.feed(bytes).cells
            #expect(cells["resolved_domain"] == .null, "\(remote)")
            #expect(cells[family == AF_INET ? "daddr_ipv4" : "daddr_ipv6"] == .string(remote))
        }
    }
}

extension NetworkRecords {
    static var sample: Sample {
        let (h, bytes) = connect4()
        return Sample(
            header: h, bytes: bytes,
            columns: columns("connect", family: "AF_INET", protocol: "tcp", [
                "saddr_ipv4": .string("10.0.0.5"), "sport": .string("40000"),
                "daddr_ipv4": .string("93.184.216.34"), "dport": .string("443"),
            ]),
            fixedPart: size, kinds: kind(IS_NET_CONNECT)...kind(IS_NET_ACCEPT4), options: NetworkDecoderTests.noDNS)
    }
}
