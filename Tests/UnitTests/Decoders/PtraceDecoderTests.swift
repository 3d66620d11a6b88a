import CInfraSightEvent
import InfraSightCore
import PtraceRecord
import Testing

/// Builds `ptrace` records (the BPF side sends kind 1).
enum PtraceRecords {
    static func event(request: Int64, targetPid: Int64, addr: UInt64 = 0, data: UInt64 = 0, returnCode: Int64 = 0)
        -> (header: is_event_header, bytes: [UInt8])
    {
        let h = Records.header(kind: 1, size: MemoryLayout<is_ptrace_event>.size, returnCode: returnCode)
        return (h, Records.bytes(of: is_ptrace_event(hdr: h, request: request, target_pid: targetPid, addr: addr, data: data)))
    }

    static var sample: Sample {
        let (h, bytes) = event(request: 0x4206, targetPid: 31337, addr: 0, data: 0x40 /* PTRACE_O_TRACEEXIT */, returnCode: 0)
        return Sample(
            header: h, bytes: bytes,
            columns: ["event_type": .string("ptrace"), "request": .int(0x4206), "target_pid": .int(31337),
                      "addr": .uint(0), "data": .uint(0x40), "request_name": .string("PTRACE_SEIZE")],
            fixedPart: MemoryLayout<is_ptrace_event>.size, kinds: nil)
    }
}

/// The `ptrace` decoder on synthetic records: every member exact, requests named from
/// linux/ptrace.h and unknown ones as PTRACE_UNKNOWN_<n>.
@Suite struct PtraceDecoderTests {
    static let names: [(Int64, String)] = [
        (0, "PTRACE_TRACEME"), (16, "PTRACE_ATTACH"), (17, "PTRACE_DETACH"), (12, "PTRACE_GETREGS"),
        (24, "PTRACE_SYSCALL"), (0x4200, "PTRACE_SETOPTIONS"), (0x4212, "PTRACE_SET_SYSCALL_INFO"),
        (10, "PTRACE_UNKNOWN_10"), (77, "PTRACE_UNKNOWN_77"), (0x4213, "PTRACE_UNKNOWN_16915"),
        (-1, "PTRACE_UNKNOWN_-1"), (.max, "PTRACE_UNKNOWN_9223372036854775807"),
        (.min, "PTRACE_UNKNOWN_-9223372036854775808"),
    ]

    @Test(arguments: names)
    func aRequestIsNamedOrNumbered(request: Int64, name: String) throws {
        let d = try DecoderHarness("ptrace")
        let (h, bytes) = PtraceRecords.event(request: request, targetPid: 4321, returnCode: -3)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "event_type": .string("ptrace"), "request": .int(request), "target_pid": .int(4321),
            "addr": .uint(0), "data": .uint(0), "request_name": .string(name),
        ]))
    }

    @Test func addressDataAndTargetKeepAllTheirBits() throws {
        let d = try DecoderHarness("ptrace")
        let (_, bytes) = PtraceRecords.event(request: 5, targetPid: -1, addr: 0xFFFF_FFFF_FFFF_FFF0, data: 0x8000_0000_0000_0001)
        let cells = d.feed(bytes).cells
        #expect(cells["request_name"] == .string("PTRACE_POKEDATA"))
        #expect(cells["target_pid"] == .int(-1))
        #expect(cells["addr"] == .uint(0xFFFF_FFFF_FFFF_FFF0))
        #expect(cells["data"] == .uint(0x8000_0000_0000_0001))
    }
}
