import CInfraSightEvent
import Foundation
import InfraSightCore
import InfraSightTestSupport
import Testing

// Decoder tests without a kernel: each first-party plugin library from the build is
// loaded through the host's own loader (dlopen, descriptor checks; no BPF object is
// opened or loaded, so no privilege is needed) and fed synthetic ring-buffer records,
// built from the C structs of each plugin's record header (Plugins/<name>/record), through
// `PluginChannel.handle`, the call the dispatcher makes for every record.
// `swift build` must have run: the tests use the real `libinfrasight-<name>.so` files.

/// One column of a decoded row, as the decoder and the host left it.
enum Cell: Equatable, CustomStringConvertible {
    /// Nothing wrote the column.
    case unset
    case null
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case string(String)

    init(_ row: RowBuffer, _ column: Int) {
        switch row.kinds[column] {
        case .unset: self = .unset
        case .null: self = .null
        case .uint: self = .uint(row.words[column])
        case .int: self = .int(Int64(bitPattern: row.words[column]))
        case .float: self = .float(Double(bitPattern: row.words[column]))
        case .string: self = .string(row.string(column)!)
        }
    }

    var description: String {
        switch self {
        case .unset: "unset"
        case .null: "NULL"
        case .uint(let v): "uint \(v)"
        case .int(let v): "int \(v)"
        case .float(let v): "float \(v)"
        case .string(let s): "string \(s.debugDescription)"
        }
    }
}

/// What became of one record, read from the channel's counters.
enum Outcome: Equatable, CustomStringConvertible {
    /// A row reached the consumer: every column of the table, by name.
    case row([String: Cell])
    /// Counted as a decode error; no row.
    case decodeError
    /// The plugin chose to produce no row.
    case skipped

    /// The row's columns (empty when there is no row), for tests that look at a few.
    var cells: [String: Cell] {
        if case .row(let cells) = self { return cells }
        return [:]
    }

    var description: String {
        switch self {
        case .row(let cells): "row [" + cells.keys.sorted().map { "\($0): \(cells[$0]!)" }.joined(separator: ", ") + "]"
        case .decodeError: "decode error"
        case .skipped: "skipped"
        }
    }
}

/// A real plugin library with one channel to feed it records, and an enricher whose host
/// root is a temporary directory (its own passwd; no cgroup2 mount, no container
/// runtime), so every enrichment column is known in advance.
final class DecoderHarness {
    static let nodeName = "decoder-test-node"
    /// The users in the harness's passwd: the standard header's uid is `auditor`.
    static let users: [UInt32: String] = [0: "root", 1500: "auditor"]

    final class Collector: RowConsumer {
        var last: [String: Cell]?
        func consume(_ row: RowBuffer, from channel: PluginChannel) {
            var cells: [String: Cell] = [:]
            for (i, column) in row.schema.columns.enumerated() { cells[column.name] = Cell(row, i) }
            last = cells
        }
    }

    let plugin: LoadedPlugin
    let enricher: Enricher
    let channel: PluginChannel
    private let collector = Collector()
    private let hostRoot: String

