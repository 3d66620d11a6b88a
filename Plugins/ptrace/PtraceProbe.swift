import InfraSightCodes
import InfraSightSDK
import PtraceRecord

/// The `ptrace` plugin: every ptrace(2) request into audit.ptrace_events, with its name
/// from linux/ptrace.h (x86 requests included); an unknown request is
/// `PTRACE_UNKNOWN_<n>`. `target_pid` is the pid argument as the caller passed it.
public final class PtraceProbe: ProbeModule {
    public static let name = "ptrace"
    public static let version = "0.1.0"
    public static let summary = "ptrace(2) requests: who traces or inspects which process"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.ptrace.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.ptrace_events] }
    /// request_name is request's name: an agent sends only the number, the server names it.
    public static func derivedColumns(of table: EmbeddedDDL) -> [DerivedColumn] {
        DerivedColumn.standard(in: table) + [.name("request_name", of: "request", in: CodeTable.ptraceRequest.name)]
    }

    let request = PtraceEventsColumns.request
    let targetPid = PtraceEventsColumns.target_pid
    let addr = PtraceEventsColumns.addr
    let data = PtraceEventsColumns.data
    let requestName = PtraceEventsColumns.request_name
    let eventType = PtraceEventsColumns.event_type

    public init(options: ProbeOptions) throws {
    }

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        guard let e = record.load(as: is_ptrace_event.self) else { return .malformed }
        row.put(eventType, string: "ptrace")
        row.put(request, int: e.request)
        row.put(targetPid, int: e.target_pid)
        row.put(addr, uint: e.addr)
        row.put(data, uint: e.data)
        if let name = CodeNames.ptraceRequest(e.request) {
            row.put(requestName, string: name)
        } else {
            row.put(requestName, prefix: "PTRACE_UNKNOWN_", decimal: e.request)
        }
        return .row
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(PtraceProbe.self) }
