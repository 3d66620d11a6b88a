import CInfraSightEvent
import Foundation
import Glibc
import Synchronization

/// Fills the enrichment columns at the source: node name, user name, wall-clock time
/// (from the kernel's monotonic timestamp plus the boot offset, not the time of
/// decoding), latency in ms. Runs on the dispatcher thread; lookups allocate nothing.
///
/// Users come from the host's passwd file (`hostRoot`/etc/passwd), read at start and
/// re-read when a uid is missing, at most every `userRefresh` seconds; an unknown uid is
/// stored as its decimal number. `cgroup_name` is the cgroup2 path of the event's cgroup,
/// `container_id` the container id in it (`CgroupResolver`), image and labels come from
/// the runtime (`ContainerResolver`); a host process has empty container columns and
/// `{}` labels. A row of a container whose metadata is still being fetched is marked
/// (`holdFor`) so its channel hands it to `held` instead of its consumer.
public final class Enricher {
    public let nodeName: [UInt8]
    public let cgroups: CgroupResolver
    public let containers: ContainerResolver
    /// Rows waiting for their container's image and labels.
    public let held: HeldRows
    /// Set by `fill` when the row must wait for its container: that container's id; nil
    /// otherwise.
    public private(set) var holdFor: [UInt8]?
    private var users: [UInt32: [UInt8]] = [:]
    /// uid → name cache hits and misses (behind the one-entry cache of the last uid).
    public let userCounters = CacheCounters()
    private let passwdPath: String
    private let userRefresh: Double = 30
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, in ns; refreshed every second so a clock step
    /// (NTP) is followed.
    private var bootOffsetNs: Int64 = 0
    private var lastOffsetRefresh: UInt64 = 0
    /// The last uid looked up and its name: consecutive events mostly share a user.
    private var lastUid: UInt32 = .max
    private var lastUser: [UInt8] = []
    private var lastUserMiss: UInt64 = 0

    /// `containerSources`: the runtimes that name containers (see ContainerResolver);
    /// `containerWait`: how long a container's rows may wait for its metadata.
    public init(nodeName: String?, hostRoot: String = "/", cgroupCapacity: Int = 16384, containerSources: [any ContainerMetadataSource] = [], containerWait: Double = 2) {
        let name = nodeName ?? ProcessInfo.processInfo.environment["NODE_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? Enricher.hostname()
        self.nodeName = Array(name.utf8)
        cgroups = CgroupResolver(hostRoot: hostRoot, capacity: cgroupCapacity)
        containers = ContainerResolver(sources: containerSources, wait: containerWait)
        held = HeldRows(wait: containerWait)
        passwdPath = (hostRoot as NSString).appendingPathComponent("etc/passwd")
        loadUsers()
        refreshOffset(now: MonotonicClock.nanoseconds())
    }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private func refreshOffset(now: UInt64) {
        var real = timespec(), mono = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        clock_gettime(CLOCK_MONOTONIC, &mono)
        bootOffsetNs = (Int64(real.tv_sec) - Int64(mono.tv_sec)) * 1_000_000_000 + Int64(real.tv_nsec) - Int64(mono.tv_nsec)
        lastOffsetRefresh = now
    }

    private var passwdModified: timespec = timespec()
    private var lastPasswdCheck: UInt64 = 0

    /// Re-reads passwd when it changed (checked at most every `userRefresh` seconds), so a
    /// renamed or removed user does not keep its old name.
    private func checkPasswd(now: UInt64) {
        guard Double(now &- lastPasswdCheck) / 1e9 > userRefresh else { return }
        lastPasswdCheck = now
        var st = stat()
        guard stat(passwdPath, &st) == 0 else { return }
        if st.st_mtim.tv_sec != passwdModified.tv_sec || st.st_mtim.tv_nsec != passwdModified.tv_nsec {
            loadUsers()
            lastUid = .max
        }
    }

    private func loadUsers() {
        var st = stat()
        if stat(passwdPath, &st) == 0 { passwdModified = st.st_mtim }
        guard let text = try? String(contentsOfFile: passwdPath, encoding: .utf8) else { return }
        var map: [UInt32: [UInt8]] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, let uid = UInt32(fields[2]) else { continue }
            if map[uid] == nil { map[uid] = Array(fields[0].utf8) }
        }
        users = map
    }

