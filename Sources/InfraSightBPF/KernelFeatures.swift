import CLibbpf
import Foundation
import Synchronization
import Glibc

/// A kernel capability a BPF object needs, named for a user, with the first Linux
/// release that has it. Two requirements that need the same capability (a map type and
/// the helpers that use it) name the same feature, so a refusal says it once.
public struct KernelFeature: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    /// "5.12": the first mainline release with the feature (distributions may backport).
    public let minimumKernel: String

    public init(_ name: String, _ minimumKernel: String) {
        self.name = name
        self.minimumKernel = minimumKernel
    }

    /// `NAME (Linux X.Y+)`, or `NAME (not in any release InfraSight knows)` for a helper or
    /// type it has no release for (the kernel said it lacks it all the same).
    public var description: String { minimumKernel == "?" ? "\(name) (not in any release InfraSight knows)" : "\(name) (Linux \(minimumKernel)+)" }

    /// The minimum kernel as numbers, for ordering (unknown: 0).
    public var minimumVersion: [Int] { minimumKernel.split(separator: ".").map { Int($0) ?? 0 } }

    public static let ringBuffer = KernelFeature("the BPF ring buffer", "5.8")
    /// The map type came in 5.11 for LSM programs only; tracing programs got its helpers in
    /// 5.13 (commit a10787e6d58c, merged after 5.12's window had closed).
    public static let taskStorage = KernelFeature("task-local storage in tracing programs", "5.13")
    public static let currentTaskBTF = KernelFeature("bpf_get_current_task_btf", "5.11")
    public static let probeReadUserKernel = KernelFeature("bpf_probe_read_{user,kernel}", "5.5")
    public static let btfTracepoints = KernelFeature("BTF-typed tracepoint programs (tp_btf)", "5.5")
}

/// One thing a BPF object needs from the kernel, found in the object before load.
public enum KernelRequirement: Hashable, Sendable {
    case mapType(UInt32)
    case programType(UInt32)
    /// A helper call (by `enum bpf_func_id`) from a program of `programType`.
    case helper(Int32, programType: UInt32)
    /// A `tp_btf/NAME` program: the kernel's BTF must describe tracepoint NAME.
    case btfTracepoint(String)

    /// The feature this requirement stands for.
    public var feature: KernelFeature {
        switch self {
        case .mapType(let t):
            switch bpf_map_type(t) {
            case BPF_MAP_TYPE_RINGBUF: return .ringBuffer
            case BPF_MAP_TYPE_TASK_STORAGE: return .taskStorage
            default: return KernelFeature("BPF map type \(Self.mapTypeName(t))", Self.mapTypeKernel[t] ?? "?")
            }
        case .programType(let t):
            if bpf_prog_type(t) == BPF_PROG_TYPE_TRACING { return .btfTracepoints }
            if bpf_prog_type(t) == BPF_PROG_TYPE_LSM { return KernelFeature("BPF LSM programs", "5.7") }
            return KernelFeature("BPF program type \(Self.programTypeName(t))", Self.programTypeKernel[t] ?? "?")
        case .helper(let id, _):
            if let known = Self.helpers[id] { return known }
            return KernelFeature("BPF helper #\(id)", "?")
        case .btfTracepoint(let name):
            return KernelFeature("tracepoint \(name) in the kernel's BTF", "5.5")
        }
    }

    static func mapTypeName(_ t: UInt32) -> String {
        libbpf_bpf_map_type_str(bpf_map_type(t)).map { String(cString: $0) } ?? "#\(t)"
    }

    static func programTypeName(_ t: UInt32) -> String {
        libbpf_bpf_prog_type_str(bpf_prog_type(t)).map { String(cString: $0) } ?? "#\(t)"
    }

