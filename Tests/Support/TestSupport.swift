import Foundation
import InfraSightCore
import Glibc

/// Where the package and its build products are.
public enum Paths {
    /// The package root (this file is Tests/Support/TestSupport.swift).
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The build products of the build in use: the directory of the running test bundle
    /// (`swift test` runs `.build/<triple>/<configuration>/infrasightPackageTests.xctest`,
    /// beside `infrasight` and the plugin libraries), so `swift test -c release` tests the
    /// release build; `INFRASIGHT_BIN_DIR` overrides. `swift build` must have run: tests
    /// use the real binary and the real plugin libraries.
    public static let binDir: String = {
        if let dir = ProcessInfo.processInfo.environment["INFRASIGHT_BIN_DIR"], !dir.isEmpty { return dir }
        let running = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: running).deletingLastPathComponent().path
    }()
    public static var infrasight: String { "\(binDir)/infrasight" }
    public static var tracingPlugin: String { "\(binDir)/libinfrasight-tracing.so" }
    public static var abiHeaderDir: String { "\(packageRoot)/Sources/CInfraSightABI/include" }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The result of a finished process.
public struct ProcessResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs a program to completion; stdout and stderr go through files, so a chatty program
/// cannot block on a full pipe.
@discardableResult
public func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, cwd: String? = nil) throws -> ProcessResult {
    let p = try BackgroundProcess(executable, arguments, environment: environment, cwd: cwd)
    return p.wait()
}

/// Runs a program to completion and returns its pid (to find its rows).
public func spawnAndWait(_ executable: String, _ arguments: [String] = []) throws -> Int32 {
    let p = try BackgroundProcess(executable, arguments)
    _ = p.wait()
    return p.pid
}

/// A program running in the background with its output captured in files. Spawned with
/// posix_spawn and reaped with waitpid (Foundation's Process was seen to stop reaping
/// children while a long-lived one runs).
public final class BackgroundProcess {
    public let pid: pid_t
    let dir: String
    public let stdoutPath: String
    public let stderrPath: String
    private var status: Int32?

    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, cwd: String? = nil, stdoutPath: String? = nil) throws {
        dir = try makeTempDir(prefix: "proc")
        self.stdoutPath = stdoutPath ?? "\(dir)/stdout"
        stderrPath = "\(dir)/stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, self.stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // The child gets no other descriptor of the test process. Foundation opens files
        // without O_CLOEXEC (FileManager.copyItem's destination, String.write's temporary
        // file): a child spawned by another suite while one was open for writing kept it,
        // for its whole life, and every exec of that file failed with ETXTBSY (DriftTests'
        // copied helper exited 127). Closing them at spawn is the cause removed, not waited out.
        guard Self.addCloseFrom(&actions, 3) == 0 else { throw TestFailure("posix_spawn_file_actions_addclosefrom_np failed") }
        var env = ProcessInfo.processInfo.environment
        if let environment { env.merge(environment) { $1 } }
        // A working directory through env(1) --chdir: posix_spawn's chdir action is not
        // visible to Swift here.
        let command = cwd.map { ["/usr/bin/env", "--chdir=\($0)", executable] } ?? [executable]
        let argv = (command + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // The child starts with no blocked signals and default dispositions: posix_spawn
        // otherwise inherits the calling thread's mask, and the test runner's threads block
        // most signals (a dnsmasq started from one never saw its SIGTERM).
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), all = sigset_t()
        sigemptyset(&empty)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, command[0], &actions, &attr, argv, envp)
        guard rc == 0 else { throw TestFailure("cannot start \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which Swift's Glibc
    /// module does not declare (_GNU_SOURCE-only); looked up once.
    private static let addCloseFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            fatalError("glibc 2.34 or newer is needed: posix_spawn_file_actions_addclosefrom_np is missing")
        }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// A test that fails midway must not leave its processes behind (a tracer left
    /// running slows every later test): whatever still runs is killed.
    deinit {
        if status == nil && isRunning {
            kill(pid, SIGKILL)
            _ = wait()
        }
        // Its output files go with it (thousands of runs a suite: /tmp filled up).
        try? FileManager.default.removeItem(atPath: dir)
    }

    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    public var isRunning: Bool {
        if status != nil { return false }
        var s: Int32 = 0
        let r = waitpid(pid, &s, WNOHANG)
        if r == pid { status = Self.exitCode(s); return false }
        return r == 0
    }

    static func exitCode(_ s: Int32) -> Int32 {
        (s & 0x7f) == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
    }

    /// Waits until stderr contains `text`; throws on timeout or if the process exits first.
    public func waitForStderr(_ text: String, timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stderr.contains(text) { return }
            if !isRunning {
                throw TestFailure("process exited (status \(status ?? -1)) before printing '\(text)'; stderr: \(stderr)")
            }
            usleep(50_000)
        }
        throw TestFailure("timed out waiting for '\(text)'; stderr: \(stderr)")
    }

    public func signal(_ sig: Int32) { kill(pid, sig) }

    /// Lets the process work `settle` more seconds (what it has read reaching its store),
    /// then interrupts it (SIGINT: a clean stop) and waits at most `timeout` s for the exit.
    public func interrupt(after settle: Double, timeout: Double = 120) throws -> ProcessResult {
        usleep(UInt32(settle * 1_000_000))
        signal(SIGINT)
        return try wait(timeout: timeout)
    }

    /// Waits at most `timeout` s for the exit; on timeout the process is killed and a
    /// `TestFailure` says it hung (a hang fails its test instead of the whole run).
    public func wait(timeout: Double) throws -> ProcessResult {
        let deadline = Date().addingTimeInterval(timeout)
        while status == nil {
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid {
                status = Self.exitCode(s)
                break
            }
            if Date() >= deadline {
                kill(pid, SIGKILL)
                _ = wait()
                throw TestFailure("process \(pid) did not exit within \(timeout) s; killed. stderr: \(stderr)")
            }
            usleep(20_000)
        }
        return ProcessResult(status: status!, stdout: stdout, stderr: stderr)
    }

    /// Waits for the exit; the status is the exit code, or 128 + the signal.
    public func wait() -> ProcessResult {
        if status == nil {
            var s: Int32 = 0
            while waitpid(pid, &s, 0) < 0 && errno == EINTR {}
            status = Self.exitCode(s)
        }
        return ProcessResult(status: status!, stdout: stdout, stderr: stderr)
    }
}

