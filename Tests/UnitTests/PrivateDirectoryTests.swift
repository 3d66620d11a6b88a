import Foundation
import Glibc
import InfraSightCore
import InfraSightPipeline
import InfraSightPipelineProto
import InfraSightTestSupport
import Testing

/// Directories holding captured data are 0700 and their files 0600, whatever the umask,
/// and a directory an older version left 0755 is tightened in place.
@Suite(.serialized) struct PrivateDirectoryTests {
    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    @Test func missingDirectoriesAreCreated0700AndLooserOnesTightened() throws {
        let old = umask(0o022)
        defer { umask(old) }
        let base = try makeTempDir(prefix: "private")
        try PrivateDirectory.prepare("\(base)/a/b/c/")
        #expect(mode("\(base)/a") == 0o700)
        #expect(mode("\(base)/a/b/c") == 0o700)
        #expect(chmod("\(base)/a/b/c", 0o755) == 0)
        try PrivateDirectory.prepare("\(base)/a/b/c")
        #expect(mode("\(base)/a/b/c") == 0o700)
        // Tighter than 0700 (no group or other bits) is left as it is.
        #expect(chmod("\(base)/a/b/c", 0o500) == 0)
        try PrivateDirectory.prepare("\(base)/a/b/c")
        #expect(mode("\(base)/a/b/c") == 0o500)
        // A looser directory holding someone else's files (a mistaken --data-dir /var/lib,
        // or /tmp) is refused and left as it was.
        let shared = "\(base)/shared"
        #expect(mkdir(shared, 0o777) == 0 && chmod(shared, 0o1777) == 0)
        #expect(FileManager.default.createFile(atPath: "\(shared)/someone-elses", contents: Data()))
        do {
            try PrivateDirectory.prepare(shared)
            Issue.record("a shared directory was taken")
        } catch {
            #expect(error.description == "directory \(shared) is mode 1777 and holds files that are not this program's: give a directory of its own (it is made 0700)")
        }
        #expect(mode(shared) == 0o1777)
        try PrivateDirectory.prepare(shared) { $0 == ["someone-elses"] }
        #expect(mode(shared) == 0o700)
        #expect(FileManager.default.createFile(atPath: "\(base)/file", contents: Data()))
        #expect(throws: PrivateDirectoryError.self) { try PrivateDirectory.prepare("\(base)/file") }
        do {
            try PrivateDirectory.prepare("\(base)/file")
        } catch {
            #expect(error.description == "cannot use directory \(base)/file: Not a directory")
        }
    }

    @Test func theSpoolIsPrivateAndItsBatchesAre0600() throws {
        let old = umask(0o022)
        defer { umask(old) }
        let dir = try makeTempDir(prefix: "spool") // 0755, as an older agent left it
        let spool = try BatchSpool(directory: dir, maxBytes: 1 << 20)
        #expect(mode(dir) == 0o700)
        let stored = try #require(try spool.append(.with {
            $0.batchID = "b"
            $0.table = "audit.tracing_events"
            $0.rows = Data([1])
            $0.rowCount = 1
        }))
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(files == [String(format: "%020llu.batch", stored.sequence)])
        #expect(mode("\(dir)/\(files[0])") == 0o600)
        let foreign = try makeTempDir(prefix: "spool")
        #expect(FileManager.default.createFile(atPath: "\(foreign)/notes.txt", contents: Data()))
        #expect(throws: SpoolError.self) { try BatchSpool(directory: foreign, maxBytes: 1 << 20) }
        #expect(mode(foreign) == 0o755)
    }
}
