import InfraSightSDK
import MmapRecord

/// The `mmap` plugin: mmap(2) into audit.mmap_events. `return_code` is the mapped address,
/// or -errno.
///
/// `fd` is a UInt64 column in the original schema; an anonymous mapping's fd of -1 is
/// stored as its two's-complement bit pattern, 18446744073709551615. Anonymous mappings:
/// `WHERE toInt64(fd) = -1` (or `bitAnd(flags, 0x20) != 0`, MAP_ANONYMOUS).
public final class MmapProbe: ProbeModule {
    public static let name = "mmap"
    public static let version = "0.1.0"
    public static let summary = "Memory mappings: mmap(2) address, length, protection, flags, fd, offset"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.mmap.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.mmap_events] }

    let addr = MmapEventsColumns.addr
    let len = MmapEventsColumns.len
    let prot = MmapEventsColumns.prot
    let flags = MmapEventsColumns.flags
    let fd = MmapEventsColumns.fd
    let off = MmapEventsColumns.off
    let eventType = MmapEventsColumns.event_type

    public init(options: ProbeOptions) throws {
    }

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        guard let e = record.load(as: is_mmap_event.self) else { return .malformed }
        row.put(eventType, string: "mmap")
        row.put(addr, uint: e.addr)
        row.put(len, uint: e.len)
        row.put(prot, uint: e.prot)
        row.put(flags, uint: e.flags)
        row.put(fd, uint: UInt64(bitPattern: e.fd))
        row.put(off, uint: e.off)
        return .row
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(MmapProbe.self) }
