import CHostShims
import Foundation
import Synchronization
import Glibc

/// Resolves cgroup ids (what BPF reports) to cgroup2 paths and container ids.
///
/// A path is found directly from the id: cgroup2 accepts the id as a file handle
/// (open_by_handle_at), so a cgroup created after start resolves on its first event, in
/// microseconds, without scanning the hierarchy. Results are cached (ids are not reused);
/// the cache holds at most `capacity` ids and is emptied when full.
public final class CgroupResolver {
    public struct Entry {
        /// The path relative to the cgroup2 root, e.g. `/docker/<id>`; empty if unknown.
        public let path: [UInt8]
        /// The container id found in the path, or empty.
        public let containerId: [UInt8]
    }

    public let mountPoint: String?
    private var mountFD: Int32 = -1
    private var cache: [UInt64: Entry] = [:]
    public let capacity: Int
    /// Resolver cache hits and misses (each miss is one lookup on the host).
    public let counters = CacheCounters()
    /// The path of a cgroup that can no longer be opened (removed since), if known:
    /// recorded when it was created (the host's cgroup_names BPF). Dispatcher thread only.
    public var removed: ((UInt64) -> [UInt8]?)?
    public var lookups: Int { Int(counters.misses.load(ordering: .relaxed)) }

    /// `hostRoot`: where the host's filesystem is (e.g. /host in a container).
    public init(hostRoot: String = "/", capacity: Int = 16384) {
        self.capacity = capacity
        mountPoint = Self.cgroup2Mount(hostRoot: hostRoot)
        if let mountPoint { mountFD = open(mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    }

    deinit { if mountFD >= 0 { close(mountFD) } }

    /// The cgroup2 mount point, from the host's mountinfo.
    public static func cgroup2Mount(hostRoot: String) -> String? {
        let root = hostRoot == "/" ? "" : hostRoot
        guard let text = (try? String(contentsOfFile: "\(root)/proc/1/mountinfo", encoding: .utf8))
                ?? (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) else { return nil }
        for line in text.split(separator: "\n") {
            // ... mount-point ... - fstype source options
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2, halves[1].hasPrefix("cgroup2 ") else { continue }
            let fields = halves[0].split(separator: " ")
            guard fields.count >= 5 else { continue }
            return root + String(fields[4])
        }
        return nil
    }

    public var available: Bool { mountFD >= 0 }

    public func resolve(_ id: UInt64) -> Entry {
        if let e = cache[id] {
            counters.hits.add(1, ordering: .relaxed)
            return e
        }
        counters.misses.add(1, ordering: .relaxed)
        let entry = lookUp(id)
        if cache.count >= capacity { cache.removeAll(keepingCapacity: true) }
        cache[id] = entry
        return entry
    }

    public var cachedCount: Int { cache.count }

    private func lookUp(_ id: UInt64) -> Entry {
        guard mountFD >= 0, let mountPoint else { return Entry(path: [], containerId: []) }
        let fd = is_open_cgroup_by_id(mountFD, id)
        guard fd >= 0 else {
            guard let bytes = removed?(id), !bytes.isEmpty else { return Entry(path: [], containerId: []) }
            let path = String(decoding: bytes, as: UTF8.self)
            return Entry(path: bytes, containerId: Array((ContainerID.find(in: path) ?? "").utf8))
        }
        defer { close(fd) }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard n > 0 else { return Entry(path: [], containerId: []) }
        var path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if path.hasPrefix(mountPoint) { path.removeFirst(mountPoint.count) }
        if path.isEmpty { path = "/" }
        return Entry(path: Array(path.utf8), containerId: Array((ContainerID.find(in: path) ?? "").utf8))
    }
}

/// Container ids in cgroup paths. The id is 64 hex digits, in the last path component
/// that holds one, in any of these forms:
/// - docker (cgroupfs driver): `/docker/<id>`; (systemd driver): `docker-<id>.scope`
/// - containerd / CRI: `cri-containerd-<id>.scope`, or a bare `<id>` under a kubepods path
///   (`/kubepods/besteffort/pod<uid>/<id>`)
/// - CRI-O: `crio-<id>.scope` (and `crio-conmon-<id>.scope` for its monitor)
/// - podman: `libpod-<id>.scope`, `/libpod_parent/libpod-<id>`
public enum ContainerID {
    static let prefixes = ["docker-", "cri-containerd-", "crio-conmon-", "crio-", "libpod-conmon-", "libpod-", ""]

    /// True for what Docker, podman and the CRI name containers: 64 lower-case hex digits.
    public static func isFull(_ id: some StringProtocol) -> Bool {
        id.utf8.count == 64 && id.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    public static func find(in path: String) -> String? {
        for component in path.split(separator: "/").reversed() {
            var name = Substring(component)
            if name.hasSuffix(".scope") { name = name.dropLast(".scope".count) }
            for prefix in prefixes where name.hasPrefix(prefix) {
                let candidate = name.dropFirst(prefix.count)
                if isFull(candidate) {
                    return String(candidate)
                }
            }
        }
        return nil
    }
}