/// A new directory (mode 0755, so plugin permission checks accept it).
public func makeTempDir(prefix: String = "infrasight-test") throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
    let path = String(cString: p)
    chmod(path, 0o755)
    return path
}

/// Compiles C with the system compiler (for plugin fixtures and workload helpers).
public func compileC(_ source: String, to output: String, flags: [String]) throws {
    let dir = (output as NSString).deletingLastPathComponent
    let file = "\(dir)/\(UUID().uuidString).c"
    try source.write(toFile: file, atomically: true, encoding: .utf8)
    defer { unlink(file) }
    let r = try run("/usr/bin/cc", flags + ["-o", output, file])
    guard r.status == 0 else { throw TestFailure("cc failed: \(r.stderr)") }
}

/// Runs `ip ARGUMENTS` (words separated by single spaces); throws with its stderr when it
/// fails.
public func ip(_ arguments: String) throws {
    let r = try run("/usr/sbin/ip", arguments.split(separator: " ").map(String.init))
    guard r.status == 0 else { throw TestFailure("ip \(arguments): \(r.stderr)") }
}

/// Parses JSON lines (invalid lines are a test failure).
public func jsonLines(_ text: String) throws -> [[String: Any]] {
    try text.split(separator: "\n").map { line in
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw TestFailure("not a JSON object: \(line)")
        }
        return object
    }
}

/// Integer value of a JSON field.
public func int(_ object: [String: Any], _ key: String) -> Int64? {
    (object[key] as? NSNumber)?.int64Value
}

extension Paths {
    /// The build directory with symlinks resolved, as the binary reports its own directory.
    public static var realBinDir: String {
        (URL(fileURLWithPath: infrasight).resolvingSymlinksInPath().deletingLastPathComponent().path)
    }
}

/// A static program that opens `argv[1]` `argv[2]` times and nothing else (being static,
/// it loads no libraries): an exact count of openat calls under `comm`, a name of its
/// own, so suites running at the same time never count each other's opens.
public func buildOpenLoop() throws -> (helper: String, marker: String, dir: String, comm: String) {
    let dir = try makeTempDir(prefix: "openloop")
    let comm = uniqueComm("ol")
    let helper = "\(dir)/\(comm)"
    try compileC("""
        #include <fcntl.h>
        #include <stdlib.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            long n = atol(argv[2]);
            for (long i = 0; i < n; i++) {
                int fd = open(argv[1], O_RDONLY);
                if (fd >= 0) close(fd);
            }
            return 0;
        }
        """, to: helper, flags: ["-O2", "-static"])
    let marker = "\(dir)/marker"
    guard FileManager.default.createFile(atPath: marker, contents: Data()) else { throw TestFailure("cannot create \(marker)") }
    return (helper, marker, dir, comm)
}