    /// Wall-clock milliseconds since the epoch of a monotonic timestamp.
    @inline(__always) public func wallTimeMs(monotonicNs: UInt64) -> Int64 {
        (Int64(bitPattern: monotonicNs) + bootOffsetNs) / 1_000_000
    }

    public func fill(_ row: RowBuffer, map: HostColumnMap, header h: UnsafePointer<is_event_header>) {
        holdFor = nil
        if map.enrichment.isEmpty { return }
        let now = h.pointee.ts_enter_ns
        if now &- lastOffsetRefresh > 1_000_000_000 { refreshOffset(now: now) }
        for (column, field) in map.enrichment {
            switch field {
            case .nodeName:
                nodeName.withUnsafeBytes { row.setString(column, $0.baseAddress, $0.count) }
            case .user:
                checkPasswd(now: now)
                let uid = h.pointee.uid
                if uid != lastUid { lookUpUser(uid, now: now) }
                lastUser.withUnsafeBytes { row.setString(column, $0.baseAddress, $0.count) }
            case .latencyMs:
                let e = h.pointee.ts_enter_ns, x = h.pointee.ts_exit_ns
                row.setFloat(column, Double(x >= e ? x - e : 0) / 1e6)
            case .wallTimeMs, .wallTimeDt:
                row.setInt(column, wallTimeMs(monotonicNs: h.pointee.ts_enter_ns))
            case .cgroupName:
                let entry = cgroup(h.pointee.cgroup_id)
                entry.path.withUnsafeBytes { row.setString(column, $0.baseAddress, $0.count) }
            case .containerId:
                let entry = cgroup(h.pointee.cgroup_id)
                entry.containerId.withUnsafeBytes { row.setString(column, $0.baseAddress, $0.count) }
            case .containerImage:
                container(h.pointee.cgroup_id).image.withUnsafeBytes { row.setString(column, $0.baseAddress, $0.count) }
            case .containerLabels:
                container(h.pointee.cgroup_id).labels.withUnsafeBytes { row.setString(column, $0.baseAddress, $0.count) }
            default: break
            }
        }
    }

    /// One-entry caches in front of the resolvers: consecutive events mostly share a cgroup.
    private var lastCgroupId: UInt64 = .max
    private var lastCgroup = CgroupResolver.Entry(path: [], containerId: [])
    private var lastContainerCgroupId: UInt64 = .max
    private var lastContainer = ContainerResolver.Metadata.empty

    @inline(__always) private func cgroup(_ id: UInt64) -> CgroupResolver.Entry {
        if id != lastCgroupId {
            lastCgroupId = id
            lastCgroup = cgroups.resolve(id)
        }
        return lastCgroup
    }

    /// The row's container metadata; empty, with `holdFor` set, while it is being fetched
    /// (or while earlier rows of the container still wait, so its rows keep their order).
    @inline(__always) private func container(_ id: UInt64) -> ContainerResolver.Metadata {
        if id == lastContainerCgroupId { return lastContainer }
        let containerId = cgroup(id).containerId
        if containerId.isEmpty { return .empty }
        switch containers.lookup(containerId) {
        case .found(let m):
            if held.holds(containerId) {
                holdFor = containerId
                return m
            }
            // Only a found answer is kept here: a miss is asked again through the
            // resolver's own (expiring) negative cache.
            lastContainerCgroupId = id
            lastContainer = m
            return m
        case .pending:
            if held.wait > 0 { holdFor = containerId }
            return .empty
        case .none:
            return .empty
        }
    }

    /// Sets `lastUser` to the name of `uid`, re-reading passwd on a miss at most every
    /// `userRefresh` seconds (a user created after start resolves); an unknown uid is its
    /// decimal number. Allocates only when the user changes.
    private func lookUpUser(_ uid: UInt32, now: UInt64) {
        lastUid = uid
        if let name = users[uid] {
            userCounters.hits.add(1, ordering: .relaxed)
            lastUser = name
            return
        }
        userCounters.misses.add(1, ordering: .relaxed)
        if Double(now &- lastUserMiss) / 1e9 > userRefresh {
            lastUserMiss = now
            loadUsers()
            if let name = users[uid] {
                lastUser = name
                return
            }
        }
        lastUser = Array(String(uid).utf8)
    }
}

/// Hits and misses of one enrichment cache, readable from any thread (metrics).
public final class CacheCounters: Sendable {
    public let hits = Atomic<UInt64>(0)
    public let misses = Atomic<UInt64>(0)
    public init() {}
}
