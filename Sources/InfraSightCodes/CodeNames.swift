/// Names for numeric codes, shared by the plugins that write them at the source and the
/// server that fills them in centrally when an agent leaves the name column out.
public enum CodeNames {
    /// linux/ptrace.h and asm/ptrace-abi.h (x86).
    public static func ptraceRequest(_ request: Int64) -> StaticString? {
        switch request {
        case 0: "PTRACE_TRACEME"
        case 1: "PTRACE_PEEKTEXT"
        case 2: "PTRACE_PEEKDATA"
        case 3: "PTRACE_PEEKUSR"
        case 4: "PTRACE_POKETEXT"
        case 5: "PTRACE_POKEDATA"
        case 6: "PTRACE_POKEUSR"
        case 7: "PTRACE_CONT"
        case 8: "PTRACE_KILL"
        case 9: "PTRACE_SINGLESTEP"
        case 12: "PTRACE_GETREGS"
        case 13: "PTRACE_SETREGS"
        case 14: "PTRACE_GETFPREGS"
        case 15: "PTRACE_SETFPREGS"
        case 16: "PTRACE_ATTACH"
        case 17: "PTRACE_DETACH"
        case 18: "PTRACE_GETFPXREGS"
        case 19: "PTRACE_SETFPXREGS"
        case 24: "PTRACE_SYSCALL"
        case 25: "PTRACE_GET_THREAD_AREA"
        case 26: "PTRACE_SET_THREAD_AREA"
        case 30: "PTRACE_ARCH_PRCTL"
        case 31: "PTRACE_SYSEMU"
        case 32: "PTRACE_SYSEMU_SINGLESTEP"
        case 33: "PTRACE_SINGLEBLOCK"
        case 0x4200: "PTRACE_SETOPTIONS"
        case 0x4201: "PTRACE_GETEVENTMSG"
        case 0x4202: "PTRACE_GETSIGINFO"
        case 0x4203: "PTRACE_SETSIGINFO"
        case 0x4204: "PTRACE_GETREGSET"
        case 0x4205: "PTRACE_SETREGSET"
        case 0x4206: "PTRACE_SEIZE"
        case 0x4207: "PTRACE_INTERRUPT"
        case 0x4208: "PTRACE_LISTEN"
        case 0x4209: "PTRACE_PEEKSIGINFO"
        case 0x420a: "PTRACE_GETSIGMASK"
        case 0x420b: "PTRACE_SETSIGMASK"
        case 0x420c: "PTRACE_SECCOMP_GET_FILTER"
        case 0x420d: "PTRACE_SECCOMP_GET_METADATA"
        case 0x420e: "PTRACE_GET_SYSCALL_INFO"
        case 0x420f: "PTRACE_GET_RSEQ_CONFIGURATION"
        case 0x4210: "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG"
        case 0x4211: "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG"
        case 0x4212: "PTRACE_SET_SYSCALL_INFO"
        default: nil
        }
    }
}
