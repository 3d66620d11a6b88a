import CInfraSightEvent
import Foundation
import Glibc
@testable import InfraSightCore
import InfraSightTestSupport
import Testing

/// The ABI does what its header says, with plugins built against other versions of it:
/// every struct and array element read by its own struct_size, members a plugin lacks
/// taken as absent, and the host's log offered at create.
@Suite(.serialized) struct PluginABICompatibilityTests {
    func load(_ path: String) throws -> LoadedPlugin {
        var loader = PluginLoader(pluginDirs: [(path as NSString).deletingLastPathComponent], pins: [:])
        return try loader.load(path)
    }

    @Test func aPluginWithLargerStructsThanTheHostKnowsIsReadRightFromTheSecondElementOn() throws {
        let dir = try makeTempDir()
        try ABIFixture.buildLarger("\(dir)/abi_big.so", name: "abi_big")
        let plugin = try load("\(dir)/abi_big.so")
        #expect(plugin.name == "abi_big")
        #expect(plugin.version == "9.9.9")
        #expect(plugin.summary == "larger structs than the host knows")
        #expect(plugin.abi == "1.2")
        #expect(plugin.tables.map(\.qualifiedName) == ["audit.abi_one", "audit.abi_two"])
        #expect(plugin.tables.map(\.columns.count) == [4, 4])
        #expect(plugin.options == [
            PluginOptionInfo(name: "first", type: "int", description: "the first", defaultValue: "1"),
            PluginOptionInfo(name: "second", type: "string", description: "the second", defaultValue: "two"),
            PluginOptionInfo(name: "third", type: "bool", description: "the third", defaultValue: nil),
        ])
        #expect(plugin.derivedColumns["audit.abi_one"] == [
            DerivedColumn(column: "took_ms", source: "took_ns", kind: .millisecondsFromNanoseconds),
            DerivedColumn(column: "op_name", source: "op", kind: .codeName(table: "ptrace_request")),
        ])
        // The second table has the member and declares nothing: nothing, not the fallback.
        #expect(plugin.derivedColumns["audit.abi_two"] == [])

        // create_with_input is called with the host's log; the plugin reads the host's
        // input only as far as its struct_size goes.
        let lines = LogLines()
        var options = PluginOptions()
        options.pluginJSON = "{\"first\":2}"
        let instance = try plugin.createInstance(options: options, logger: lines.logger)
        #expect(Int(bitPattern: UnsafeRawPointer(instance)) == 2)
        #expect(lines.messages == ["warning plugin abi_big: created with {\"first\":2}; the host's input lacks future_a"])
        // stop (1.2) is read, and called with the instance.
        let stop = try #require(plugin.descriptor.stop)
        stop(instance)
        #expect(lines.messages.last == "info plugin abi_big: instance 2 stopped")
    }

    @Test func aPluginBuiltAgainstABI1_0LoadsWithTheHostsFallbacks() throws {
        let dir = try makeTempDir()
        try ABIFixture.buildVersion10("\(dir)/abi_old.so", name: "abi_old")
        let plugin = try load("\(dir)/abi_old.so")
        #expect(plugin.abi == "1.0")
        #expect(plugin.tables.map(\.qualifiedName) == ["audit.abi_old"])
        #expect(plugin.options.map(\.name) == ["alpha", "beta"])
        #expect(plugin.options.last == PluginOptionInfo(name: "beta", type: "string-list", description: "b", defaultValue: nil))
        // No derived_columns member: the host's time columns, as before 1.1.
        #expect(plugin.derivedColumns["audit.abi_old"] == [
            DerivedColumn(column: "latency_ms", source: "latency_ns", kind: .millisecondsFromNanoseconds),
            DerivedColumn(column: "wall_time_dt", source: "wall_time_ms", kind: .timeFromMilliseconds),
        ])
        // No create_with_input: create, and no log.
        let lines = LogLines()
        let instance = try plugin.createInstance(options: PluginOptions(), logger: lines.logger)
        #expect(Int(bitPattern: UnsafeRawPointer(instance)) == 3)
        #expect(lines.messages.isEmpty)
        // No stop member (1.2): absent, whatever follows the plugin's struct in memory.
        #expect(plugin.descriptor.stop == nil)
    }

    /// Collects each row's columns by name, as numbers (strings as their text).
    final class Rows: RowConsumer {
        var rows: [[String: String]] = []
        func consume(_ row: RowBuffer, from channel: PluginChannel) {
            var cells: [String: String] = [:]
            for (i, column) in row.schema.columns.enumerated() {
                cells[column.name] = row.kinds[i] == .string ? row.string(i) : "\(row.words[i])"
            }
            rows.append(cells)
        }
    }

    @Test func recordsOfAPluginBuiltBeforeABI1_2AreReadWithTheOlderHeaderAndGetNoStartTimes() throws {
        let dir = try makeTempDir()
        try ABIFixture.buildVersion10("\(dir)/abi_old.so", name: "abi_old")
        let plugin = try load("\(dir)/abi_old.so")
        let instance = try plugin.createInstance(options: PluginOptions())
        // The plugin's record: the 88-byte header of ABI 1.0/1.1 (the first members of
        // today's, which only appended), then its own 8 bytes, where today's header has
        // start_time_ns: a host that read the record with today's header would store
        // the payload as the start time, and would refuse the record as too short.
        let old = RecordHeader.sizeBeforeStartTimes
        #expect(old == 88 && RecordHeader.size == 104)
        var h = is_event_header()
        h.size = UInt32(old + 8)
        h.pid = 4242
        h.ppid = 4000
        h.ts_enter_ns = 7_000_000_000_000
        h.ts_exit_ns = 7_000_002_500_000
        withUnsafeMutableBytes(of: &h.comm) { b in for (i, c) in "old-abi".utf8.enumerated() { b[i] = c } }
        h.start_time_ns = 0xDEAD // past the old header: never sent by such a plugin
        var record = withUnsafeBytes(of: h) { Array($0.prefix(old)) }
        withUnsafeBytes(of: UInt64(0x0123_4567_89AB_CDEF).littleEndian) { record += $0 }

        func feed(_ plugin: LoadedPlugin, _ bytes: [UInt8]) -> (PluginChannel, Rows) {
            let rows = Rows()
            let channel = PluginChannel(plugin: plugin, instance: instance, enricher: Enricher(nodeName: "t"), consumer: rows)
            // Exactly the record's bytes, as the ring buffer hands them over.
            let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 8)
            defer { p.deallocate() }
            bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            channel.handle(p, bytes.count)
            return (channel, rows)
        }
        // Built against 1.0 (and the same plugin as if built against 1.1): a row, with the
        // header's columns, the plugin's own, and 0 for both start times.
        func built(against minor: UInt16) -> LoadedPlugin {
            var d = plugin.descriptor
            d.abi_minor = minor
            return LoadedPlugin(path: plugin.path, sha256: plugin.sha256, descriptor: d, tables: plugin.tables,
                                derivedColumns: plugin.derivedColumns, options: plugin.options)
        }
        #expect(plugin.descriptor.abi_minor == 0)
        for minor: UInt16 in [0, 1] {
            let asBuilt = built(against: minor)
            let (channel, rows) = feed(asBuilt, record)
            #expect(channel.counters.rows.load(ordering: .relaxed) == 1, "ABI 1.\(minor)")
            let row = try #require(rows.rows.first)
            #expect(row["pid"] == "4242" && row["ppid"] == "4000" && row["comm"] == "old-abi" && row["latency_ns"] == "2500000", "\(row)")
            #expect(row["payload"] == "\(UInt64(0x0123_4567_89AB_CDEF))", "\(row)")
            #expect(row["start_time_ns"] == "0" && row["parent_start_time_ns"] == "0", "\(row)")
            // Shorter than the old header is still too short.
            let (short, _) = feed(asBuilt, Array(record.prefix(old - 1)))
            #expect(short.counters.decodeErrors.load(ordering: .relaxed) == 1)
        }
        // Had it said 1.2, the same 96 bytes would be shorter than its header: refused.
        let (channel, rows) = feed(built(against: RecordHeader.startTimesSince), record)
        #expect(channel.counters.decodeErrors.load(ordering: .relaxed) == 1 && rows.rows.isEmpty)
    }

    @Test func badElementSizesAndDerivedColumnsAreRefusedWithTheirReason() throws {
        let dir = try makeTempDir()
        let cases: [(String, [String: String], String)] = [
            // An option element shorter than ABI 1.0's: the array cannot be walked.
            ("opt_small", ["OPTION_SIZE": "8"], "option #1 has struct_size 8; it must be 40 to 65536"),
            ("derived_missing", ["DERIVED": "{ sizeof(is_derived_column), IS_DERIVE_MILLISECONDS_FROM_NANOSECONDS, \"nope\", \"pid\", 0 }"],
             "bad derived columns for table audit.fixture_events: nope: audit.fixture_events has no such column"),
            ("derived_kind", ["DERIVED": "{ sizeof(is_derived_column), 99, \"comm\", \"pid\", 0 }"],
             "bad derived columns for table audit.fixture_events: comm: unknown kind 99"),
            ("derived_type", ["DERIVED": "{ sizeof(is_derived_column), IS_DERIVE_TIME_FROM_MILLISECONDS, \"comm\", \"pid\", 0 }"],
             "bad derived columns for table audit.fixture_events: comm is String, which time_from_milliseconds cannot fill"),
        ]
        for (name, defines, reason) in cases {
            try PluginFixture.build("\(dir)/\(name).so", name: name, defines: defines)
            #expect(throws: PluginLoadError(path: "\(dir)/\(name).so", reason: reason)) { try load("\(dir)/\(name).so") }
        }
        // The same fixture with a fitting declaration loads, and says so.
        try PluginFixture.build("\(dir)/derived_ok.so", name: "derived_ok", defines: [
            "DDL": "\"CREATE TABLE IF NOT EXISTS audit.fixture_events (pid UInt32, comm String, code Int32, code_name String) ENGINE = MergeTree() ORDER BY pid\"",
            "DERIVED": "{ sizeof(is_derived_column), IS_DERIVE_CODE_NAME, \"code_name\", \"code\", \"ptrace_request\" }",
        ])
        #expect(try load("\(dir)/derived_ok.so").derivedColumns["audit.fixture_events"] == [DerivedColumn(column: "code_name", source: "code", kind: .codeName(table: "ptrace_request"))])
    }

    @Test func theFirstPartyPluginsDeclareTheirDerivedColumns() throws {
        let ptrace = try load("\(Paths.realBinDir)/libinfrasight-ptrace.so")
        #expect(ptrace.abi == "1.2")
        #expect(ptrace.derivedColumns["audit.ptrace_events"] == [
            DerivedColumn(column: "latency_ms", source: "latency_ns", kind: .millisecondsFromNanoseconds),
            DerivedColumn(column: "wall_time_dt", source: "wall_time_ms", kind: .timeFromMilliseconds),
            DerivedColumn(column: "request_name", source: "request", kind: .codeName(table: "ptrace_request")),
        ])
        let resource = try load("\(Paths.realBinDir)/libinfrasight-resource.so")
        #expect(resource.derivedColumns["audit.resource_events"] == [DerivedColumn(column: "wall_time_dt", source: "wall_time_ms", kind: .timeFromMilliseconds)])
    }

    @Test func anSDKPluginLogsThroughTheHost() throws {
        let dir = try ExamplePluginTests.buildExample()
        let plugin = try load("\(dir)/libinfrasight-signals.so")
        let lines = LogLines()
        var options = PluginOptions()
        options.pluginJSON = "{\"skip_probes\":true}"
        _ = try plugin.createInstance(options: options, logger: lines.logger)
        #expect(lines.messages == ["info plugin signals: kill(pid, 0) calls, which only probe a process, are not recorded"])
        // The console line, through the real program's swift-log handler.
        let config = "\(try makeTempDir())/c.yaml"
        try "plugins:\n  options:\n    signals:\n      skip_probes: true\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try run(Paths.infrasight, ["trace", "--config", config, "--plugin-dir", dir, "--plugins", "signals", "--duration", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("infrasight: info: plugin signals: kill(pid, 0) calls, which only probe a process, are not recorded\n"), "\(r.stderr)")
    }
}
