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
        case .pid, .uid, .gid, .ppid, .userPid, .userPpid, .cgroupId, .comm, .tsEnter, .tsExit, .returnCode, .latencyNs: true
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

    /// Writes the header-derived columns.
    @inline(__always) public func fillHeader(_ row: RowBuffer, _ h: UnsafePointer<is_event_header>) {
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
            default: break
            }
        }
    }
}
