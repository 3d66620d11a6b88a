import CInfraSightEvent
import Foundation
import InfraSightCore
import InfraSightTestSupport
import Testing

/// What every plugin's decoder, with the host around it, must do with one good record
/// and its malformed variants: the good record becomes a row with every column exact;
/// a record shorter than its fixed part, one whose size field runs past its bytes, one
/// naming a table the plugin lacks, or (where the plugin reads kinds) an unknown kind is
/// a decode error and no row; bytes past the declared size are never read; a longer
/// declared size (a newer producer appending members) still decodes; the command name
/// is bounded and repaired.
@Suite struct EveryDecoderTests {
    static let plugins = ["tracing", "network", "ptrace", "mmap", "mount", "resource"]

    static func sample(_ plugin: String) -> Sample {
        switch plugin {
        case "tracing": TracingRecords.sample
        case "network": NetworkRecords.sample
        case "ptrace": PtraceRecords.sample
        case "mmap": MmapRecords.sample
        case "mount": MountRecords.sample
        case "resource": ResourceRecords.sample
        default: fatalError("no sample record for \(plugin)")
        }
    }

    static func harness(_ plugin: String) throws -> (DecoderHarness, Sample) {
        let s = sample(plugin)
        return (try DecoderHarness(plugin, options: s.options), s)
    }

