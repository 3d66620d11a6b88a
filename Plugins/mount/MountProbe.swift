import InfraSightSDK
import MountRecord

/// The `mount` plugin: mount(2) (`event_type` mount: dev_name, dir_name, type, flags) and
/// umount2(2) (`event_type` umount: dir_name, flags) into audit.mount_events. Paths are
/// as the caller passed them.
public final class MountProbe: ProbeModule {
    public static let name = "mount"
    public static let version = "0.1.0"
    public static let summary = "Mounts and unmounts: mount(2) and umount2(2)"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.mount.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.mount_events] }

    let devName = MountEventsColumns.dev_name
    let dirName = MountEventsColumns.dir_name
    let type = MountEventsColumns.type
    let flags = MountEventsColumns.flags
    let eventType = MountEventsColumns.event_type
    static let devOffset = MemoryLayout<is_mount_event>.offset(of: \is_mount_event.dev_name)!
    static let dirOffset = MemoryLayout<is_mount_event>.offset(of: \is_mount_event.dir_name)!
    static let typeOffset = MemoryLayout<is_mount_event>.offset(of: \is_mount_event.type)!

    public init(options: ProbeOptions) throws {
    }

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        guard let e = record.load(as: is_mount_event.self) else { return .malformed }
        switch Int32(e.hdr.kind) {
        case Int32(IS_MOUNT_MOUNT.rawValue): row.put(eventType, string: "mount")
        case Int32(IS_MOUNT_UMOUNT.rawValue): row.put(eventType, string: "umount")
        default: return .malformed
        }
        let limit = UInt32(IS_MOUNT_STR_LEN)
        guard e.dev_name_len < limit, e.dir_name_len < limit, e.type_len < limit else { return .malformed }
        let base = record.bytes.baseAddress!
        row.put(devName, bytes: base + Self.devOffset, length: Int(e.dev_name_len))
        row.put(dirName, bytes: base + Self.dirOffset, length: Int(e.dir_name_len))
        row.put(type, bytes: base + Self.typeOffset, length: Int(e.type_len))
        row.put(flags, uint: e.flags)
        return .row
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(MountProbe.self) }
