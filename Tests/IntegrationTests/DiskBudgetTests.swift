import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// storage.max_disk end to end: `infrasight run` on a file system too small for what it
/// traces keeps the newest rows, drops the oldest, and counts every one.
@Suite(.serialized) struct DiskBudgetTests {
    /// Opens `marker-1` … `marker-total` (missing files: each a traced open) from a thread
    /// named `comm`, ~60,000 a second (the debug build's reader keeps up beside the
    /// store's work), then `marker-last-1` … `-10` slowly: the newest, which must be kept.
    static func openInSequence(comm: String, marker: String, total: Int) throws {
        try withThreadComm(comm) {
            for i in 1...total {
                let fd = open("\(marker)-\(i)", O_RDONLY)
                if fd >= 0 { close(fd) }
                if i % 1000 == 0 { usleep(15_000) }
            }
            for i in 1...10 {
                let fd = open("\(marker)-last-\(i)", O_RDONLY)
                if fd >= 0 { close(fd) }
                usleep(50_000)
            }
        }
    }

    /// The rows a budget drop line says it dropped (`… dropped the oldest N rows of …`).
    static func droppedRows(_ line: Substring) -> Int? {
        guard let r = line.range(of: "dropped the oldest ") else { return nil }
        return Int(line[r.upperBound...].prefix { $0.isNumber })
    }

