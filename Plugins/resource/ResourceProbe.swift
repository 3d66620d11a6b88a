import InfraSightSDK
import ResourceRecord

/// The `resource` plugin: per-process resource use into audit.resource_events, one row
/// per process per interval (option `interval_seconds`, default 10): CPU time from
/// sched_switch, user and kernel page faults, bytes mapped and unmapped, heap growth and
/// shrinkage (brk), bytes read and written. A row carries what happened since the
/// process's previous row; it is sent when the process is next switched out after its
/// interval ends (an idle process has nothing to report), and the last partial interval
/// is sent when the process exits, with `isActive = 0`.
public final class ResourceProbe: ProbeModule {
    public static let name = "resource"
    public static let version = "0.1.0"
    public static let summary = "Per-process CPU, page faults, memory mapping and I/O bytes per interval"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.resource.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.resource_events] }
    public static var options: [ProbeOption] {
        [ProbeOption("interval_seconds", .int, "seconds between a running process's rows (1 to 3600)", default: "10")]
    }

    let interval: Int
    let cpu = ResourceEventsColumns.cpu_ns
    let userFaults = ResourceEventsColumns.user_faults
    let kernelFaults = ResourceEventsColumns.kernel_faults
    let mmapBytes = ResourceEventsColumns.vm_mmap_bytes
    let munmapBytes = ResourceEventsColumns.vm_munmap_bytes
    let brkGrow = ResourceEventsColumns.vm_brk_grow_bytes
    let brkShrink = ResourceEventsColumns.vm_brk_shrink_bytes
    let bytesRead = ResourceEventsColumns.bytes_read
    let bytesWritten = ResourceEventsColumns.bytes_written
    let isActive = ResourceEventsColumns.isActive

    public init(options: ProbeOptions) throws {
        interval = try options.int("interval_seconds") ?? 10
        guard (1...3600).contains(interval) else { throw ProbeError("option interval_seconds must be between 1 and 3600") }
    }

    public func configureBPF(_ bpf: BPFConfigurator) throws {
        try bpf.set("interval_ns", to: UInt64(interval) * 1_000_000_000)
    }

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        guard let e = record.load(as: is_resource_event.self) else { return .malformed }
        row.put(cpu, uint: e.c.cpu_ns)
        row.put(userFaults, uint: e.c.user_faults)
        row.put(kernelFaults, uint: e.c.kernel_faults)
        row.put(mmapBytes, uint: e.c.vm_mmap_bytes)
        row.put(munmapBytes, uint: e.c.vm_munmap_bytes)
        row.put(brkGrow, uint: e.c.vm_brk_grow_bytes)
        row.put(brkShrink, uint: e.c.vm_brk_shrink_bytes)
        row.put(bytesRead, uint: e.c.bytes_read)
        row.put(bytesWritten, uint: e.c.bytes_written)
        row.put(isActive, uint: UInt64(e.is_active))
        return .row
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(ResourceProbe.self) }
