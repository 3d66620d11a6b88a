import Glibc

/// Directories that hold captured data (the embedded data directory, its scratch files,
/// the agent's spool): mode 0700, whatever the umask, so only their owner (and root)
/// can list or read what is in them.
public enum PrivateDirectory {
    /// Creates `path` (and missing parents, 0700 too) or, when it exists with group or
    /// other bits set, tightens it to 0700 in place (directories made by older versions
    /// were 0755). Throws one line naming the path when it is not a directory or cannot
    /// be created or tightened.
    public static func prepare(_ path: String) throws(PrivateDirectoryError) {
        var st = stat()
        if stat(path, &st) != 0 {
            guard errno == ENOENT else { throw PrivateDirectoryError(path, "cannot use", errno) }
            let parent = parentPath(path)
            if parent != path && stat(parent, &st) != 0 { try prepare(parent) }
            // Another process may create it between the stat and here: EEXIST is fine.
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw PrivateDirectoryError(path, "cannot create", errno) }
            guard stat(path, &st) == 0 else { throw PrivateDirectoryError(path, "cannot use", errno) }
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw PrivateDirectoryError(path, "cannot use", ENOTDIR) }
        if st.st_mode & 0o077 != 0 && chmod(path, 0o700) != 0 {
            throw PrivateDirectoryError(path, "cannot restrict to mode 0700", errno)
        }
    }

    static func parentPath(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }
}

/// One line: what could not be done to which directory, and the system's reason.
public struct PrivateDirectoryError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ path: String, _ what: String, _ code: Int32) {
        description = "\(what) directory \(path): \(String(cString: strerror(code)))"
    }
}
