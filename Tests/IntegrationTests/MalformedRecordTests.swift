import Foundation
import InfraSightCore
import InfraSightTestSupport
import Synchronization
import Testing
import TracingRecord

/// Records that do not hold what they claim are counted as decode errors and never
/// become rows; good records around them still do. Uses the real tracing plugin library.
@Suite struct MalformedRecordTests {
    final class Collector: RowConsumer {
        var filenames: [String] = []
        var startTimes: [[UInt64]] = []
        func consume(_ row: RowBuffer, from channel: PluginChannel) {
            filenames.append(row.string(row.schema.index(of: "filename")!) ?? "")
            startTimes.append(["start_time_ns", "parent_start_time_ns"].map { row.words[row.schema.index(of: $0)!] })
        }
    }

    func openRecord(_ path: String) -> [UInt8] {
        var e = is_tracing_event()
        e.hdr.kind = UInt16(IS_TRACING_OPENAT.rawValue)
        let size = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.argv)!
        e.hdr.size = UInt32(size)
        e.hdr.pid = 7
        e.hdr.start_time_ns = 123_456_789
        e.hdr.parent_start_time_ns = 23_456_789
        withUnsafeMutableBytes(of: &e.filename) { b in for (i, c) in path.utf8.enumerated() { b[i] = c } }
        e.filename_len = UInt32(path.utf8.count)
        return withUnsafeBytes(of: &e) { Array($0.prefix(size)) }
    }

    @Test func malformedRecordsAreCountedAndDropped() throws {
        var loader = PluginLoader(pluginDirs: [Paths.realBinDir], pins: [:])
        let plugin = try loader.load(Paths.tracingPlugin)
        let collector = Collector()
        let channel = PluginChannel(plugin: plugin, instance: try plugin.createInstance(options: PluginOptions()),
                                    enricher: Enricher(nodeName: "t"), consumer: collector)
        func feed(_ bytes: [UInt8]) {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
            defer { p.deallocate() }
            bytes.withUnsafeBytes { if $0.count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            channel.handle(p, bytes.count)
        }
        let good = openRecord("/etc/passwd")
        feed(good)
        feed(Array(good.prefix(20)))                       // shorter than the header
        // An ABI 1.1 header (without the start times) in a plugin built against 1.2:
        // shorter than its header, as a record and as a size claim.
        let before12 = RecordHeader.sizeBeforeStartTimes
        feed(Array(good.prefix(before12)))
        var claimsOldHeader = good
        withUnsafeBytes(of: UInt32(before12).littleEndian) { claimsOldHeader.replaceSubrange(4..<8, with: $0) }
        feed(claimsOldHeader)
        var badTable = good; badTable[0] = 9               // no table 9
        feed(badTable)
        var badSize = good; badSize[4] = 0xFF; badSize[5] = 0xFF // claims more bytes than it has
        feed(badSize)
        var badKind = good; badKind[2] = 0x7F              // unknown event kind
        feed(badKind)
        var badLength = good                               // filename_len past the field
        let lenOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.filename_len)!
        badLength[lenOffset] = 0xFF; badLength[lenOffset + 1] = 0x7F
        feed(badLength)
        var invalidUTF8 = openRecord("/tmp/x")
        let nameOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.filename)!
        invalidUTF8[nameOffset + 5] = 0xFF                 // "/tmp/\u{FF}": repaired, still a row
        feed(invalidUTF8)
        feed(good)

        #expect(channel.counters.received.load(ordering: .relaxed) == 10)
        #expect(channel.counters.decodeErrors.load(ordering: .relaxed) == 7)
        #expect(channel.counters.rows.load(ordering: .relaxed) == 3)
        #expect(collector.filenames == ["/etc/passwd", "/tmp/\u{FFFD}", "/etc/passwd"])
        // The good rows carry the header's start times.
        #expect(collector.startTimes == Array(repeating: [123_456_789, 23_456_789], count: 3))
    }
}
