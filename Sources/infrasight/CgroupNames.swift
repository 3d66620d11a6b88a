import InfraSightBPF
import InfraSightCore
import InfraSightSDK
import Logging

/// The host's own BPF object (cgroup_names.bpf.c): records each cgroup2 cgroup's path
/// when it is created, so a cgroup removed before its rows are read is still named.
enum CgroupNames {
    /// Loads and attaches it and gives `cgroups` its lookup (which keeps it attached); a
    /// failure is one note and the enricher does without (cgroups that still exist are
    /// named all the same).
    static func attach(to cgroups: CgroupResolver, logger: Logger) {
        do {
            let object = try EmbeddedBPFObject.cgroup_names.bytes.withUnsafeBytes { try BPFObject(bytes: $0, name: "cgroup_names") }
            try object.load()
            try object.attachAll()
            guard let fd = object.mapDescriptor("is_cgroup_paths") else { return }
            cgroups.removed = { [object] id in
                _ = object
                return BPFObject.lookup(fd: fd, key: id, valueSize: 256).map { bytes in Array(bytes.prefix { $0 != 0 }) }
            }
        } catch {
            logger.notice("cgroups removed before their rows are read stay unnamed: \(error)")
        }
    }
}
