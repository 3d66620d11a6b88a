import CInfraSightABI
import CInfraSightEvent
import Foundation
@testable import InfraSightCore
import InfraSightPipeline
import InfraSightPipelineProto
import InfraSightSchema
import InfraSightTestSupport
import Logging
import Synchronization
import Testing

/// The row writer keeps the header's promise: a value lands only where its column holds
/// it exactly; anything else is a decode error, never a truncated value.
struct ColumnAcceptanceTests {
    @Test func integersLandOnlyWithinTheirColumnsRange() {
        let u8 = ColumnAcceptance(.uint8), i16 = ColumnAcceptance(.int16), u64 = ColumnAcceptance(.uint64), i64 = ColumnAcceptance(.int64)
        #expect(u8.accepts(uint: 255) && !u8.accepts(uint: 256))
        #expect(u8.accepts(int: 0) && !u8.accepts(int: -1) && !u8.accepts(int: 256))
        #expect(i16.accepts(int: -32768) && i16.accepts(int: 32767) && !i16.accepts(int: 32768) && !i16.accepts(int: -32769))
        #expect(i16.accepts(uint: 32767) && !i16.accepts(uint: 32768))
        #expect(u64.accepts(uint: .max) && !u64.accepts(int: -1))
        #expect(i64.accepts(int: .min) && !i64.accepts(uint: UInt64(Int64.max) + 1))
        // A whole float in range is the same number; a fraction or NaN is not.
        #expect(u8.accepts(float: 200) && !u8.accepts(float: 1.5) && !u8.accepts(float: 256) && !u8.accepts(float: .nan) && !u8.accepts(float: -1))
        #expect(i64.accepts(float: -9.0e18) && !i64.accepts(float: 1.0e19))
        #expect(u64.accepts(float: 1.0e19) && !u64.accepts(float: .infinity))
        #expect(!u8.acceptsString && !u8.nullable)
    }

    @Test func floatsTakeExactIntegersAndAnyFloat() {
        let f32 = ColumnAcceptance(.float32), f64 = ColumnAcceptance(.float64)
        #expect(f64.accepts(uint: 1 << 53) && !f64.accepts(uint: (1 << 53) + 1))
        #expect(f32.accepts(int: 1 << 24) && !f32.accepts(int: (1 << 24) + 1))
        #expect(f64.accepts(float: 0.1) && f64.accepts(float: .nan) && f32.accepts(float: 0.1) && f32.accepts(float: .infinity))
        #expect(!f32.accepts(float: 1.0e39)) // finite, but Float32 would make it infinite
        #expect(!f64.acceptsString)
    }

    @Test func timeColumnsTakeEpochMillisecondsTheyCanHold() {
        let dt = ColumnAcceptance(.dateTime), dt3 = ColumnAcceptance(.dateTime64(precision: 3)), dt9 = ColumnAcceptance(.dateTime64(precision: 9))
        #expect(dt.accepts(int: 1_700_000_000_123) && !dt.accepts(int: -1) && !dt.accepts(uint: (UInt64(UInt32.max) + 1) * 1000))
        #expect(dt3.accepts(int: -86_400_000) && dt3.accepts(int: .max))
        // Nanoseconds in an Int64 reach the year 2262: milliseconds beyond would wrap.
        #expect(dt9.accepts(int: 9_223_372_036_854) && !dt9.accepts(int: 9_223_372_036_855) && !dt9.accepts(int: -9_223_372_036_855))
        #expect(dt3.accepts(float: 1000) && !dt3.accepts(float: 1000.5) && !dt3.acceptsString)
    }

    @Test func stringsGoToStringAndJSONColumnsAndNullOnlyToNullable() {
        #expect(ColumnAcceptance(.string).acceptsString && ColumnAcceptance(.json).acceptsString)
        #expect(!ColumnAcceptance(.string).accepts(uint: 1) && !ColumnAcceptance(.json).accepts(float: 1))
        #expect(!ColumnAcceptance(.string).nullable && ColumnAcceptance(.nullable(.string)).nullable)
        let n = ColumnAcceptance(.nullable(.uint8))
        #expect(n.nullable && n.accepts(uint: 3) && !n.accepts(uint: 300) && !n.acceptsString)
    }
}

