import CLibbpf
import Glibc

/// The kernel's own accounting of BPF program run time (`run_time_ns`, `run_cnt`), which it
/// keeps only while run-time statistics are enabled.
public enum ProgramStats {
    public struct Sample: Sendable {
        public var name: String
        public var runTimeNs: UInt64
        public var runCount: UInt64
    }

    /// Turns run-time statistics on until the returned handle is closed (BPF_ENABLE_STATS:
    /// the kernel turns them off again when the last such handle goes, so a crash cannot
    /// leave them on). Statistics cost each program run two clock reads (~60 ns here).
    public static func enable() throws(BPFError) -> Int32 {
        let fd = bpf_enable_stats(BPF_STATS_RUN_TIME)
        if fd < 0 { throw .map("cannot enable BPF run-time statistics: \(errnoText(-fd))") }
        return fd
    }

    /// The counters of the program `fd` (nil when the kernel will not say).
    static func sample(fd: Int32) -> Sample? {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &length) == 0 else { return nil }
        let name = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return Sample(name: name, runTimeNs: info.run_time_ns, runCount: info.run_cnt)
    }

    /// Every loaded program's counters whose name is in `names` (summed over programs of
    /// the same name), whoever loaded them.
    public static func read(names: Set<String>) -> [String: Sample] {
        var out: [String: Sample] = [:]
        var id: UInt32 = 0
        while bpf_prog_get_next_id(id, &id) == 0 {
            let fd = bpf_prog_get_fd_by_id(id)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard let s = sample(fd: fd), names.contains(s.name) else { continue }
            var sum = out[s.name] ?? Sample(name: s.name, runTimeNs: 0, runCount: 0)
            sum.runTimeNs += s.runTimeNs
            sum.runCount += s.runCount
            out[s.name] = sum
        }
        return out
    }

    /// Nanoseconds per run of each program named in `names` between `before` and `after`.
    public static func nsPerRun(from before: [String: Sample], to after: [String: Sample]) -> [String: Double] {
        var out: [String: Double] = [:]
        for (name, a) in after {
            let b = before[name] ?? Sample(name: name, runTimeNs: 0, runCount: 0)
            guard a.runCount > b.runCount else { continue }
            out[name] = Double(a.runTimeNs &- b.runTimeNs) / Double(a.runCount - b.runCount)
        }
        return out
    }
}

extension BPFObject {
    /// The run-time counters of this object's loaded programs, under their names in the
    /// object (the kernel keeps only 15 characters). All zero unless statistics are on.
    public var programStats: [ProgramStats.Sample] {
        var out: [ProgramStats.Sample] = []
        var prog = bpf_object__next_program(raw, nil)
        while let p = prog {
            let fd = bpf_program__fd(p)
            if fd >= 0, var s = ProgramStats.sample(fd: fd) {
                s.name = String(cString: bpf_program__name(p))
                out.append(s)
            }
            prog = bpf_object__next_program(raw, p)
        }
        return out
    }
}
