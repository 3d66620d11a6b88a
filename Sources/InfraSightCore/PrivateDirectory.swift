import Foundation
import Glibc

/// Directories that hold captured data (the embedded data directory, its scratch files,
/// the agent's spool): mode 0700, whatever the umask, so only their owner (and root)
/// can list or read what is in them.
public enum PrivateDirectory {
    /// Creates `path` (and missing parents, 0700 too) or, when it exists with group or
    /// other bits set, tightens it to 0700 in place (directories made by older versions
    /// were 0755), but only when `isOwn` says its entries are this program's (by default:
    /// it is empty). A looser directory holding anything else (`--data-dir /var/lib` by
    /// mistake, or /tmp) is refused rather than taken from whoever uses it. Throws one
    /// line naming the path.
    public static func prepare(_ path: String, isOwn: ([String]) -> Bool = { $0.isEmpty }) throws(PrivateDirectoryError) {
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
        guard st.st_mode & 0o077 != 0 else { return }
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw PrivateDirectoryError("cannot list directory \(path): \(error.localizedDescription)")
        }
        guard isOwn(entries) else {
            throw PrivateDirectoryError(
                "directory \(path) is mode \(String(st.st_mode & 0o7777, radix: 8)) and holds files that are not this program's: "
                    + "give a directory of its own (it is made 0700)")
        }
        if chmod(path, 0o700) != 0 { throw PrivateDirectoryError(path, "cannot restrict to mode 0700", errno) }
    }

    static func parentPath(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }
}

/// One line: what could not be done to which directory, and why.
public struct PrivateDirectoryError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ path: String, _ what: String, _ code: Int32) {
        description = "\(what) directory \(path): \(String(cString: strerror(code)))"
    }

    init(_ description: String) { self.description = description }
}

/// Files that hold captured data or secrets (scratch batches, the console's generated
/// token): created new, never over an existing file (O_EXCL), mode 0600 whatever the umask.
public enum PrivateFile {
    /// Creates `path` holding `data`; when the write fails the partial file is removed.
    /// Throws one line naming the path.
    public static func create(_ path: String, contents data: Data) throws(PrivateFileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { let e = errno; throw PrivateFileError("cannot create \(path): \(String(cString: strerror(e)))", errno: e) }
        defer { close(fd) }
        guard data.withUnsafeBytes({ UnixSocket.writeAll(fd, $0) }) else {
            let e = errno
            unlink(path)
            throw PrivateFileError("cannot write \(path): \(String(cString: strerror(e)))", errno: e)
        }
    }
}

public struct PrivateFileError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The failed call's errno (ENOSPC: the disk is full), or 0.
    public let errno: Int32
    init(_ description: String, errno: Int32 = 0) {
        self.description = description
        self.errno = errno
    }
}
