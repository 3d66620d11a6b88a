import Foundation
import InfraSightTestSupport
import Testing

/// Runs `infrasight trace --plugins plugins` (with the config file `config`, if any)
/// around `workload`, stops it with SIGINT `settle` seconds after, and expects a clean
/// exit: its output and summary.
func traceAround(_ plugins: String, config: String? = nil, settle: Double = 0.3, _ workload: () throws -> Void) throws -> ProcessResult {
    var args = ["trace", "--plugins", plugins]
    if let config {
        let dir = try makeTempDir(prefix: "cfg")
        try config.write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        args += ["--config", "\(dir)/c.yaml"]
    }
    let trace = try BackgroundProcess(Paths.infrasight, args)
    try trace.waitForStderr("infrasight: note: started: ")
    try workload()
    let r = try trace.interrupt(after: settle, timeout: 180)
    #expect(r.status == 0, "\(r.stderr)")
    return r
}