    /// A 12 MB tmpfs and the default budget (80 % of it): 800,000 opens make far more rows
    /// than fit. Every row the writer took is stored (no store or queue drops); the rows
    /// the budget dropped are counted in the summary and said in one line per part, and
    /// they are the oldest: every kept row is newer than every dropped one, and the last
    /// opens are all there.
    @Test func aSmallFileSystemKeepsTheNewestRowsAndCountsTheOldestItDropped() throws {
        let mountPoint = try makeTempDir(prefix: "budget-fs")
        let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=12m,mode=0700", "budget-test", mountPoint])
        #expect(mounted.status == 0, "\(mounted.stderr)")
        defer { _ = try? run("/bin/umount", ["-l", mountPoint]) }
        let work = try makeTempDir(prefix: "budget-work")
        let comm = uniqueComm("bd")
        try "plugins:\n  enabled: [tracing]\n  options:\n    tracing:\n      include_comms: [\"\(comm)\"]\n"
            .write(toFile: "\(work)/run.yaml", atomically: true, encoding: .utf8)
        let data = "\(mountPoint)/data"
        let agent = try BackgroundProcess(Paths.infrasight, ["run", "--data-dir", data, "--config", "\(work)/run.yaml"])
        try agent.waitForStderr("infrasight: note: started: ")

        let marker = "/nonexistent/budget-\(getpid())"
        let total = 800_000
        try Self.openInSequence(comm: comm, marker: marker, total: total)
        func query(_ sql: String) throws -> String {
            let r = try run(Paths.infrasight, ["query", "--data-dir", data, sql])
            guard r.status == 0 else { throw TestFailure("query failed (\(r.status)): \(r.stderr)") }
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try waitUntil("the last opens are stored", timeout: 60) {
            try query("SELECT count() FROM audit.tracing_events WHERE filename LIKE '\(marker)-last-%'") == "10"
        }
        agent.signal(SIGTERM)
        let r = try agent.wait(timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        let n = try #require(summaryNumbers(r.stderr, plugin: "tracing"), "\(r.stderr)")
        let stored = try #require(n["rows stored"]), aged = try #require(n["disk budget drops"])
        #expect(n["queue drops"] == 0 && n["store drops"] == 0, "\(n)")
        #expect(aged > 0, "the budget dropped nothing: \(n)")

        // Each drop is one line; their rows add up to the summary's count.
        let drops = r.stderr.split(separator: "\n").filter { $0.contains("; dropped the oldest ") }
        let droppedRows = drops.compactMap(Self.droppedRows)
        #expect(droppedRows.count == drops.count && droppedRows.reduce(0, +) == aged, "\(drops)")
        #expect(drops.allSatisfy { $0.hasPrefix("infrasight: note: disk budget (storage.max_disk 80%): ") && $0.contains(" of audit.tracing_events (part ") })

        // The store holds exactly what was stored minus what the budget dropped...
        #expect(try query("SELECT count() FROM audit.tracing_events") == "\(stored - aged)")
        // ...the newest: the last opens, and the highest sequence numbers.
        #expect(try query("SELECT count() FROM audit.tracing_events WHERE filename LIKE '\(marker)-last-%'") == "10")
        let seqs = try query("""
            SELECT min(s), max(s), count() FROM (SELECT toUInt64OrZero(splitByChar('-', filename)[-1]) AS s
            FROM audit.tracing_events WHERE filename LIKE '\(marker)-%' AND filename NOT LIKE '%-last-%')
            """).split(separator: "\t").compactMap { Int($0) }
        // (The kernel's drops, counted, are the only rows that may be missing at the top.)
        let kernel = n["kernel drops"] ?? -1
        #expect(seqs.count == 3 && seqs[0] > 1 && seqs[1] >= total - kernel, "\(seqs), \(n)")
        // Every kept row is at least as new as the newest dropped one (to the second).
        let newestDropped = drops.compactMap { line -> String? in
            guard let r = line.range(of: "rows up to ") else { return nil }
            return String(line[r.upperBound...].prefix(19))
        }.max() ?? ""
        let oldestKept = try query("SELECT formatDateTime(min(wall_time_dt), '%Y-%m-%d %H:%i:%S', 'UTC') FROM audit.tracing_events")
        #expect(!newestDropped.isEmpty && oldestKept >= newestDropped, "kept from \(oldestKept), dropped up to \(newestDropped)")
    }

    /// The server follows the same rule for its agents: its store on a 32 MB tmpfs, an
    /// agent sending 1,200,000 rows (in batches of up to 4 MiB); every row the agent delivered is stored or counted as
    /// dropped by the server's budget (one line each), the newest are kept, and the agent
    /// loses nothing on the way.
    @Test func aServerOnASmallFileSystemKeepsItsAgentsNewestRows() throws {
        let mountPoint = try makeTempDir(prefix: "budget-server-fs")
        let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=32m,mode=0700", "budget-server", mountPoint])
        #expect(mounted.status == 0, "\(mounted.stderr)")
        defer { _ = try? run("/bin/umount", ["-l", mountPoint]) }
        let data = "\(mountPoint)/data"
        let server = try Fleet.Server.start(store: ["--data-dir", data])
        let work = try makeTempDir(prefix: "budget-agent")
        let comm = uniqueComm("bs")
        try "plugins:\n  enabled: [tracing]\n  options:\n    tracing:\n      include_comms: [\"\(comm)\"]\n"
            .write(toFile: "\(work)/agent.yaml", atomically: true, encoding: .utf8)
        let agent = try Fleet.agent(port: server.port, spool: "\(work)/spool", dir: work)
        try agent.waitForStderr("connected to server", timeout: 30)

        let marker = "/nonexistent/budget-server-\(getpid())"
        let total = 1_200_000
        try Self.openInSequence(comm: comm, marker: marker, total: total)
        let a = try agent.interrupt(after: 2, timeout: 180)
        #expect(a.status == 0, "\(a.stderr)")
        let n = try #require(summaryNumbers(a.stderr, plugin: "tracing"), "\(a.stderr)")
        #expect(n["spool drops"] == 0 && n["spool evicted"] == 0 && n["queue drops"] == 0, "\(n)")
        let delivered = try #require(n["rows delivered"])
        #expect(delivered == n["rows spooled"], "\(n)")
        let s = try server.stop()
        #expect(s.status == 0, "\(s.stderr)")

        let drops = s.stderr.split(separator: "\n").filter { $0.contains("; dropped the oldest ") && $0.contains(" of audit.tracing_events ") }
        let dropped = drops.compactMap(Self.droppedRows).reduce(0, +)
        #expect(dropped > 0, "the server's budget dropped nothing: \(s.stderr.suffix(2000))")
        let stored = try Fleet.count(data, "SELECT count() FROM audit.tracing_events")
        #expect(stored == delivered - dropped, "stored \(stored), delivered \(delivered), dropped \(dropped)")
        #expect(try Fleet.count(data, "SELECT count() FROM audit.tracing_events WHERE filename LIKE '\(marker)-last-%'") == 10)
        let newest = try Fleet.count(data, "SELECT max(toUInt64OrZero(splitByChar('-', filename)[-1])) FROM audit.tracing_events WHERE filename LIKE '\(marker)-%' AND filename NOT LIKE '%-last-%'")
        #expect(newest >= total - (n["kernel drops"] ?? total), "newest \(newest), \(n)")
    }
}