/// A decoder fed through the real decode path (`PluginChannel.handle`) by a descriptor
/// made here: each record after its header is a list of (op, column, value) writes.
@Suite(.serialized) struct WrongKindDecodeTests {
    static let ddl = "CREATE TABLE IF NOT EXISTS audit.kinds (pid UInt32, small UInt8, big UInt64, ratio Float64, name String, maybe Nullable(String)) ENGINE = MergeTree() ORDER BY pid"
    enum Op: UInt32 { case uint = 1, int, float, string, null }

    final class Collector: RowConsumer {
        var rows: [[String?]] = []
        func consume(_ row: RowBuffer, from channel: PluginChannel) {
            rows.append((0..<row.columnCount).map { i in
                switch row.kinds[i] {
                case .uint: "\(row.words[i])"
                case .int: "\(Int64(bitPattern: row.words[i]))"
                case .float: "\(Double(bitPattern: row.words[i]))"
                case .string: row.string(i)
                case .null: "NULL"
                case .unset: nil
                }
            })
        }
    }

    func channel(logger: Logger? = nil) throws -> (PluginChannel, Collector) {
        var d = is_plugin_descriptor()
        d.abi_major = UInt16(IS_PLUGIN_ABI_MAJOR)
        d.abi_minor = UInt16(IS_PLUGIN_ABI_MINOR)
        d.name = UnsafePointer(strdup("kinds"))
        d.decode = { _, record, size, writer in
            guard let record, let writer else { return IS_DECODE_ERROR }
            var offset = MemoryLayout<is_event_header>.size
            while offset + 16 <= size {
                let op = record.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                let column = record.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                let value = record.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
                let w = writer.pointee
                switch op {
                case 1: w.put_uint(w.host, column, value)
                case 2: w.put_int(w.host, column, Int64(bitPattern: value))
                case 3: w.put_float(w.host, column, Double(bitPattern: value))
                case 4: "text".withCString { w.put_string(w.host, column, $0, 4) }
                default: w.put_null(w.host, column)
                }
                offset += 16
            }
            return IS_DECODE_ROW
        }
        let plugin = LoadedPlugin(path: "/test", sha256: "", descriptor: d, tables: [try TableSchema(ddl: Self.ddl)], derivedColumns: [:], options: [])
        let collector = Collector()
        return (PluginChannel(plugin: plugin, instance: OpaquePointer(bitPattern: 1)!, enricher: Enricher(nodeName: "t"), consumer: collector, logger: logger), collector)
    }

    func feed(_ channel: PluginChannel, _ writes: [(Op, UInt32, UInt64)]) {
        var bytes = [UInt8](repeating: 0, count: MemoryLayout<is_event_header>.size)
        for (op, column, value) in writes {
            withUnsafeBytes(of: op.rawValue.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: column.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
        }
        let size = UInt32(bytes.count)
        withUnsafeBytes(of: size) { b in for i in 0..<4 { bytes[MemoryLayout<is_event_header>.offset(of: \is_event_header.size)! + i] = b[i] } }
        bytes.withUnsafeBytes { channel.handle($0.baseAddress!, $0.count) }
    }

    @Test func valuesOfTheWrongKindAreCountedAsDecodeErrorsAndNeverTruncated() throws {
        let lines = LogLines()
        let (channel, collector) = try channel(logger: lines.logger)
        let good: [(Op, UInt32, UInt64)] = [(.uint, 1, 255), (.int, 2, 7), (.float, 3, (0.25).bitPattern), (.string, 4, 0), (.null, 5, 0)]
        feed(channel, good)
        let wrong: [[(Op, UInt32, UInt64)]] = [
            [(.uint, 1, 300)],                              // 300 in a UInt8 was 44
            [(.int, 2, UInt64(bitPattern: -1))],            // -1 in a UInt64 was 2^64-1
            [(.string, 1, 0)],                              // a string in a UInt8 was 0
            [(.float, 1, (1.5).bitPattern)],                // 1.5 in a UInt8 was 1
            [(.null, 4, 0)],                                // NULL in a String was ""
            [(.uint, 4, 9)],                                // a number in a String was ""
            [(.uint, 1, 300), (.uint, 1, 3)],               // overwritten with a good value: still an error
        ]
        for record in wrong { feed(channel, record) }
        feed(channel, good)
        #expect(channel.counters.received.load(ordering: .relaxed) == 9)
        #expect(channel.counters.rows.load(ordering: .relaxed) == 2)
        #expect(channel.counters.decodeErrors.load(ordering: .relaxed) == 7)
        #expect(channel.counters.wrongKind.load(ordering: .relaxed) == 7)
        #expect(collector.rows.count == 2)
        #expect(collector.rows.first == ["0", "255", "7", "0.25", "text", "NULL"])
        // Logged once per column, however many records.
        #expect(lines.messages == [
            "warning plugin kinds: its decoder writes an unsigned integer that column small (UInt8) of audit.kinds cannot hold; such records are counted as decode errors",
            "warning plugin kinds: its decoder writes a signed integer that column big (UInt64) of audit.kinds cannot hold; such records are counted as decode errors",
            "warning plugin kinds: its decoder writes NULL that column name (String) of audit.kinds cannot hold; such records are counted as decode errors",
        ])
    }

    @Test func aColumnPastTheTableIsADecodeErrorToo() throws {
        let (channel, collector) = try channel()
        feed(channel, [(.uint, 99, 1)])
        #expect(channel.counters.decodeErrors.load(ordering: .relaxed) == 1)
        #expect(channel.counters.wrongKind.load(ordering: .relaxed) == 0)
        #expect(collector.rows.isEmpty)
    }
}

