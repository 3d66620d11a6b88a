import CInfraSightEvent
import InfraSightSDK
import TracingRecord

/// The `tracing` plugin: process launches (execve, execveat), file opens (open, openat,
/// openat2, creat) and permission changes (chmod, fchmod, fchmodat, fchmodat2), into
/// audit.tracing_events.
///
/// `event_type` is the family (`execve`, `open`, `chmod`), as in the original schema;
/// the appended `syscall` column names the exact call. fchmod names no path: its
/// `filename` is empty and `fd` holds the descriptor.
public final class TracingProbe: ProbeModule {
    public static let name = "tracing"
    public static let version = "0.1.0"
    public static let summary = "Process execution, file opens and permission changes (execve, open, chmod families)"
    public static var bpfObject: [UInt8] { EmbeddedBPFObject.tracing.bytes }
    public static var tables: [EmbeddedDDL] { [EmbeddedDDL.tracing_events] }

    let filename = TracingEventsColumns.filename
    let eventType = TracingEventsColumns.event_type
    let syscall = TracingEventsColumns.syscall
    let argv = TracingEventsColumns.argv
    let flags = TracingEventsColumns.flags
    let mode = TracingEventsColumns.mode
    let fd = TracingEventsColumns.fd

    public init(options: ProbeOptions) throws {
    }

    // Field offsets, computed once: key-path offset lookups are too slow per event.
    static let filenameOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.filename)!
    static let argvOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.argv)!
    static let flagsOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.flags)!
    static let modeOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.mode)!
    static let fdOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.fd)!
    static let filenameLenOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.filename_len)!
    static let kindOffset = MemoryLayout<is_event_header>.offset(of: \is_event_header.kind)!
    static let argvLenOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.argv_len)!
    static let truncatedOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.argv_truncated)!

    public func decode(_ record: RawRecord, into row: RowWriter) -> DecodeResult {
        // Records without argv end where it starts; read the fixed part field by field.
        guard record.bytes.count >= Self.argvOffset else { return .malformed }
        let base = record.bytes.baseAddress!
        let kind = base.loadUnaligned(fromByteOffset: Self.kindOffset, as: UInt16.self)
        switch Int32(kind) {
        case Int32(IS_TRACING_EXECVE.rawValue):
            row.put(eventType, string: "execve"); row.put(syscall, string: "execve")
        case Int32(IS_TRACING_EXECVEAT.rawValue):
            row.put(eventType, string: "execve"); row.put(syscall, string: "execveat")
        case Int32(IS_TRACING_OPEN.rawValue):
            row.put(eventType, string: "open"); row.put(syscall, string: "open")
        case Int32(IS_TRACING_OPENAT.rawValue):
            row.put(eventType, string: "open"); row.put(syscall, string: "openat")
        case Int32(IS_TRACING_OPENAT2.rawValue):
            row.put(eventType, string: "open"); row.put(syscall, string: "openat2")
        case Int32(IS_TRACING_CREAT.rawValue):
            row.put(eventType, string: "open"); row.put(syscall, string: "creat")
        case Int32(IS_TRACING_CHMOD.rawValue):
            row.put(eventType, string: "chmod"); row.put(syscall, string: "chmod")
        case Int32(IS_TRACING_FCHMOD.rawValue):
            row.put(eventType, string: "chmod"); row.put(syscall, string: "fchmod")
        case Int32(IS_TRACING_FCHMODAT.rawValue):
            row.put(eventType, string: "chmod"); row.put(syscall, string: "fchmodat")
        case Int32(IS_TRACING_FCHMODAT2.rawValue):
            row.put(eventType, string: "chmod"); row.put(syscall, string: "fchmodat2")
        default:
            return .malformed
        }
        let filenameLength = Int(base.loadUnaligned(fromByteOffset: Self.filenameLenOffset, as: UInt32.self))
        guard filenameLength < Int(IS_PATH_LEN) else { return .malformed }
        row.put(filename, bytes: base + Self.filenameOffset, length: filenameLength)
        row.put(flags, uint: base.loadUnaligned(fromByteOffset: Self.flagsOffset, as: UInt64.self))
        row.put(mode, uint: UInt64(base.loadUnaligned(fromByteOffset: Self.modeOffset, as: UInt32.self)))
        row.put(fd, int: Int64(base.loadUnaligned(fromByteOffset: Self.fdOffset, as: Int32.self)))

        let argvLength = Int(base.loadUnaligned(fromByteOffset: Self.argvLenOffset, as: UInt32.self))
        if argvLength > 0 {
            guard argvLength <= Int(IS_ARGV_LEN), let p = record.pointer(at: Self.argvOffset, length: argvLength) else {
                return .malformed
            }
            let truncated = base.loadUnaligned(fromByteOffset: Self.truncatedOffset, as: UInt32.self) != 0
            writeArgv(p, length: argvLength, truncated: truncated, into: row)
        }
        return .row
    }

    /// argv arrives NUL-separated; it is stored space-separated (like execsnoop), with
    /// " ..." when the kernel side had to cut it. The scratch buffer is reused: no
    /// allocation per event.
    private var scratch = [UInt8](repeating: 0, count: Int(IS_ARGV_LEN) + 8)

    private func writeArgv(_ p: UnsafeRawPointer, length: Int, truncated: Bool, into row: RowWriter) {
        var n = length
        let bytes = p.assumingMemoryBound(to: UInt8.self)
        while n > 0, bytes[n - 1] == 0 { n -= 1 } // the final terminator
        scratch.withUnsafeMutableBufferPointer { out in
            for i in 0..<n { out[i] = bytes[i] == 0 ? 0x20 : bytes[i] }
            if truncated {
                for (j, c) in " ...".utf8.enumerated() { out[n + j] = c }
                n += 4
            }
            row.put(argv, bytes: UnsafeRawPointer(out.baseAddress!), length: n)
        }
    }
}

@_cdecl("infrasight_plugin_entry")
public func infrasightPluginEntry() -> UnsafeRawPointer { exportProbeModule(TracingProbe.self) }
