import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The out-of-tree example (Examples/HelloProbe): built as its own package against the
/// SDK only, dropped into a --plugin-dir, loaded and traced by an unchanged host.
@Suite(.serialized) struct ExamplePluginTests {
    static let packageDir = "\(Paths.packageRoot)/Examples/HelloProbe"

    static func buildExample() throws -> String {
        let swift = ProcessInfo.processInfo.environment["SWIFT_EXEC_PATH"] ?? "/usr/bin/env"
        let args = swift == "/usr/bin/env" ? ["swift", "build", "--package-path", packageDir] : ["build", "--package-path", packageDir]
        let r = try run(swift, args)
        guard r.status == 0 else { throw TestFailure("building the example failed: \(r.stdout) \(r.stderr)") }
        let dir = try makeTempDir(prefix: "plugins")
        let so = "\(packageDir)/.build/debug/libinfrasight-signals.so"
        try FileManager.default.copyItem(atPath: so, toPath: "\(dir)/libinfrasight-signals.so")
        chmod("\(dir)/libinfrasight-signals.so", 0o755)
        return dir
    }

    @Test func theExampleLoadsFromAPluginDirAndTracesSignals() throws {
        let dir = try Self.buildExample()
        let list = try run(Paths.infrasight, ["plugins", "list", "--json", "--plugin-dir", dir])
        #expect(list.status == 0, "\(list.stderr)")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        let signals = try #require(items.first { $0["name"] as? String == "signals" })
        #expect(signals["status"] as? String == "loaded")
        #expect(signals["path"] as? String == "\(dir)/libinfrasight-signals.so")
        #expect(signals["tables"] as? [String] == ["audit.signal_events"])
        #expect(items.contains { $0["name"] as? String == "tracing" && $0["status"] as? String == "loaded" })

        let trace = try BackgroundProcess(Paths.infrasight, ["trace", "--plugin-dir", dir, "--plugins", "signals"])
        try trace.waitForStderr("infrasight: note: started: signals")
        let victim = try BackgroundProcess("/bin/sleep", ["30"])
        kill(victim.pid, SIGUSR1)
        _ = victim.wait()
        let r = try trace.interrupt(after: 0.3, timeout: 180)
        let rows = try jsonLines(r.stdout)
        let row = try #require(rows.first { int($0, "target_pid") == Int64(victim.pid) }, "\(r.stderr)")
        #expect(row["table"] as? String == "signal_events")
        #expect(int(row, "pid") == Int64(getpid()))
        #expect(int(row, "signal") == Int64(SIGUSR1))
        #expect(row["signal_name"] as? String == "SIGUSR1")
        #expect(int(row, "return_code") == 0)
        #expect(row["event_type"] as? String == "kill")
    }
}
