import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// Nothing lost silently, end to end: every event of a known workload is either a stored
/// row or counted as dropped at exactly one stage.
@Suite(.serialized) struct ConservationTests {
    @Test func everyOpenIsStoredOrCountedThroughRunIntoEmbeddedClickHouse() throws {
        let (helper, marker, dir, comm) = try buildOpenLoop()
        let data = try makeTempDir(prefix: "conserve-data")
        try writeTracingConfig(comm: comm, to: "\(dir)/c.yaml")
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--config", "\(dir)/c.yaml", "--data-dir", data])
        try agent.waitForStderr("infrasight: note: started: ")
        let total = 500_000
        let child = try BackgroundProcess(helper, [marker, String(total)])
        #expect(child.wait().status == 0)
        let r = try agent.interrupt(after: 0.5, timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        let n = try #require(summaryNumbers(r.stderr, plugin: "tracing"), "\(r.stderr)")
        let received = n["received"] ?? -1, kernel = n["kernel drops"] ?? -1, decode = n["decode errors"] ?? -1
        let queue = n["queue drops"] ?? -1, store = n["store drops"] ?? -1, stored = n["rows stored"] ?? -1
        // Every event the kernel saw was received or dropped there; every received one
        // became a stored row or a counted drop.
        #expect(received + kernel == total, "\(n)")
        #expect(stored + queue + store + decode == received, "\(n)")
        let q = try run(Paths.infrasight, ["query", "--data-dir", data, "SELECT count() FROM audit.tracing_events WHERE filename = '\(marker)'"])
        #expect(q.stdout == "\(stored)\n", "\(q.stderr)")
    }
}
