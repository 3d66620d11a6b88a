import CInfraSightEvent
import InfraSightCore
import MountRecord
import Testing

/// Builds `mount` records.
enum MountRecords {
    static let size = MemoryLayout<is_mount_event>.size
    static let lengthOffsets = [
        "dev_name": MemoryLayout<is_mount_event>.offset(of: \is_mount_event.dev_name_len)!,
        "dir_name": MemoryLayout<is_mount_event>.offset(of: \is_mount_event.dir_name_len)!,
        "type": MemoryLayout<is_mount_event>.offset(of: \is_mount_event.type_len)!,
    ]

    static func kind(_ k: is_mount_kind) -> UInt16 { UInt16(k.rawValue) }

    /// A record of `kind`; each string's length from the kernel is its byte count unless
    /// given.
    static func event(
        _ kind: is_mount_kind, dev: [UInt8] = [], dir: [UInt8], type: [UInt8] = [], flags: UInt64,
        lengths: (dev: Int, dir: Int, type: Int)? = nil, returnCode: Int64 = 0
    ) -> (header: is_event_header, bytes: [UInt8]) {
        var e = is_mount_event()
        e.hdr = Records.header(kind: Self.kind(kind), size: size, returnCode: returnCode)
        e.flags = flags
        Records.set(&e.dev_name, dev)
        Records.set(&e.dir_name, dir)
        Records.set(&e.type, type)
        e.dev_name_len = UInt32(lengths?.dev ?? dev.count)
        e.dir_name_len = UInt32(lengths?.dir ?? dir.count)
        e.type_len = UInt32(lengths?.type ?? type.count)
        e.dev_name_ptr = 0x5555_0000_0010 // kernel side only
        e.dir_name_ptr = 0x5555_0000_0020
        e.type_ptr = 0x5555_0000_0030
        return (e.hdr, Records.bytes(of: e))
    }

    /// mount -t tmpfs -o nosuid,nodev tmpfs /mnt/scratch
    static var sample: Sample {
        let (h, bytes) = event(IS_MOUNT_MOUNT, dev: Array("tmpfs".utf8), dir: Array("/mnt/scratch".utf8),
                               type: Array("tmpfs".utf8), flags: 0x6 /* MS_NOSUID|MS_NODEV */)
        return Sample(
            header: h, bytes: bytes,
            columns: ["event_type": .string("mount"), "dev_name": .string("tmpfs"), "dir_name": .string("/mnt/scratch"),
                      "type": .string("tmpfs"), "flags": .uint(0x6)],
            fixedPart: size, kinds: kind(IS_MOUNT_MOUNT)...kind(IS_MOUNT_UMOUNT))
    }
}

/// The `mount` decoder on synthetic records: mount and umount rows exact, each string
/// exactly the kernel's length (bounded by its field), invalid UTF-8 repaired.
@Suite struct MountDecoderTests {
    typealias M = MountRecords

    @Test func anUmountHasItsDirectoryAndFlagsAndEmptyDeviceAndType() throws {
        let d = try DecoderHarness("mount")
        let (h, bytes) = M.event(IS_MOUNT_UMOUNT, dir: Array("/mnt/scratch".utf8), flags: 0x2 /* MNT_DETACH */, returnCode: -16)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "event_type": .string("umount"), "dev_name": .string(""), "dir_name": .string("/mnt/scratch"),
            "type": .string(""), "flags": .uint(0x2),
        ]))
    }

    @Test func eachStringIsTheKernelsLengthNotUpToItsNUL() throws {
        let d = try DecoderHarness("mount")
        let full = [UInt8](repeating: UInt8(ascii: "d"), count: Int(IS_MOUNT_STR_LEN))
        let (_, bytes) = M.event(IS_MOUNT_MOUNT, dev: Array("overlay\0lowerdir".utf8), dir: full, type: Array("overlay".utf8),
                                 flags: 0, lengths: (dev: 7, dir: Int(IS_MOUNT_STR_LEN) - 1, type: 3))
        let cells = d.feed(bytes).cells
        #expect(cells["dev_name"] == .string("overlay"))
        #expect(cells["dir_name"] == .string(String(repeating: "d", count: Int(IS_MOUNT_STR_LEN) - 1)))
        #expect(cells["type"] == .string("ove"))
    }

    static let tooLong: [(String, Int)] = M.lengthOffsets.keys.sorted().flatMap { field in
        [Int(IS_MOUNT_STR_LEN), 0xFFFF, Int(UInt32.max)].map { (field, $0) }
    }

    @Test(arguments: tooLong)
    func aLengthPastItsFieldIsADecodeError(field: String, length: Int) throws {
        let d = try DecoderHarness("mount")
        let record = Records.patch(M.sample.bytes, at: M.lengthOffsets[field]!, UInt32(length))
        #expect(d.feed(record) == .decodeError)
    }

    @Test(arguments: BadUTF8.cases)
    func invalidUTF8InEveryStringIsRepaired(bytes text: [UInt8], stored: String) throws {
        let d = try DecoderHarness("mount")
        let (_, bytes) = M.event(IS_MOUNT_MOUNT, dev: text, dir: text, type: text, flags: 0)
        let cells = d.feed(bytes).cells
        #expect(cells["dev_name"] == .string(stored))
        #expect(cells["dir_name"] == .string(stored))
        #expect(cells["type"] == .string(stored))
    }

    @Test func aRecordWithoutItsTypeFieldIsADecodeError() throws {
        let d = try DecoderHarness("mount")
        let typeOffset = MemoryLayout<is_mount_event>.offset(of: \is_mount_event.type)!
        // An umount names no type, yet its record is the whole struct.
        let (_, umount) = M.event(IS_MOUNT_UMOUNT, dir: Array("/mnt".utf8), flags: 0)
        #expect(d.feed(Records.truncated(umount, to: typeOffset)) == .decodeError)
    }
}
