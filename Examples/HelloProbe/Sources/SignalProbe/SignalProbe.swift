import CSignalEvent
import InfraSightSDK

/// Signals sent with kill(2), into audit.signal_events. Columns named like the host's
/// well-known fields (pid, comm, user, wall_time_ms, ...) are filled by the host; this
/// decoder writes only target_pid, signal, signal_name and event_type.
public final class SignalProbe: ProbeModule {
    public static let name = "signals"
    public static let version = "1.0.0"
    public static let summary = "Signals sent with kill(2): sender, target, signal"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.signals.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.signal_events] }
    public static var options: [ProbeOption] {
        [ProbeOption("skip_probes", .bool, "ignore kill(pid, 0), which only checks that a process exists", default: "false")]
    }

    // Generated from signal_events.sql at build time, typed by the column's kind: a
    // misspelled column, or a value of the wrong kind (`put(signal, string:)`), does not compile.
    let targetPid = SignalEventsColumns.target_pid
    let signal = SignalEventsColumns.signal
    let signalName = SignalEventsColumns.signal_name
    let eventType = SignalEventsColumns.event_type
    let skipProbes: Bool

    public init(options: ProbeOptions) throws {
        skipProbes = try options.bool("skip_probes") ?? false
        if skipProbes { options.log.info("kill(pid, 0) calls, which only probe a process, are not recorded") }
    }

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        guard let event = record.load(as: signal_event.self) else { return .malformed }
        if skipProbes && event.signal == 0 { return .skip }
        row.put(eventType, string: "kill")
        row.put(targetPid, int: Int64(event.target_pid))
        row.put(signal, uint: UInt64(event.signal))
        row.put(signalName, string: Self.name(of: event.signal))
        return .row
    }

    static func name(of signal: UInt32) -> StaticString {
        switch signal {
        case 0: "0"
        case 1: "SIGHUP"
        case 2: "SIGINT"
        case 3: "SIGQUIT"
        case 6: "SIGABRT"
        case 9: "SIGKILL"
        case 10: "SIGUSR1"
        case 12: "SIGUSR2"
        case 13: "SIGPIPE"
        case 14: "SIGALRM"
        case 15: "SIGTERM"
        case 17: "SIGCHLD"
        case 18: "SIGCONT"
        case 19: "SIGSTOP"
        case 20: "SIGTSTP"
        default: "other"
        }
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(SignalProbe.self) }
