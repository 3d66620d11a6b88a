import Foundation
import Glibc
import InfraSightTestSupport
import Testing

/// The kernel side's failures end in one clear line, and one plugin's failure does not
/// stop the others.
@Suite(.serialized) struct KernelErrorTests {
    /// A plugin whose BPF program the verifier must reject (it dereferences a pointer it
    /// never checked), built from BPF C with the toolchain's clang and embedded in a C
    /// fixture library.
    static func buildRejectedPlugin(in dir: String) throws -> String {
        try buildPlugin(in: dir, name: "badbpf", bpf: """
            typedef unsigned long long u64;
            #define SEC(name) __attribute__((section(name), used))
            char LICENSE[] SEC("license") = "GPL";
            SEC("tracepoint/syscalls/sys_enter_getppid")
            int bad_deref(void *ctx) {
                u64 *p = (u64 *)(*(u64 *)ctx + 12345);
                return *p == 42;
            }
            """)
    }

    /// A C fixture plugin named `name` embedding the BPF object compiled from `bpf`.
    static func buildPlugin(in dir: String, name: String, bpf: String) throws -> String {
        try bpf.write(toFile: "\(dir)/bad.bpf.c", atomically: true, encoding: .utf8)
        let clang = try run("/usr/bin/env", ["sh", "-c", "dirname $(command -v swift)"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) + "/clang"
        let c = try run(clang, ["-O2", "-g", "-target", "bpf", "-c", "\(dir)/bad.bpf.c", "-o", "\(dir)/bad.bpf.o"])
        guard c.status == 0 else { throw TestFailure("clang -target bpf failed: \(c.stderr)") }
        let object = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/bad.bpf.o"))
        let array = object.map { String($0) }.joined(separator: ",")
        let source = PluginFixture.source
            .replacingOccurrences(of: "static const is_plugin_descriptor d = {\n    MAGIC, MAJOR, MINOR, SIZE, NAME, \"1.2.3\", \"a test fixture\", 0, 0,",
                                  with: "static const unsigned char object[] = {\(array)};\nstatic const is_plugin_descriptor d = {\n    MAGIC, MAJOR, MINOR, SIZE, NAME, \"1.2.3\", \"a test fixture\", object, sizeof(object),")
        guard source != PluginFixture.source else { throw TestFailure("fixture template changed") }
        let path = "\(dir)/lib\(name).so"
        try compileC(source, to: path, flags: ["-shared", "-fPIC", "-I", Paths.abiHeaderDir, "-DNAME=\"\(name)\""])
        chmod(path, 0o755)
        return path
    }

    @Test func aVerifierRejectionIsOneLineAndTheOtherPluginsStillRun() throws {
        let dir = try makeTempDir()
        _ = try Self.buildRejectedPlugin(in: dir)
        // Alone: the trace cannot start; one line with the program and the verifier's words.
        let alone = try run(Paths.infrasight, ["trace", "--plugin-dir", dir, "--plugins", "badbpf", "--duration", "1"])
        #expect(alone.status == 1)
        let lines = alone.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(alone.stderr)")
        #expect(alone.stderr.hasPrefix("infrasight: plugin badbpf: the kernel verifier rejected BPF program bad_deref: "), "\(alone.stderr)")
        // Beside tracing: tracing runs, badbpf is reported.
        let both = try BackgroundProcess(Paths.infrasight, ["trace", "--plugin-dir", dir, "--plugins", "badbpf,tracing"])
        try both.waitForStderr("infrasight: note: started: tracing")
        both.signal(SIGINT)
        let r = try both.wait(timeout: 180)
        #expect(r.status == 0)
        #expect(r.stderr.contains("infrasight: error: plugin badbpf: the kernel verifier rejected BPF program bad_deref"))
        #expect(r.stderr.contains("infrasight: tracing: received "))
    }

    @Test func aTracepointThisKernelLacksIsSkippedWithAWarningAndNoneLeftIsAnError() throws {
        let header = """
            #define SEC(name) __attribute__((section(name), used))
            char LICENSE[] SEC("license") = "GPL";
            SEC("tracepoint/syscalls/sys_enter_no_such_call")
            int missing(void *ctx) { return 0; }
            """
        let dir = try makeTempDir()
        _ = try Self.buildPlugin(in: dir, name: "partly", bpf: header + """
            SEC("tracepoint/syscalls/sys_enter_getppid")
            int present(void *ctx) { return 0; }
            """)
        let partly = try run(Paths.infrasight, ["trace", "--plugin-dir", dir, "--plugins", "partly", "--duration", "1"])
        #expect(partly.status == 0, "\(partly.stderr)")
        #expect(partly.stderr.contains("infrasight: warning: plugin partly: tracepoint syscalls/sys_enter_no_such_call is not on this kernel: it has no no_such_call system call, so no such call is missed (missing is not attached)\n"), "\(partly.stderr)")
        let dir2 = try makeTempDir()
        _ = try Self.buildPlugin(in: dir2, name: "nothing", bpf: header)
        let nothing = try run(Paths.infrasight, ["trace", "--plugin-dir", dir2, "--plugins", "nothing", "--duration", "1"])
        #expect(nothing.status == 1)
        #expect(nothing.stderr.hasSuffix("infrasight: plugin nothing: no program of BPF object nothing can attach on this kernel\n"), "\(nothing.stderr)")
    }

    @Test func withoutPrivilegesTheErrorSaysSo() throws {
        // `nobody` cannot load BPF programs (nor mount tracefs, if it is missing).
        let r = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Paths.infrasight, "trace", "--plugins", "tracing", "--duration", "1"])
        #expect(r.status == 1)
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(r.stderr.contains("permission denied; run as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"), "\(r.stderr)")
    }
}
