import InfraSightCore
import InfraSightPipeline
import InfraSightSchema
import Testing

/// The small checks the trust boundaries share: what counts as loopback, which database
/// may hold agents' tables, how outside text becomes one log line.
@Suite struct TrustChecksTests {
    @Test(arguments: ["localhost", "127.0.0.1", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1"])
    func loopbackAddresses(host: String) { #expect(isLoopback(host)) }

    @Test(arguments: ["0.0.0.0", "::", "10.0.0.1", "127.example.com", "127.", "::2", "localhost.evil", ""])
    func notLoopback(host: String) { #expect(!isLoopback(host)) }

    @Test func agentsDatabaseIsAPlainNameThatIsNotTheEnginesOrTheServers() {
        #expect(agentDatabaseProblem("audit") == nil)
        #expect(agentDatabaseProblem("audit_2") == nil)
        for name in ["system", "information_schema", "INFORMATION_SCHEMA", "infrasight", "a-b", "1x", "", "x`; DROP"] {
            #expect(agentDatabaseProblem(name) == "must be a plain database name other than system, information_schema and infrasight (got \(name))")
        }
    }

    @Test func outsideTextBecomesOneLogLine() {
        #expect(oneLogLine("a\nb\rc\u{2028}d\u{2029}e\u{0}f") == "a b c d e f")
        #expect(oneLogLine("x\u{202E}txt.exe\u{2066}y\u{2069}-名前-🙂") == "x txt.exe y -名前-🙂")
        // A plugin's refusal, as /readyz and the log show it: one line, bounded.
        let failure = PluginFailure(plugin: "nl", reason: "bad\nready\nplugin tracing not running: \u{202E}x" + String(repeating: "y", count: 5000), kind: .other)
        #expect(failure.reason.hasPrefix("bad ready plugin tracing not running:  xyyy"))
        #expect(failure.reason.count == 1024)
        #expect(oneLogLine("abcdef", limit: 3) == "abc")
        #expect(oneLogLine("ok: plain") == "ok: plain")
    }
}