    /// The helpers the first-party plugins call, with the first release that has them
    /// for tracing programs. Ids are `enum bpf_func_id` (stable: the kernel only appends).
    static let helpers: [Int32: KernelFeature] = {
        var table: [Int32: KernelFeature] = [:]
        func add(_ id: bpf_func_id, _ feature: KernelFeature) { table[Int32(id.rawValue)] = feature }
        func add(_ id: bpf_func_id, _ name: String, _ kernel: String) { add(id, KernelFeature(name, kernel)) }
        add(BPF_FUNC_map_lookup_elem, "bpf_map_lookup_elem", "3.19")
        add(BPF_FUNC_map_update_elem, "bpf_map_update_elem", "3.19")
        add(BPF_FUNC_map_delete_elem, "bpf_map_delete_elem", "3.19")
        add(BPF_FUNC_ktime_get_ns, "bpf_ktime_get_ns", "4.1")
        add(BPF_FUNC_get_prandom_u32, "bpf_get_prandom_u32", "4.1")
        add(BPF_FUNC_get_current_pid_tgid, "bpf_get_current_pid_tgid", "4.2")
        add(BPF_FUNC_get_current_uid_gid, "bpf_get_current_uid_gid", "4.2")
        add(BPF_FUNC_get_current_comm, "bpf_get_current_comm", "4.2")
        add(BPF_FUNC_get_current_task, "bpf_get_current_task", "4.8")
        add(BPF_FUNC_get_current_cgroup_id, "bpf_get_current_cgroup_id", "4.18")
        for id in [BPF_FUNC_probe_read_user, BPF_FUNC_probe_read_kernel, BPF_FUNC_probe_read_user_str, BPF_FUNC_probe_read_kernel_str] {
            add(id, .probeReadUserKernel)
        }
        for id in [BPF_FUNC_ringbuf_output, BPF_FUNC_ringbuf_reserve, BPF_FUNC_ringbuf_submit, BPF_FUNC_ringbuf_discard, BPF_FUNC_ringbuf_query] {
            add(id, .ringBuffer)
        }
        add(BPF_FUNC_task_storage_get, .taskStorage)
        add(BPF_FUNC_task_storage_delete, .taskStorage)
        add(BPF_FUNC_get_current_task_btf, .currentTaskBTF)
        return table
    }()

    static let mapTypeKernel: [UInt32: String] = [
        BPF_MAP_TYPE_HASH.rawValue: "3.19", BPF_MAP_TYPE_ARRAY.rawValue: "3.19",
        BPF_MAP_TYPE_PERCPU_HASH.rawValue: "4.6", BPF_MAP_TYPE_PERCPU_ARRAY.rawValue: "4.6",
        BPF_MAP_TYPE_LRU_HASH.rawValue: "4.10", BPF_MAP_TYPE_LRU_PERCPU_HASH.rawValue: "4.10",
    ]

    static let programTypeKernel: [UInt32: String] = [
        BPF_PROG_TYPE_TRACEPOINT.rawValue: "4.7", BPF_PROG_TYPE_RAW_TRACEPOINT.rawValue: "4.17",
    ]
}

/// Asks the running kernel whether it has what a BPF object needs, before the object is
/// loaded, so a refusal names the missing feature instead of libbpf's "failed to load
/// object". Answers are cached for the process (the kernel does not change under it).
/// Thread-safe.
public enum KernelProbe {
    private static let answers = Mutex<[KernelRequirement: Bool?]>([:])

    /// `uname -r`.
    public static var release: String { uts(\.release) }
    /// `uname -m`.
    public static var machine: String { uts(\.machine) }

    private static func uts<T>(_ field: WritableKeyPath<utsname, T>) -> String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u[keyPath: field]) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// True when the kernel has it, false when it has not, nil when the kernel cannot be
    /// asked (no privileges for bpf(2)): the load will tell.
    public static func has(_ requirement: KernelRequirement) -> Bool? {
        if let known = answers.withLock({ $0[requirement] }) { return known }
        let answer = ask(requirement)
        answers.withLock { $0[requirement] = answer }
        return answer
    }

    /// Whether bpf(2) answers this process in full: libbpf's probes say "unsupported" for
    /// any failure, EPERM included, so a process that may not create the oldest map type
    /// (an array, Linux 3.19) or load a tracepoint program (4.7; root without
    /// CAP_PERFMON or CAP_SYS_ADMIN may not) learns nothing from them.
    private static let canAsk: Bool = {
        LibbpfLog.install()
        defer { _ = LibbpfLog.drain() }
        return libbpf_probe_bpf_map_type(BPF_MAP_TYPE_ARRAY, nil) == 1 && libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_TRACEPOINT, nil) == 1
    }()

    private static func ask(_ requirement: KernelRequirement) -> Bool? {
        LibbpfLog.install() // libbpf's probes print nothing to stderr either
        defer { _ = LibbpfLog.drain() }
        if case .btfTracepoint = requirement {} else if !canAsk { return nil }
        let rc: Int32
        switch requirement {
        case .mapType(let t):
            rc = libbpf_probe_bpf_map_type(bpf_map_type(t), nil)
        case .programType(let t):
            // libbpf 1.1 loads its tracing, LSM, freplace and struct_ops probes without a
            // target, which a kernel that has them still refuses: the verifier answers.
            if needsTarget(t) { return nil }
            rc = libbpf_probe_bpf_prog_type(bpf_prog_type(t), nil)
        case .helper(let id, let programType):
            guard id >= 0 else { return nil } // not a helper id at all: the verifier says so
            // A tracing (tp_btf) program's helpers are the raw tracepoint's plus a few the
            // plugins do not use; the other targeted types are left to the verifier.
            let type: bpf_prog_type
            if bpf_prog_type(programType) == BPF_PROG_TYPE_TRACING { type = BPF_PROG_TYPE_RAW_TRACEPOINT }
            else if needsTarget(programType) { return nil }
            else { type = bpf_prog_type(programType) }
            rc = libbpf_probe_bpf_helper(type, bpf_func_id(UInt32(id)), nil)
        case .btfTracepoint(let name):
            return vmlinuxHasType("btf_trace_\(name)")
        }
        if rc == 1 { return true }
        if rc == 0 { return false }
        return nil
    }

    /// Program types libbpf 1.1 cannot probe without an attach target.
    static func needsTarget(_ t: UInt32) -> Bool {
        [BPF_PROG_TYPE_TRACING, BPF_PROG_TYPE_LSM, BPF_PROG_TYPE_EXT, BPF_PROG_TYPE_STRUCT_OPS].contains(bpf_prog_type(t))
    }

    private static func vmlinuxHasType(_ name: String) -> Bool? {
        guard let btf = btf__load_vmlinux_btf(), libbpf_get_error(UnsafeRawPointer(btf)) == 0 else { return nil }
        defer { btf__free(btf) }
        return btf__find_by_name_kind(btf, name, UInt32(BTF_KIND_TYPEDEF)) > 0
    }

    /// The features among `requirements` this kernel lacks, each once, in a stable order.
    public static func missing(_ requirements: [KernelRequirement]) -> [KernelFeature] {
        var out: [KernelFeature] = []
        for r in requirements where has(r) == false {
            let f = r.feature
            if !out.contains(f) { out.append(f) }
        }
        return out
    }
}

