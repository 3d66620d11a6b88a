import Foundation
import Glibc

/// A file that root may run or read its settings from, opened once and checked on that
/// descriptor, so what was checked is what gets used. Plugins, the config file and the
/// embedded ClickHouse library all pass through here.
///
/// The rules, as sudo and the kernel module loader apply them:
/// - the file is a regular file, owned by root or the effective user, and not writable by
///   group or others;
/// - every directory from the file's own up to `/` is owned by root or the effective user
///   and is not writable by group or others, unless it has the sticky bit (like `/tmp`:
///   others may add entries there but cannot rename or replace someone else's).
///
/// The directories are walked from `/` with `openat(oPath | O_NOFOLLOW)` and each is
/// checked with `fstat` on its own descriptor, and the file is opened relative to the last
/// one: no path is looked up twice, so nothing can be swapped between check and use.
/// Symlinks among the directories are resolved first (`/lib` → `usr/lib` is normal);
/// the directories checked are the real ones.
public struct TrustedFile: Sendable {
    /// What to do when the path itself (its last component) is a symlink.
    public enum FinalLink: Sendable {
        /// Resolve it and check the file it points to (config files in a Kubernetes
        /// ConfigMap mount are symlinks).
        case follow
        /// Refuse the file with "is a symlink; <why>" (`O_NOFOLLOW`).
        case refuse(why: String)
    }

    /// The path as given.
    public let path: String
    /// The absolute path of the file that was opened, symlinks resolved.
    public let realPath: String
    /// Open read-only with O_CLOEXEC. Owned by the caller: close it when done, or keep it
    /// for the life of the process when something was loaded from it.
    public let fd: Int32

    /// Opens `path` and applies the rules above; the error's reason is one line without the path.
    public static func open(_ path: String, finalLink: FinalLink) throws(FileTrustError) -> TrustedFile {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let directory: String, name: String
        switch finalLink {
        case .follow:
            let real = try resolve(absolute, what: "it")
            directory = (real as NSString).deletingLastPathComponent
            name = (real as NSString).lastPathComponent
        case .refuse:
            directory = try resolve((absolute as NSString).deletingLastPathComponent, what: "its directory")
            name = (absolute as NSString).lastPathComponent
        }
        let dirFD = try openDirectories(directory)
        defer { close(dirFD) }
        // O_NONBLOCK: a FIFO dropped where a file is expected must not hang the open; it has
        // no effect on a regular file.
        let fd = openat(dirFD, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP, case .refuse(let why) = finalLink { throw FileTrustError("is a symlink; \(why)") }
            throw FileTrustError(code == ENOENT ? "does not exist" : "cannot open: \(String(cString: strerror(code)))")
        }
        var st = stat()
        fstat(fd, &st)
        let realPath = directory == "/" ? "/" + name : directory + "/" + name
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileTrustError("not a regular file")
        }
        if let reason = refusal(st, path: realPath, isDirectory: false) {
            close(fd)
            throw FileTrustError(reason)
        }
        return TrustedFile(path: path, realPath: realPath, fd: fd)
    }

    /// Every byte of the file, read through the descriptor.
    public func contents() throws(FileTrustError) -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileTrustError("cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return data }
            data.append(contentsOf: buffer[0..<n])
            offset += off_t(n)
        }
    }

    /// `path` with every symlink resolved, or the reason it cannot be.
    private static func resolve(_ path: String, what: String) throws(FileTrustError) -> String {
        guard let resolved = realpath(path.isEmpty ? "/" : path, nil) else {
            let code = errno
            throw FileTrustError(code == ENOENT ? "does not exist" : "cannot resolve \(what) \(path): \(String(cString: strerror(code)))")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Opens `/` and each directory down to `directory` (absolute, no symlinks) relative to
    /// the one before, checking each on its descriptor; returns the last one's descriptor.
    private static func openDirectories(_ directory: String) throws(FileTrustError) -> Int32 {
        var fd = Glibc.open("/", oPath | O_DIRECTORY | O_CLOEXEC)
        var walked = ""
        for component in [""] + directory.split(separator: "/").map(String.init) {
            if !component.isEmpty {
                let next = openat(fd, component, oPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                close(fd)
                walked += "/" + component
                // A component that became a symlink since it was resolved fails here (ENOTDIR).
                guard next >= 0 else { throw FileTrustError("cannot open directory \(walked): \(String(cString: strerror(errno)))") }
                fd = next
            }
            var st = stat()
            fstat(fd, &st)
            if let reason = refusal(st, path: walked.isEmpty ? "/" : walked, isDirectory: true) {
                close(fd)
                throw FileTrustError(reason)
            }
        }
        return fd
    }

    /// Why `st` (of the file or of a directory at `path`) is not trusted, or nil.
    private static func refusal(_ st: stat, path: String, isDirectory: Bool) -> String? {
        let what = isDirectory ? "directory \(path) is " : ""
        let me = geteuid()
        guard st.st_uid == 0 || st.st_uid == me else {
            return "\(what)owned by uid \(st.st_uid), not by root or the current user"
        }
        let sticky = isDirectory && st.st_mode & S_ISVTX != 0
        guard st.st_mode & (S_IWGRP | S_IWOTH) == 0 || sticky else {
            return "\(what)writable by group or others (mode \(String(format: "%04o", st.st_mode & 0o7777))); run chmod go-w \(path)"
        }
        return nil
    }
}

/// O_PATH (Linux: 010000000 on x86_64 and arm64), which Glibc's module does not export
/// (it needs _GNU_SOURCE): opens a directory to walk and fstat it without needing read
/// permission on it.
private let oPath: Int32 = 0o10000000

/// Why a file was not trusted: one line, without the path (the caller puts it first).
public struct FileTrustError: Error, Equatable, CustomStringConvertible, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