    /// Loads `libinfrasight-<name>.so` from the build and creates an instance with the
    /// plugin's own options (`json`, as the config would hand them over).
    init(_ name: String, options json: String = "{}") throws {
        let path = "\(Paths.realBinDir)/libinfrasight-\(name).so"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestFailure("\(path) does not exist: run `swift build` before the tests")
        }
        var loader = PluginLoader(pluginDirs: [Paths.realBinDir], pins: [:])
        plugin = try loader.load(path)
        hostRoot = try makeTempDir(prefix: "decoder-host")
        try FileManager.default.createDirectory(atPath: "\(hostRoot)/etc", withIntermediateDirectories: true)
        let passwd = Self.users.sorted { $0.key < $1.key }.map { "\($0.value):x:\($0.key):\($0.key)::/:/usr/sbin/nologin\n" }
        try passwd.joined().write(toFile: "\(hostRoot)/etc/passwd", atomically: true, encoding: .utf8)
        enricher = Enricher(nodeName: Self.nodeName, hostRoot: hostRoot)
        var options = PluginOptions()
        options.pluginJSON = json
        channel = PluginChannel(
            plugin: plugin, instance: try plugin.createInstance(options: options), enricher: enricher, consumer: collector)
    }

    deinit { try? FileManager.default.removeItem(atPath: hostRoot) }

    /// Hands `bytes` to the channel as the dispatcher hands a ring-buffer record (an
    /// 8-byte aligned copy, `bytes.count` as the record's length) and says what became
    /// of it.
    func feed(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
        let c = channel.counters
        let before = (c.received.load(ordering: .relaxed), c.decodeErrors.load(ordering: .relaxed),
                      c.skipped.load(ordering: .relaxed), c.rows.load(ordering: .relaxed))
        collector.last = nil
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        defer { p.deallocate() }
        bytes.withUnsafeBytes { if let base = $0.baseAddress { p.copyMemory(from: base, byteCount: $0.count) } }
        channel.handle(p, bytes.count)
        let received = c.received.load(ordering: .relaxed) - before.0
        let errors = c.decodeErrors.load(ordering: .relaxed) - before.1
        let skipped = c.skipped.load(ordering: .relaxed) - before.2
        let rows = c.rows.load(ordering: .relaxed) - before.3
        #expect(received == 1 && errors + skipped + rows == 1, "one record must be counted once", sourceLocation: sourceLocation)
        if errors == 1 { return .decodeError }
        if skipped == 1 { return .skipped }
        guard rows == 1, let cells = collector.last else {
            Issue.record("a row was counted but none reached the consumer", sourceLocation: sourceLocation)
            return .decodeError
        }
        return .row(cells)
    }

    /// Every column of the plugin's table as the host must fill it for a record with
    /// header `h` and as `plugin` says for the plugin's own columns; every other column
    /// unset. Call it right after `feed` (wall time uses the enricher's current offset
    /// between the monotonic and the real-time clock).
    /// `comm`: the expected command name when it is not `h.comm` up to its NUL.
    func expectedRow(_ h: is_event_header, comm: String? = nil, plugin: [String: Cell]) -> Outcome {
        let latency = h.ts_exit_ns >= h.ts_enter_ns ? h.ts_exit_ns - h.ts_enter_ns : 0
        let wall = enricher.wallTimeMs(monotonicNs: h.ts_enter_ns)
        let host: [String: Cell] = [
            "pid": .uint(UInt64(h.pid)), "uid": .uint(UInt64(h.uid)), "gid": .uint(UInt64(h.gid)),
            "ppid": .uint(UInt64(h.ppid)), "user_pid": .uint(UInt64(h.ns_pid)), "user_ppid": .uint(UInt64(h.ns_ppid)),
            "cgroup_id": .uint(h.cgroup_id), "comm": .string(comm ?? Records.cString(of: h)),
            "monotonic_ts_enter_ns": .uint(h.ts_enter_ns), "monotonic_ts_exit_ns": .uint(h.ts_exit_ns),
            "return_code": .int(h.return_code), "latency_ns": .uint(latency),
            "start_time_ns": .uint(h.start_time_ns), "parent_start_time_ns": .uint(h.parent_start_time_ns),
            "node_name": .string(Self.nodeName), "user": .string(Self.users[h.uid] ?? String(h.uid)),
            "latency_ms": .float(Double(latency) / 1e6), "wall_time_ms": .int(wall), "wall_time_dt": .int(wall),
            "cgroup_name": .string(""), "container_id": .string(""), "container_image": .string(""),
            "container_labels_json": .string("{}"),
        ]
        var row: [String: Cell] = [:]
        for column in self.plugin.tables[0].columns {
            row[column.name] = plugin[column.name] ?? host[column.name] ?? .unset
        }
        for name in plugin.keys where row[name] == nil { Issue.record("the table has no column \(name)") }
        return .row(row)
    }
}

/// Expects `actual` to be `expected`; for two rows, names only the columns that differ.
func expectSame(_ actual: Outcome, _ expected: Outcome, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual != expected else { return }
    var why = "got \(actual), expected \(expected)"
    if case .row(let got) = actual, case .row(let want) = expected {
        why = Set(got.keys).union(want.keys).sorted().filter { got[$0] != want[$0] }
            .map { "\($0): got \(got[$0].map(String.init(describing:)) ?? "no such column"), expected \(want[$0].map(String.init(describing:)) ?? "no such column")" }
            .joined(separator: "; ")
    }
    Issue.record("\(comment.map { "\($0): " } ?? "")\(why)", sourceLocation: sourceLocation)
}

/// Builds ring-buffer records from the shared C structs.
enum Records {
    static let sizeOffset = MemoryLayout<is_event_header>.offset(of: \is_event_header.size)!
    static let tableOffset = MemoryLayout<is_event_header>.offset(of: \is_event_header.table)!
    static let kindOffset = MemoryLayout<is_event_header>.offset(of: \is_event_header.kind)!
    static let commOffset = MemoryLayout<is_event_header>.offset(of: \is_event_header.comm)!
    static let headerSize = MemoryLayout<is_event_header>.size

    /// The header every test record starts from: distinct values in every member, a
    /// 2.5 ms call, the user `auditor`, a process started 1.5 s after its parent.
    static func header(kind: UInt16, size: Int, returnCode: Int64 = 0) -> is_event_header {
        var h = is_event_header()
        h.table = 0
        h.kind = kind
        h.size = UInt32(size)
        h.pid = 4242
        h.tid = 4243
        h.ppid = 4000
        h.uid = 1500
        h.gid = 4343
        h.ns_pid = 42
        h.ns_ppid = 1
        h.cgroup_id = 0x1_0000_0042
        h.ts_enter_ns = 7_000_000_000_000
        h.ts_exit_ns = 7_000_002_500_000
        h.return_code = returnCode
        set(&h.comm, Array("audit-test".utf8))
        h.start_time_ns = 6_500_000_000_123
        h.parent_start_time_ns = 6_498_500_000_456
        return h
    }

