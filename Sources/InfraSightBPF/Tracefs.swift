import Foundation
import Glibc

/// tracefs, which libbpf needs to resolve tracepoint ids.
public enum Tracefs {
    public static let path = "/sys/kernel/tracing"

    /// Mounts tracefs at /sys/kernel/tracing when it is missing. Returns true when it had
    /// to mount it (the caller says so in one line).
    public static func ensureMounted() throws(BPFError) -> Bool {
        if FileManager.default.fileExists(atPath: "\(path)/events") { return false }
        // Mounted, yet its events cannot be seen: tracefs is root's only.
        if isMounted { throw .notPermitted("reading tracefs at \(path)") }
        if mount("nodev", path, "tracefs", 0, nil) != 0 {
            let e = errno
            throw e == EPERM ? .notPermitted("mounting tracefs") : .tracefsUnavailable(errnoText(e))
        }
        return true
    }

    /// True when the kernel has syscall tracepoints at all (CONFIG_FTRACE_SYSCALLS): one
    /// every kernel with them has, `sys_enter_exit_group`, is asked for.
    public static var hasSyscallTracepoints: Bool { hasTracepoint("syscalls/sys_enter_exit_group") }

    /// True when tracefs is mounted at `path`, from /proc/self/mounts (the directory itself
    /// is root's only: a user who may not read it can still be told).
    public static var isMounted: Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { line in
            let f = line.split(separator: " ")
            return f.count > 2 && f[1] == path && f[2] == "tracefs"
        }
    }

    /// True when the tracepoint `category/name` exists on this kernel.
    public static func hasTracepoint(_ categoryAndName: String) -> Bool {
        FileManager.default.fileExists(atPath: "\(path)/events/\(categoryAndName)/id")
    }
}
