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
        FileManager.default.createFile(atPath: "\(base)/file", contents: Data())
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
    }
}
