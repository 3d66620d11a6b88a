import CInfraSightEvent
import InfraSightSDK

/// The `ptrace` plugin: every ptrace(2) request into audit.ptrace_events, with its name
/// from linux/ptrace.h (x86 requests included); an unknown request is
/// `PTRACE_UNKNOWN_<n>`. `target_pid` is the pid argument as the caller passed it.
public final class PtraceProbe: ProbeModule {
    public static let name = "ptrace"
    public static let version = "0.1.0"
    public static let summary = "ptrace(2) requests: who traces or inspects which process"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.ptrace.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.ptrace_events] }

    let request, targetPid, addr, data, requestName, eventType: UInt32

    public init(options: ProbeOptions) throws {
        let c = try ColumnIndex(EmbeddedDDL.ptrace_events)
        request = try c("request")
        targetPid = try c("target_pid")
        addr = try c("addr")
        data = try c("data")
        requestName = try c("request_name")
        eventType = try c("event_type")
    }

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        guard let e = record.load(as: is_ptrace_event.self) else { return .malformed }
        row.put(eventType, string: "ptrace")
        row.put(request, int: e.request)
        row.put(targetPid, int: e.target_pid)
        row.put(addr, uint: e.addr)
        row.put(data, uint: e.data)
        if let name = Self.requestName(e.request) {
            row.put(requestName, string: name)
        } else {
            row.put(requestName, prefix: "PTRACE_UNKNOWN_", decimal: e.request)
        }
        return .row
    }

    /// linux/ptrace.h and asm/ptrace-abi.h (x86).
    static func requestName(_ request: Int64) -> StaticString? {
        switch request {
        case 0: "PTRACE_TRACEME"
        case 1: "PTRACE_PEEKTEXT"
        case 2: "PTRACE_PEEKDATA"
        case 3: "PTRACE_PEEKUSR"
        case 4: "PTRACE_POKETEXT"
        case 5: "PTRACE_POKEDATA"
        case 6: "PTRACE_POKEUSR"
        case 7: "PTRACE_CONT"
        case 8: "PTRACE_KILL"
        case 9: "PTRACE_SINGLESTEP"
        case 12: "PTRACE_GETREGS"
        case 13: "PTRACE_SETREGS"
        case 14: "PTRACE_GETFPREGS"
        case 15: "PTRACE_SETFPREGS"
        case 16: "PTRACE_ATTACH"
        case 17: "PTRACE_DETACH"
        case 18: "PTRACE_GETFPXREGS"
        case 19: "PTRACE_SETFPXREGS"
        case 24: "PTRACE_SYSCALL"
        case 25: "PTRACE_GET_THREAD_AREA"
        case 26: "PTRACE_SET_THREAD_AREA"
        case 30: "PTRACE_ARCH_PRCTL"
        case 31: "PTRACE_SYSEMU"
        case 32: "PTRACE_SYSEMU_SINGLESTEP"
        case 33: "PTRACE_SINGLEBLOCK"
        case 0x4200: "PTRACE_SETOPTIONS"
        case 0x4201: "PTRACE_GETEVENTMSG"
        case 0x4202: "PTRACE_GETSIGINFO"
        case 0x4203: "PTRACE_SETSIGINFO"
        case 0x4204: "PTRACE_GETREGSET"
        case 0x4205: "PTRACE_SETREGSET"
        case 0x4206: "PTRACE_SEIZE"
        case 0x4207: "PTRACE_INTERRUPT"
        case 0x4208: "PTRACE_LISTEN"
        case 0x4209: "PTRACE_PEEKSIGINFO"
        case 0x420a: "PTRACE_GETSIGMASK"
        case 0x420b: "PTRACE_SETSIGMASK"
        case 0x420c: "PTRACE_SECCOMP_GET_FILTER"
        case 0x420d: "PTRACE_SECCOMP_GET_METADATA"
        case 0x420e: "PTRACE_GET_SYSCALL_INFO"
        case 0x420f: "PTRACE_GET_RSEQ_CONFIGURATION"
        case 0x4210: "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG"
        case 0x4211: "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG"
        case 0x4212: "PTRACE_SET_SYSCALL_INFO"
        default: nil
        }
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(PtraceProbe.self) }