    /// Copies `bytes` into a fixed-size C array member (the rest keeps its bytes).
    static func set<Field>(_ field: inout Field, _ bytes: [UInt8]) {
        withUnsafeMutableBytes(of: &field) { b in
            precondition(bytes.count <= b.count, "\(bytes.count) bytes do not fit in \(b.count)")
            for (i, c) in bytes.enumerated() { b[i] = c }
        }
    }

    /// The memory of the record struct `value`, or its first `count` bytes.
    static func bytes<T>(of value: T, count: Int = MemoryLayout<T>.size) -> [UInt8] {
        precondition(!(value is any Collection), "bytes(of:) copies a struct's memory; use extended(_:to:) on a record")
        var value = value
        return withUnsafeBytes(of: &value) { Array($0.prefix(count)) }
    }

    /// `record` with its header's `size` member set to `size` (the bytes are not changed).
    static func declaring(_ size: Int, _ record: [UInt8]) -> [UInt8] {
        var r = record
        withUnsafeBytes(of: UInt32(size).littleEndian) { r.replaceSubrange(sizeOffset..<sizeOffset + 4, with: $0) }
        return r
    }

    /// `record` cut to `count` bytes, its size member saying so: what a producer that
    /// wrote a shorter record would send.
    static func truncated(_ record: [UInt8], to count: Int) -> [UInt8] {
        count < headerSize ? Array(record.prefix(count)) : declaring(count, Array(record.prefix(count)))
    }

    /// `record` grown to `count` bytes of 0xA5 filler, its size member saying so: a
    /// record from a newer producer that appended members.
    static func extended(_ record: [UInt8], to count: Int) -> [UInt8] {
        declaring(count, record + [UInt8](repeating: 0xA5, count: count - record.count))
    }

    /// `record` with `extra` bytes after the end its size member declares (the size is
    /// unchanged): the decoder must see only the declared bytes.
    static func withTrailingGarbage(_ record: [UInt8], _ extra: Int = 64) -> [UInt8] {
        record + [UInt8](repeating: 0xEE, count: extra)
    }

    /// `record` with its header's table index or kind replaced.
    static func withTable(_ table: UInt16, _ record: [UInt8]) -> [UInt8] { patch(record, at: tableOffset, table) }
    static func withKind(_ kind: UInt16, _ record: [UInt8]) -> [UInt8] { patch(record, at: kindOffset, kind) }

    /// `record` with the 16 bytes of its header's comm replaced by `comm` (padded with NUL).
    static func withComm(_ comm: [UInt8], _ record: [UInt8]) -> [UInt8] {
        precondition(comm.count <= Int(IS_COMM_LEN))
        var r = record
        r.replaceSubrange(commOffset..<commOffset + Int(IS_COMM_LEN), with: comm + [UInt8](repeating: 0, count: Int(IS_COMM_LEN) - comm.count))
        return r
    }

    static func patch<T: FixedWidthInteger>(_ record: [UInt8], at offset: Int, _ value: T) -> [UInt8] {
        var r = record
        withUnsafeBytes(of: value.littleEndian) { r.replaceSubrange(offset..<offset + MemoryLayout<T>.size, with: $0) }
        return r
    }

    /// The header's comm up to its NUL (valid UTF-8 in the standard header).
    static func cString(of h: is_event_header) -> String {
        var comm = h.comm
        let bytes = withUnsafeBytes(of: &comm) { Array($0.prefix { $0 != 0 }) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Strings that are not valid UTF-8 and what the host stores for them: every byte that
/// does not start a valid sequence becomes U+FFFD, one per byte; valid text is kept.
enum BadUTF8 {
    static let cases: [(bytes: [UInt8], stored: String)] = [
        (Array("/tmp/".utf8) + [0xFF], "/tmp/\u{FFFD}"),                      // never valid
        (Array("/a".utf8) + [0xC0, 0xAF] + Array("b".utf8), "/a\u{FFFD}\u{FFFD}b"), // overlong '/'
        (Array("/x".utf8) + [0xE2, 0x82], "/x\u{FFFD}\u{FFFD}"),               // cut at the end
        ([0xED, 0xA0, 0x80] + Array("/s".utf8), "\u{FFFD}\u{FFFD}\u{FFFD}/s"), // a surrogate
        ([0xF4, 0x90, 0x80, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"),         // past U+10FFFF
        (Array("/caf\u{E9}/\u{65E5}\u{672C}/\u{1F600}".utf8), "/caf\u{E9}/\u{65E5}\u{672C}/\u{1F600}"), // valid: kept
    ]
}

/// One good record of a plugin and what the plugin writes for it, for the checks every
/// decoder must pass (see `EveryDecoderTests`).
struct Sample {
    let header: is_event_header
    let bytes: [UInt8]
    /// The plugin's own columns for `bytes`.
    let columns: [String: Cell]
    /// The shortest record the decoder accepts: its struct, or its fixed part.
    let fixedPart: Int
    /// The kinds the decoder knows (any other is a decode error), or nil when it does
    /// not read the kind.
    let kinds: ClosedRange<UInt16>?
    /// The plugin's options for the harness.
    var options = "{}"
}