/// What a plugin logs through the host is one bounded line.
struct PluginLogTests {
    @Test func aMessageBecomesOneLineOfAtMost1024Bytes() {
        #expect(PluginLog.line("two\nlines\r\tand\u{7}bell") == "two lines  and bell")
        #expect(PluginLog.line("é\u{85}\u{2028}x") == "é  x")
        let long = String(repeating: "a", count: 5000)
        #expect(PluginLog.line(long).utf8.count == 1024)
        // A character cut at the limit is repaired, not passed on half.
        let cut = String(repeating: "a", count: 1023) + "é"
        #expect(PluginLog.line(cut) == String(repeating: "a", count: 1023) + "\u{FFFD}")
        #expect(PluginLog.line(nil) == "")
    }

    @Test func levelsMapOntoSwiftLogAndUnknownOnesAreErrors() {
        #expect(PluginLog.level(IS_LOG_DEBUG) == .debug)
        #expect(PluginLog.level(IS_LOG_INFO) == .info)
        #expect(PluginLog.level(IS_LOG_NOTICE) == .notice)
        #expect(PluginLog.level(IS_LOG_WARNING) == .warning)
        #expect(PluginLog.level(IS_LOG_ERROR) == .error)
        #expect(PluginLog.level(77) == .error)
    }

    @Test func linesGoThroughTheLoggerNamingThePlugin() {
        let lines = LogLines()
        let log = PluginLog(plugin: "demo", logger: lines.logger)
        log.log(level: IS_LOG_NOTICE, "ready")
        #expect(lines.messages == ["notice plugin demo: ready"])
    }
}

/// Which columns a table's plugin declares derived, as the host checks them.
struct DerivedColumnDeclarationTests {
    let ddl = "CREATE TABLE IF NOT EXISTS audit.x (request Int64, request_name String, latency_ns UInt64, latency_ms Float64, wall_time_ms Int64, wall_time_dt DateTime64(3)) ENGINE = MergeTree() ORDER BY request"

    @Test func theStandardDeclarationsAreTheHostsTimeColumnsTheTableHas() throws {
        let table = try TableSchema(ddl: ddl)
        #expect(DerivedColumn.standard(in: table).map(\.description) == ["latency_ms = milliseconds_from_nanoseconds(latency_ns)", "wall_time_dt = time_from_milliseconds(wall_time_ms)"])
        let noLatency = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.y (wall_time_ms Int64, wall_time_dt DateTime, latency_ms Float64) ENGINE = MergeTree() ORDER BY wall_time_ms")
        #expect(DerivedColumn.standard(in: noLatency).map(\.column) == ["wall_time_dt"])
        let wrongType = try TableSchema(ddl: "CREATE TABLE IF NOT EXISTS audit.z (latency_ns UInt64, latency_ms String) ENGINE = MergeTree() ORDER BY latency_ns")
        #expect(DerivedColumn.standard(in: wrongType).isEmpty)
    }

    @Test func theWireFormRoundTripsAndUnknownKindsAreRefused() {
        let d = DerivedColumn(column: "request_name", source: "request", kind: .codeName(table: "ptrace_request"))
        let wire = Infrasight_V1_DerivedColumn(d)
        #expect(wire.kind == "code_name" && wire.codeTable == "ptrace_request")
        #expect(DerivedColumn(column: wire.column, source: wire.source, kindName: wire.kind, codeTable: wire.codeTable) == d)
        #expect(DerivedColumn(column: "a", source: "b", kindName: "sha256_of", codeTable: "") == nil)
        #expect(DerivedColumn(column: "a", source: "b", kindName: "code_name", codeTable: "") == nil)
    }
}

