import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// A local system user made for one test (no home, no login shell), to run programs as
/// someone who is neither root nor the owner of what is tested. `remove()` deletes it;
/// call it in a `defer`.
final class UnprivilegedUser {
    let name: String
    let uid: uid_t
    let gid: gid_t

    init() throws {
        name = "infrasight-test-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let r = try InfraSightTestSupport.run("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        guard r.status == 0 else { throw TestFailure("useradd \(name): \(r.stderr)") }
        guard let entry = getpwnam(name) else { throw TestFailure("useradd made \(name) but getpwnam does not find it") }
        uid = entry.pointee.pw_uid
        gid = entry.pointee.pw_gid
    }

    /// `executable arguments` as this user: its uid and gid, no supplementary groups.
    func run(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
        try InfraSightTestSupport.run("/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", executable] + arguments)
    }

    func remove() {
        do {
            let r = try InfraSightTestSupport.run("/usr/sbin/userdel", [name])
            if r.status != 0 { Issue.record("userdel \(name): \(r.stderr)") }
        } catch {
            Issue.record("userdel \(name): \(error)")
        }
    }
}

/// The permission bits of `path` (the `mode & 0o7777` of stat), or nil when it does not exist.
func mode(_ path: String) -> mode_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
}

/// The owner of `path`, or nil when it does not exist.
func ownerUID(of path: String) -> uid_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_uid : nil
}
