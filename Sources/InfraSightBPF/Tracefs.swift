import Foundation
import Glibc

/// tracefs, which libbpf needs to resolve tracepoint ids.
public enum Tracefs {
    public static let path = "/sys/kernel/tracing"

    /// Mounts tracefs at /sys/kernel/tracing when it is missing. Returns true when it had
    /// to mount it (the caller says so in one line).
    public static func ensureMounted() throws(BPFError) -> Bool {
        if FileManager.default.fileExists(atPath: "\(path)/events") { return false }
        if mount("nodev", path, "tracefs", 0, nil) != 0 {
            let e = errno
            throw e == EPERM ? .notPermitted("mounting tracefs") : .tracefsUnavailable(errnoText(e))
        }
        return true
    }

    /// True when the tracepoint `category/name` exists on this kernel.
    public static func hasTracepoint(_ categoryAndName: String) -> Bool {
        FileManager.default.fileExists(atPath: "\(path)/events/\(categoryAndName)/id")
    }
}