/// Config lines (`plugins.options`) filtering each of `plugins` in the kernel to the
/// command names `comms`: a test that wants exact rows traces only its own programs.
/// Unfiltered, a tracer's ring buffer is the host's, and other suites flood it on purpose
/// (measured: a debug trace beside a 500,000-open loop dropped 468,895 events, counted):
/// the rows asked for are then lost.
public func commFilterConfig(_ plugins: [String], comms: [String]) -> String {
    let list = comms.map { "\"\($0)\"" }.joined(separator: ", ")
    return "plugins:\n  options:\n" + plugins.map { "    \($0):\n      include_comms: [\(list)]\n" }.joined()
}

/// Writes a config enabling only `tracing`, restricted to the command `comm`.
public func writeTracingConfig(comm: String, to path: String) throws {
    try (commFilterConfig(["tracing"], comms: [comm]) + "  enabled: [tracing]\n").write(toFile: path, atomically: true, encoding: .utf8)
}

/// The numbers of a summary line `name: a N, b M, ...`, by label.
public func summaryNumbers(_ stderr: String, plugin: String) -> [String: Int]? {
    SummaryLine.parse(stderr, plugin: plugin)
}

/// Polls `condition` every 50 ms until it holds; throws naming `what` after `timeout` s.
/// `what` is read at the timeout, so it may describe the state then.
public func waitUntil(_ what: @autoclosure () -> String, timeout: Double, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(50_000)
    }
    throw TestFailure("timed out after \(timeout) s waiting until \(what())")
}

/// A TCP port nothing listens on now (bound to 0 on 127.0.0.1, read, released): the
/// kernel picks it, so fixtures started at once by parallel suites never pick the same one.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { Glibc.close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else { throw TestFailure("cannot pick a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Writes a program (or script) that the test will run. The executable file is written
/// by install(1), a child process, into a temporary name and renamed into place: the
/// test process never holds it open for writing, so no child that another suite spawns
/// at that moment can inherit a write descriptor to it and make its exec fail with
/// ETXTBSY (Foundation's writes and FileManager.copyItem open without O_CLOEXEC, and a
/// spawned child holds what it inherited until it closes it).
public func writeExecutable(_ contents: [UInt8], to destination: String, mode: mode_t = 0o755) throws {
    let source = "\(destination).source-\(getpid())"
    guard FileManager.default.createFile(atPath: source, contents: Data(contents)) else {
        throw TestFailure("cannot write \(source): \(String(cString: strerror(errno)))")
    }
    defer { unlink(source) }
    try installExecutable(source, to: destination, mode: mode)
}

/// Copies the program at `source` to `destination` for running it (see `writeExecutable`),
/// with the source's permission bits.
public func copyExecutable(_ source: String, to destination: String) throws {
    var st = stat()
    guard stat(source, &st) == 0 else { throw TestFailure("cannot stat \(source): \(String(cString: strerror(errno)))") }
    try installExecutable(source, to: destination, mode: st.st_mode & 0o7777)
}

private func installExecutable(_ source: String, to destination: String, mode: mode_t) throws {
    let temporary = "\(destination).partial-\(getpid())"
    let r = try run("/usr/bin/install", ["-m", String(mode, radix: 8), source, temporary])
    guard r.status == 0 else { throw TestFailure("install \(source) \(temporary) exited \(r.status): \(r.stderr)") }
    guard rename(temporary, destination) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw TestFailure("cannot put \(destination) in place: \(reason)")
    }
}

/// A command name of the test's own: `prefix` and 8 random hex digits (15 bytes at most,
/// the kernel's comm length).
public func uniqueComm(_ prefix: String = "tt") -> String {
    prefix + String(format: "%08x", UInt32.random(in: 0...UInt32.max))
}

/// Runs `body` with the calling thread's command name set to `comm` (restored after).
/// A process spawned meanwhile from this thread carries that name until its exec, so a
/// tracer filtered in the kernel to `comm` (`include_comms`) sees its execve: a test that
/// wants the exact rows of programs it starts (/bin/true, cat) traces only them, and
/// other suites flooding the host (500,000 opens) cannot fill its ring buffer.
public func withThreadComm<T>(_ comm: String, _ body: () throws -> T) throws -> T {
    func set(_ name: String) throws {
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestFailure("cannot open /proc/thread-self/comm: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(name.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw TestFailure("cannot name this thread \(name): \(String(cString: strerror(errno)))") }
    }
    let old = ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .newlines)
    try set(comm)
    defer { try? set(old) }
    return try body()
}
