import CLibbpf
import Glibc

/// Why the kernel side could not be set up. Every case prints as one line a user can act on.
public enum BPFError: Error, CustomStringConvertible, Equatable {
    case notPermitted(String)
    case noBTF
    case tracefsUnavailable(String)
    case open(String)
    case verifierRejected(program: String, log: [String])
    case load(String)
    case attach(program: String, target: String, String)
    case noAttachableProgram(String)
    case map(String)
    /// The kernel lacks features the object needs (found by `KernelProbe` before load).
    case kernelLacks([KernelFeature], release: String)

    public var description: String {
        switch self {
        case .notPermitted(let what):
            return "\(what): permission denied; run as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"
        case .noBTF:
            return "this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing); InfraSight needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        case .tracefsUnavailable(let why):
            return "tracefs is not available at /sys/kernel/tracing and could not be mounted: \(why)"
        case .open(let why):
            return "cannot open BPF object: \(why)"
        case .verifierRejected(let program, let log):
            let tail = log.suffix(3).joined(separator: " | ")
            return "the kernel verifier rejected BPF program \(program): \(tail)"
        case .load(let why):
            return "cannot load BPF object: \(why)"
        case .attach(let program, let target, let why):
            return "cannot attach BPF program \(program) to \(target): \(why)"
        case .noAttachableProgram(let object):
            return "no program of BPF object \(object) can attach on this kernel"
        case .map(let why):
            return "BPF map: \(why)"
        case .kernelLacks(let features, let release):
            return "needs \(features.map(\.description).joined(separator: ", ")); this kernel is \(release)"
        }
    }
}

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code < 0 ? -code : code))
}