extension BPFObject {
    /// What this object needs from the kernel: its map types, program types, each helper
    /// its programs call and its tp_btf targets. Read from the ELF before load (the
    /// programs that `skipMissingTracepoints` turned off are left out).
    public var kernelRequirements: [KernelRequirement] {
        var out: [KernelRequirement] = []
        func add(_ r: KernelRequirement) { if !out.contains(r) { out.append(r) } }
        for m in maps {
            let t = bpf_map__type(m)
            // libbpf's own maps (.rodata, .bss, .maps of globals) are arrays.
            add(.mapType(t.rawValue))
        }
        var prog = bpf_object__next_program(raw, nil)
        while let p = prog {
            defer { prog = bpf_object__next_program(raw, p) }
            guard bpf_program__autoload(p) else { continue }
            let type = bpf_program__type(p).rawValue
            // A tp_btf program's type is asked through its target (below); the other types
            // libbpf cannot probe without a target are left to the verifier.
            if !KernelProbe.needsTarget(type) { add(.programType(type)) }
            let section = String(cString: bpf_program__section_name(p))
            if section.hasPrefix("tp_btf/") { add(.btfTracepoint(String(section.dropFirst("tp_btf/".count)))) }
            guard let insns = bpf_program__insns(p) else { continue }
            let count = Int(bpf_program__insn_cnt(p))
            for i in 0..<count {
                let insn = insns[i]
                // BPF_JMP | BPF_CALL with src_reg 0: a helper call, its id in imm (src_reg 1
                // is a call into the same object, 2 a kernel function).
                if insn.code == 0x85 && insn.src_reg == 0 { add(.helper(insn.imm, programType: type)) }
            }
        }
        return out
    }

    /// The features this kernel lacks for this object (empty when it has them all or
    /// cannot be asked). No BTF at all never gets here: `init` refuses the object.
    public func missingKernelFeatures() -> [KernelFeature] { KernelProbe.missing(kernelRequirements) }
}

/// What a tracepoint missing on this kernel means for the rows.
public enum SkippedTracepoint {
    /// First releases of the syscall tracepoints the plugins use that are younger than
    /// the oldest kernel InfraSight runs on.
    static let firstKernel = ["syscalls/sys_enter_fchmodat2": "6.6", "syscalls/sys_exit_fchmodat2": "6.6"]

    /// One clause: `tracepoint T is not on this kernel (Linux X+): ...`. A syscall's
    /// tracepoint is missing exactly when the syscall is, unless the kernel has no syscall
    /// tracepoints at all (CONFIG_FTRACE_SYSCALLS off): then its calls are not recorded.
    public static func explain(_ target: String) -> String {
        let since = firstKernel[target].map { " (Linux \($0)+)" } ?? ""
        let parts = target.split(separator: "/")
        if parts.count == 2, parts[0] == "syscalls", let call = ["sys_enter_", "sys_exit_"].lazy.compactMap({ parts[1].hasPrefix($0) ? parts[1].dropFirst($0.count) : nil }).first {
            guard Tracefs.hasSyscallTracepoints else {
                return "tracepoint \(target) is not on this kernel, which has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS is off): \(call) calls are not recorded"
            }
            return "tracepoint \(target) is not on this kernel\(since): it has no \(call) system call, so no such call is missed"
        }
        return "tracepoint \(target) is not on this kernel\(since): what it would record is not recorded here"
    }
}