/// The agent leaves out what its plugins declare derived and tells the server which in
/// its hello; the server takes an agent's declarations only when it can compute them.
struct DerivedColumnPipelineTests {
    let ptrace = TableSchema(database: "audit", name: "ptrace_events", columns: [
        Column(name: "request", type: .int64), Column(name: "request_name", type: .string),
        Column(name: "latency_ns", type: .uint64), Column(name: "latency_ms", type: .float64),
    ], ddl: "", tail: "ENGINE = MergeTree() ORDER BY request")
    let vendor = TableSchema(database: "audit", name: "vendor_events", columns: [
        Column(name: "op", type: .int64), Column(name: "op_name", type: .string),
        Column(name: "latency_ns", type: .uint64), Column(name: "latency_ms", type: .float64),
    ], ddl: "", tail: "ENGINE = MergeTree() ORDER BY op")
    let opName = DerivedColumn(column: "op_name", source: "op", kind: .codeName(table: "ptrace_request"))

    @Test func theAgentLeavesOutWhatItsPluginsDeclareAndTheHelloSaysSo() throws {
        let spool = try BatchSpool(directory: try makeTempDir(prefix: "spool"), maxBytes: 1 << 20)
        let store = SpoolStore(spool: spool, derived: ["audit.vendor_events": [opName], "audit.ptrace_events": []]) {}
        let prepared = try store.prepare([ptrace, vendor])
        #expect(prepared[0].columns.map(\.name) == ["request", "request_name", "latency_ns", "latency_ms"])
        #expect(prepared[1].columns.map(\.name) == ["op", "latency_ns", "latency_ms"])
        let hello = SpoolStore.definition(of: vendor, derived: [opName, DerivedColumn(column: "op_name", source: "op", kind: .codeName(table: "unknown_codes"))])
        #expect(hello.name == "audit.vendor_events" && hello.ddl == vendor.statement)
        #expect(hello.derivedColumns == [Infrasight_V1_DerivedColumn(opName)])
        // Not derivable here (an unknown code table): sent, and not declared to the server.
        let unknown = SpoolStore.definition(of: vendor, derived: [DerivedColumn(column: "op_name", source: "op", kind: .codeName(table: "unknown_codes"))])
        #expect(unknown.derivedColumns.isEmpty)
        // Without the plugins' declarations: what agents before them left out.
        let legacy = try SpoolStore(spool: spool) {}.prepare([ptrace, vendor])
        #expect(legacy[0].columns.map(\.name) == ["request", "latency_ns"])
        #expect(legacy[1].columns.map(\.name) == ["op", "op_name", "latency_ns"])
    }

    @Test func theServerTakesOnlyDeclarationsItCanCompute() throws {
        var definition = SpoolStore.definition(of: vendor, derived: [opName] + DerivedColumn.standard(in: vendor))
        #expect(try DerivedColumn.declared(in: definition, table: vendor) == [opName] + DerivedColumn.standard(in: vendor))
        #expect(try DerivedColumn.declared(in: SpoolStore.definition(of: vendor, derived: []), table: vendor) == nil)
        func refusal(_ change: (inout Infrasight_V1_DerivedColumn) -> Void) -> String {
            var d = Infrasight_V1_DerivedColumn(opName)
            change(&d)
            definition.derivedColumns = [d]
            do {
                _ = try DerivedColumn.declared(in: definition, table: vendor)
                return "accepted"
            } catch {
                return error.description
            }
        }
        #expect(refusal { $0.kind = "rot13" } == "table audit.vendor_events: derived column op_name has the unknown kind 'rot13'")
        #expect(refusal { $0.codeTable = "other_codes" } == "table audit.vendor_events: the agent's derived columns cannot be computed here: op_name: unknown code table other_codes")
        #expect(refusal { $0.source = "op_name" } == "table audit.vendor_events: the agent's derived columns cannot be computed here: op_name: its source op_name is itself derived")
        #expect(refusal { $0.column = "x; DROP TABLE y" } == "table audit.vendor_events: a derived column names 'x; DROP TABLE y', 'op' or 'ptrace_request', not plain names")
        definition.derivedColumns = Array(repeating: Infrasight_V1_DerivedColumn(opName), count: 5)
        #expect(throws: PipelineError.self) { try DerivedColumn.declared(in: definition, table: vendor) }
    }
}
