import CInfraSightEvent
import InfraSightSchema

/// Columns the host fills for every plugin, recognised by name (like Inspektor Gadget's
/// semantic field names): a plugin gets them by naming a column so in its DDL.
public enum HostField: String, CaseIterable, Sendable {
    // From the record's is_event_header, before decode.
    case pid, uid, gid, ppid
    case userPid = "user_pid"
    case userPpid = "user_ppid"
    case cgroupId = "cgroup_id"
    case comm
    case tsEnter = "monotonic_ts_enter_ns"
    case tsExit = "monotonic_ts_exit_ns"
    case returnCode = "return_code"
    case latencyNs = "latency_ns"
    /// The process's and its parent's start (boot-based ns): with pid and ppid they name
    /// one process across pid reuse. 0 for a plugin built before ABI 1.2 (its header
    /// lacks them).
    case startTime = "start_time_ns"
    case parentStartTime = "parent_start_time_ns"
    // Enrichment, after decode.
    case cgroupName = "cgroup_name"
    case nodeName = "node_name"
    case user
    case latencyMs = "latency_ms"
    case wallTimeMs = "wall_time_ms"
    case wallTimeDt = "wall_time_dt"
    case containerId = "container_id"
    case containerImage = "container_image"
    case containerLabels = "container_labels_json"

    var fromHeader: Bool {
        switch self {
        case .pid, .uid, .gid, .ppid, .userPid, .userPpid, .cgroupId, .comm, .tsEnter, .tsExit, .returnCode, .latencyNs,
             .startTime, .parentStartTime: true
        default: false
        }
    }
}

/// For one table: which of its columns the host fills, by index.
public struct HostColumnMap: Sendable {
    public let header: [(column: Int, field: HostField)]
    public let enrichment: [(column: Int, field: HostField)]
    /// Columns no host field covers: the plugin's own.
    public let pluginColumns: [Int]
    /// The container image and labels columns, filled in late for rows held back.
    public let containerImageColumn: Int?
    public let containerLabelsColumn: Int?

    public init(schema: TableSchema) {
        var header: [(Int, HostField)] = []
        var enrichment: [(Int, HostField)] = []
        var own: [Int] = []
        for (i, column) in schema.columns.enumerated() {
            if let field = HostField(rawValue: column.name) {
                if field.fromHeader { header.append((i, field)) } else { enrichment.append((i, field)) }
            } else {
                own.append(i)
            }
        }
        self.header = header
        self.enrichment = enrichment
        self.pluginColumns = own
        containerImageColumn = enrichment.first { $0.1 == .containerImage }?.0
        containerLabelsColumn = enrichment.first { $0.1 == .containerLabels }?.0
    }

    /// Writes the header-derived columns. `startTimes`: the record's header has
    /// start_time_ns and parent_start_time_ns (`RecordHeader.hasStartTimes`); without
    /// them those columns get 0 and the header's memory past its older end is not read.
    @inline(__always) public func fillHeader(_ row: RowBuffer, _ h: UnsafePointer<is_event_header>, startTimes: Bool) {
        for (column, field) in header {
            switch field {
            case .pid: row.setUInt(column, UInt64(h.pointee.pid))
            case .uid: row.setUInt(column, UInt64(h.pointee.uid))
            case .gid: row.setUInt(column, UInt64(h.pointee.gid))
            case .ppid: row.setUInt(column, UInt64(h.pointee.ppid))
            case .userPid: row.setUInt(column, UInt64(h.pointee.ns_pid))
            case .userPpid: row.setUInt(column, UInt64(h.pointee.ns_ppid))
            case .cgroupId: row.setUInt(column, h.pointee.cgroup_id)
            case .comm:
                let p = UnsafeRawPointer(h) + MemoryLayout<is_event_header>.offset(of: \is_event_header.comm)!
                let bytes = p.assumingMemoryBound(to: UInt8.self)
                var n = 0
                while n < Int(IS_COMM_LEN), bytes[n] != 0 { n += 1 }
                row.setString(column, p, n)
            case .tsEnter: row.setUInt(column, h.pointee.ts_enter_ns)
            case .tsExit: row.setUInt(column, h.pointee.ts_exit_ns)
            case .returnCode: row.setInt(column, h.pointee.return_code)
            case .latencyNs:
                let e = h.pointee.ts_enter_ns, x = h.pointee.ts_exit_ns
                row.setUInt(column, x >= e ? x - e : 0)
            case .startTime: row.setUInt(column, startTimes ? h.pointee.start_time_ns : 0)
            case .parentStartTime: row.setUInt(column, startTimes ? h.pointee.parent_start_time_ns : 0)
            default: break
            }
        }
    }
}

/// The common record header (`is_event_header`) as plugins of each ABI minor send it. ABI
/// 1.2 appended `start_time_ns` and `parent_start_time_ns`; a plugin built against 1.0 or
/// 1.1 sends the header without them, so its records are read with the older size.
public enum RecordHeader {
    /// The first ABI minor whose header has the start times.
    public static let startTimesSince: UInt16 = 2
    /// The header's size from ABI 1.2 on.
    public static let size = MemoryLayout<is_event_header>.size
    /// The header's size before ABI 1.2: it ended where `start_time_ns` begins.
    public static let sizeBeforeStartTimes = MemoryLayout<is_event_header>.offset(of: \is_event_header.start_time_ns)!

    /// True when a plugin built against ABI 1.`abiMinor` sends the start times.
    public static func hasStartTimes(abiMinor: UInt16) -> Bool { abiMinor >= startTimesSince }

    /// The size of the header in the records of a plugin built against ABI 1.`abiMinor`.
    public static func size(abiMinor: UInt16) -> Int { hasStartTimes(abiMinor: abiMinor) ? size : sizeBeforeStartTimes }
}
