import CInfraSightEvent
import InfraSightCore
import ResourceRecord
import Testing

/// Builds `resource` records.
enum ResourceRecords {
    static func event(_ c: is_resource_counters, active: Bool) -> (header: is_event_header, bytes: [UInt8]) {
        var e = is_resource_event()
        e.hdr = Records.header(kind: 0, size: MemoryLayout<is_resource_event>.size)
        e.hdr.ts_exit_ns = e.hdr.ts_enter_ns // one emission time, as the BPF side sends it
        e.c = c
        e.is_active = active ? 1 : 0
        return (e.hdr, Records.bytes(of: e))
    }

    /// Every counter a different value, so a counter written to another's column shows.
    static let counters = is_resource_counters(
        cpu_ns: 123_456_789, user_faults: 11, kernel_faults: 22, vm_mmap_bytes: 1 << 20, vm_munmap_bytes: 1 << 19,
        vm_brk_grow_bytes: 3 * 4096, vm_brk_shrink_bytes: 4096, bytes_read: 5555, bytes_written: 7777)

    static func columns(_ c: is_resource_counters, active: UInt64) -> [String: Cell] {
        ["cpu_ns": .uint(c.cpu_ns), "user_faults": .uint(c.user_faults), "kernel_faults": .uint(c.kernel_faults),
         "vm_mmap_bytes": .uint(c.vm_mmap_bytes), "vm_munmap_bytes": .uint(c.vm_munmap_bytes),
         "vm_brk_grow_bytes": .uint(c.vm_brk_grow_bytes), "vm_brk_shrink_bytes": .uint(c.vm_brk_shrink_bytes),
         "bytes_read": .uint(c.bytes_read), "bytes_written": .uint(c.bytes_written), "isActive": .uint(active)]
    }

    static var sample: Sample {
        let (h, bytes) = event(counters, active: true)
        return Sample(header: h, bytes: bytes, columns: columns(counters, active: 1),
                      fixedPart: MemoryLayout<is_resource_event>.size, kinds: nil)
    }
}

/// The `resource` decoder on synthetic records: each counter in its own column (the
/// table orders bytes_written before bytes_read), the last row of a process inactive.
@Suite struct ResourceDecoderTests {
    @Test func theLastRowOfAProcessIsInactive() throws {
        let d = try DecoderHarness("resource")
        let (h, bytes) = ResourceRecords.event(ResourceRecords.counters, active: false)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: ResourceRecords.columns(ResourceRecords.counters, active: 0)))
    }

    @Test func countersKeepAllTheirBits() throws {
        let d = try DecoderHarness("resource")
        let max = is_resource_counters(
            cpu_ns: .max, user_faults: .max - 1, kernel_faults: 1 << 63, vm_mmap_bytes: .max - 2, vm_munmap_bytes: 0,
            vm_brk_grow_bytes: .max - 3, vm_brk_shrink_bytes: 1, bytes_read: .max - 4, bytes_written: .max - 5)
        let (h, bytes) = ResourceRecords.event(max, active: true)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: ResourceRecords.columns(max, active: 1)))
    }
}
