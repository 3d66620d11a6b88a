import Foundation
import Glibc
import InfraSightBPF
import InfraSightSDK
import InfraSightStorage

/// ns per openat+close pair over `ops` iterations (best of 3 runs).
func openatCost(ops: Int) -> Double {
    var best = Double.infinity
    for _ in 0..<3 {
        let s = seconds {
            for _ in 0..<ops {
                let fd = open("/etc/hostname", O_RDONLY)
                if fd >= 0 { close(fd) }
            }
        }
        best = min(best, s * 1e9 / Double(ops))
    }
    return best
}

/// Starts `infrasight run` (every plugin, or those `--config` enables) storing into `data`;
/// returns once it says it has started.
func startRun(data: String) throws -> Child {
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    let agent = try Child("\(bin)/infrasight", ["run", "--data-dir", data] + (option("--config").map { ["--config", $0] } ?? []), log: data + ".log")
    _ = try agent.waitFor("started:")
    return agent
}

/// Runs `body` with run-time statistics on and returns ns per run of the named programs.
func programCost(_ names: Set<String>, _ body: () -> Void) throws -> [String: Double] {
    let handle = try ProgramStats.enable()
    defer { close(handle) }
    let before = ProgramStats.read(names: names)
    body()
    return ProgramStats.nsPerRun(from: before, to: ProgramStats.read(names: names))
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// Overhead per traced openat. The VM's speed drifts within seconds (neighbours), so each
/// round measures untraced, floor, untraced, ours, untraced back to back, each traced
/// loop is compared with the untraced loops on either side of it, and the summary is the
/// median over rounds. A last pass with run-time statistics on gives the BPF programs'
/// own cost per run (which the timed passes do not pay).
func overheadBench(ops: Int, rounds: Int) throws -> String {
    let bytes = EmbeddedBPFObject.floor.bytes
    _ = try Tracefs.ensureMounted()
    let data = NSTemporaryDirectory() + "/infrasight-overhead-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: data) }
    var floorAdded: [Double] = [], oursAdded: [Double] = [], baselines: [Double] = []
    var floorPrograms: [String: Double] = [:], ourPrograms: [String: Double] = [:]
    var summaries: [String] = []
    for round in 0..<max(1, rounds) {
        let last = round == max(1, rounds) - 1
        let before = openatCost(ops: ops)
        let floor: Double = try bytes.withUnsafeBytes { raw in
            let object = try BPFObject(bytes: raw, name: "floor")
            try object.load()
            try object.attachAll()
            let cost = openatCost(ops: ops)
            if last { floorPrograms = try programCost(["floor_enter", "floor_exit"]) { _ = openatCost(ops: ops / 3) } }
            withExtendedLifetime(object) {}
            return cost
        }
        let between = openatCost(ops: ops)
        try? FileManager.default.removeItem(atPath: data)
        let agent = try startRun(data: data)
        let ours = openatCost(ops: ops)
        if last { ourPrograms = try programCost(["enter_openat", "exit_openat"]) { _ = openatCost(ops: ops / 3) } }
        let output = agent.stop()
        try? FileManager.default.removeItem(atPath: data + ".log")
        summaries.append(String(output.split(separator: "\n").first { $0.hasPrefix("infrasight: tracing:") } ?? ""))
        let after = openatCost(ops: ops)
        baselines += [before, between, after]
        floorAdded.append(floor - (before + between) / 2)
        oursAdded.append(ours - (between + after) / 2)
    }
    let floorMedian = median(floorAdded), oursMedian = median(oursAdded)
    func list(_ v: [Double]) -> String { "[" + v.map { String(Int($0.rounded())) }.joined(separator: ",") + "]" }
    func programs(_ p: [String: Double]) -> String {
        "{" + p.keys.sorted().map { "\"\($0)\":\(Int(p[$0]!.rounded()))" }.joined(separator: ",") + "}"
    }
    // Every round's agent must have stored every event it received (the summary says so).
    let agentLines = summaries.map { "\"\($0.replacingOccurrences(of: "\"", with: ""))\"" }.joined(separator: ",")
    return """
        {"bench":"overhead_openat","ops":\(ops),"rounds":\(summaries.count),"baseline_ns":\(list(baselines)),\
        "floor_added_ns":\(list(floorAdded)),"ours_added_ns":\(list(oursAdded)),\
        "floor_added_median_ns":\(Int(floorMedian)),"ours_added_median_ns":\(Int(oursMedian)),\
        "ratio_to_floor":\(String(format: "%.2f", oursMedian / max(floorMedian, 1))),"target_ratio":2.0,\
        "target_met":\(oursMedian <= 2 * max(floorMedian, 1)),\
        "bpf_ns_per_run_with_stats":{"floor":\(programs(floorPrograms)),"ours":\(programs(ourPrograms))},\
        "agent":[\(agentLines)]}
        """
}
