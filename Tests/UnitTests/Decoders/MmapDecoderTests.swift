import CInfraSightEvent
import InfraSightCore
import MmapRecord
import Testing

/// Builds `mmap` records (the BPF side sends kind 1).
enum MmapRecords {
    static func event(addr: UInt64, len: UInt64, prot: UInt64, flags: UInt64, fd: Int64, off: UInt64, returnCode: Int64)
        -> (header: is_event_header, bytes: [UInt8])
    {
        let h = Records.header(kind: 1, size: MemoryLayout<is_mmap_event>.size, returnCode: returnCode)
        return (h, Records.bytes(of: is_mmap_event(hdr: h, addr: addr, len: len, prot: prot, flags: flags, fd: fd, off: off)))
    }

    /// A file-backed, read-execute private mapping of a library's text.
    static var sample: Sample {
        let (h, bytes) = event(addr: 0, len: 0x2_1000, prot: 0x5 /* PROT_READ|PROT_EXEC */,
                               flags: 0x802 /* MAP_PRIVATE|MAP_DENYWRITE */, fd: 3, off: 0x1000, returnCode: 0x7F3A_1B2C_0000)
        return Sample(
            header: h, bytes: bytes,
            columns: ["event_type": .string("mmap"), "addr": .uint(0), "len": .uint(0x2_1000), "prot": .uint(0x5),
                      "flags": .uint(0x802), "fd": .uint(3), "off": .uint(0x1000)],
            fixedPart: MemoryLayout<is_mmap_event>.size, kinds: nil)
    }
}

/// The `mmap` decoder on synthetic records: every member exact; an anonymous mapping's
/// fd of -1 is stored as its bit pattern in the UInt64 column, as the plugin documents.
@Suite struct MmapDecoderTests {
    @Test func anAnonymousMappingStoresFdMinusOneAsItsBitPattern() throws {
        let d = try DecoderHarness("mmap")
        let (h, bytes) = MmapRecords.event(addr: 0, len: 4 * 4096, prot: 0x3 /* PROT_READ|PROT_WRITE */,
                                           flags: 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, fd: -1, off: 0, returnCode: 0x7F00_0000_0000)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "event_type": .string("mmap"), "addr": .uint(0), "len": .uint(16384), "prot": .uint(0x3),
            "flags": .uint(0x22), "fd": .uint(18_446_744_073_709_551_615), "off": .uint(0),
        ]))
    }

    @Test func aFailedFixedMappingKeepsItsHintAndTheErrno() throws {
        let d = try DecoderHarness("mmap")
        let (h, bytes) = MmapRecords.event(addr: 0x10000, len: .max, prot: 0x7, flags: 0x10 | 0x100000 /* MAP_FIXED|MAP_FIXED_NOREPLACE */,
                                           fd: 0x7FFF_FFFF, off: .max, returnCode: -12)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "event_type": .string("mmap"), "addr": .uint(0x10000), "len": .uint(.max), "prot": .uint(0x7),
            "flags": .uint(0x100010), "fd": .uint(0x7FFF_FFFF), "off": .uint(.max),
        ]))
    }
}