    @Test func everyFirstPartyPluginHasASampleAndLoads() throws {
        // A plugin added under Plugins/ gets its decoder tested here too.
        let root = "\(Paths.packageRoot)/Plugins"
        let folders = try FileManager.default.contentsOfDirectory(atPath: root).filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: "\(root)/\(name)", isDirectory: &isDirectory) && isDirectory.boolValue
        }
        #expect(Set(folders) == Set(Self.plugins), "Plugins/ holds \(folders.sorted()); give each a Sample")
        for plugin in Self.plugins {
            let d = try DecoderHarness(plugin, options: Self.sample(plugin).options)
            #expect(d.plugin.name == plugin)
            #expect(d.plugin.tables.count == 1, "\(plugin): the checks below feed table 0 only")
        }
    }

    @Test(arguments: plugins)
    func theSampleRecordBecomesARowWithEveryColumnExact(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        expectSame(d.feed(s.bytes), d.expectedRow(s.header, plugin: s.columns))
    }

    @Test(arguments: plugins)
    func aRecordShorterThanItsFixedPartIsADecodeError(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        let header = Records.headerSize
        let before12 = RecordHeader.sizeBeforeStartTimes
        for size in [0, 1, 8, before12, header - 1, header, (header + s.fixedPart) / 2, s.fixedPart - 1] {
            #expect(d.feed(Records.truncated(s.bytes, to: size)) == .decodeError, "\(size) bytes")
        }
        // A whole record whose size member claims less than the header (as an ABI 1.1
        // record's would) is refused by the host before the decoder sees it.
        for size in [0, before12, header - 1] {
            #expect(d.feed(Records.declaring(size, s.bytes)) == .decodeError, "declaring \(size) bytes")
        }
        #expect(d.channel.counters.rows.load(ordering: .relaxed) == 0)
    }

    @Test(arguments: plugins)
    func theProcessAndParentStartTimesAreTheLastColumnsFilledFromTheHeader(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        #expect(d.plugin.tables[0].columns.suffix(2).map { "\($0.name) \($0.type)" } == ["start_time_ns UInt64", "parent_start_time_ns UInt64"])
        let cells = d.feed(s.bytes).cells
        #expect(cells["start_time_ns"] == .uint(s.header.start_time_ns) && s.header.start_time_ns == 6_500_000_000_123)
        #expect(cells["parent_start_time_ns"] == .uint(s.header.parent_start_time_ns) && s.header.parent_start_time_ns == 6_498_500_000_456)
    }

    @Test(arguments: plugins)
    func aSizeFieldPastTheRecordIsADecodeError(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        for size in [s.bytes.count + 1, s.bytes.count + 4096, Int(UInt32.max)] {
            #expect(d.feed(Records.declaring(size, s.bytes)) == .decodeError, "size \(size)")
        }
    }

    @Test(arguments: plugins)
    func bytesPastTheDeclaredSizeAreNotRead(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        expectSame(d.feed(Records.withTrailingGarbage(s.bytes, 512)), d.expectedRow(s.header, plugin: s.columns))
    }

    @Test(arguments: plugins)
    func aLongerDeclaredSizeFromANewerProducerStillDecodes(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        expectSame(d.feed(Records.extended(s.bytes, to: s.bytes.count + 40)), d.expectedRow(s.header, plugin: s.columns))
    }

    @Test(arguments: plugins)
    func aTableThePluginLacksIsADecodeError(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        for table: UInt16 in [1, 2, 0xFFFF] {
            #expect(d.feed(Records.withTable(table, s.bytes)) == .decodeError, "table \(table)")
        }
    }

    @Test(arguments: plugins)
    func anUnknownKindIsADecodeErrorWhereThePluginReadsKinds(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        let unknown: [UInt16] = s.kinds.map { known in [0, known.upperBound + 1, 0x7F, 0xFFFF].filter { !known.contains($0) } } ?? []
        for kind in unknown {
            #expect(d.feed(Records.withKind(kind, s.bytes)) == .decodeError, "kind \(kind)")
        }
        if s.kinds == nil {
            // ptrace, mmap and resource have one kind of record and do not read it.
            for kind: UInt16 in [0, 2, 0xFFFF] {
                expectSame(d.feed(Records.withKind(kind, s.bytes)), d.expectedRow(s.header, plugin: s.columns), "kind \(kind)")
            }
        }
    }

    static let comms: [(bytes: [UInt8], stored: String)] = [
        (Array("0123456789abcdef".utf8), "0123456789abcdef"),         // no NUL: all 16 bytes
        (Array("short\0garbage".utf8), "short"),                      // up to the NUL
        ([], ""),
        (Array("kworker/".utf8) + [0xFF, 0xC3], "kworker/\u{FFFD}\u{FFFD}"), // repaired
        (Array("\u{65E5}\u{672C}".utf8) + [0xE6, 0x97], "\u{65E5}\u{672C}\u{FFFD}\u{FFFD}"), // a character cut short
    ]

    @Test(arguments: plugins)
    func theCommandNameIsBoundedAndRepaired(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        for (comm, stored) in Self.comms {
            expectSame(d.feed(Records.withComm(comm, s.bytes)), d.expectedRow(s.header, comm: stored, plugin: s.columns), "\(comm)")
        }
    }

    @Test(arguments: plugins)
    func theHeaderColumnsFollowTheRecord(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        var h = s.header
        // An unknown uid is stored as its number; root by name; an exit stamped before
        // the enter (clock oddity) is a latency of 0, not a wrap-around. The start times
        // (the header's last members) are stored as sent, whatever their value.
        for (uid, exit) in [(UInt32(777), h.ts_enter_ns - 1), (0, h.ts_enter_ns), (.max, h.ts_enter_ns + 1)] {
            h.uid = uid
            h.ts_exit_ns = exit
            h.pid = uid &+ 1
            h.return_code = -Int64(uid)
            h.start_time_ns = UInt64(uid) &* 1_000_003
            h.parent_start_time_ns = UInt64.max - UInt64(uid)
            var record = s.bytes
            withUnsafeBytes(of: h) { record.replaceSubrange(0..<Records.headerSize, with: $0) }
            expectSame(d.feed(record), d.expectedRow(h, plugin: s.columns), "uid \(uid)")
        }
    }

    @Test(arguments: plugins)
    func goodRecordsAroundMalformedOnesAreUntouched(plugin: String) throws {
        let (d, s) = try Self.harness(plugin)
        let bad = [
            Records.truncated(s.bytes, to: s.fixedPart - 1), Records.withTable(7, s.bytes),
            Records.declaring(s.bytes.count + 1, s.bytes), [],
        ]
        for record in bad + [s.bytes] + bad + [s.bytes] {
            let outcome = d.feed(record)
            if record == s.bytes { expectSame(outcome, d.expectedRow(s.header, plugin: s.columns)) }
        }
        let c = d.channel.counters
        #expect(c.received.load(ordering: .relaxed) == 10)
        #expect(c.decodeErrors.load(ordering: .relaxed) == 8)
        #expect(c.rows.load(ordering: .relaxed) == 2)
        #expect(c.skipped.load(ordering: .relaxed) == 0)
    }
}
