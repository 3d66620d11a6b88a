import Foundation
import Glibc
import InfraSightCore

/// A containerd of a test's own (its own socket, root and state under /var/tmp, the CRI
/// plugin off), with the test image imported from dockerd into namespace k8s.io: what a
/// Kubernetes node's containerd holds, without a registry. `stop()` ends it and removes
/// its files.
public final class PrivateContainerd {
    public let dir: String
    public let socket: String
    /// The test image as containerd names it.
    public let image = "docker.io/\(Docker.image)"
    let process: BackgroundProcess

    public init() throws {
        try Docker.ready()
        dir = "/var/tmp/infrasight-containerd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" // overlay snapshots need a real filesystem
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        socket = "\(dir)/containerd.sock"
        try """
            version = 2
            root = "\(dir)/root"
            state = "\(dir)/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(socket)"
            """.write(toFile: "\(dir)/config.toml", atomically: true, encoding: .utf8)
        process = try BackgroundProcess("/usr/bin/containerd", ["--config", "\(dir)/config.toml"])
        try waitUntil("containerd listens (\(process.stderr.suffix(500)))", timeout: 30) { UnixSocket.exists(socket) }
        _ = try Docker.docker(["save", Docker.image, "-o", "\(dir)/image.tar"])
        _ = try ctr(["images", "import", "\(dir)/image.tar"])
    }

    /// `ctr` against this containerd, in namespace k8s.io (the kubelet's).
    @discardableResult
    public func ctr(_ args: [String]) throws -> String {
        let r = try run("/usr/bin/ctr", ["--address", socket, "--namespace", "k8s.io"] + args)
        guard r.status == 0 else { throw TestFailure("ctr \(args.joined(separator: " ")): \(r.stderr)") }
        return r.stdout
    }

    /// A container id as the CRI makes them: 64 hex digits.
    public static func newID() -> String {
        (0..<4).map { _ in String(format: "%016llx", UInt64.random(in: 0...UInt64.max)) }.joined()
    }

    /// Removes container `id` (its task killed first) and the kubepods cgroup parents
    /// `pod` left behind (runc removes the container's own).
    public func remove(_ id: String, pod: String) {
        _ = try? ctr(["task", "kill", "--signal", "SIGKILL", id])
        _ = try? waitUntil("the task is removed", timeout: 10) { (try? self.ctr(["task", "rm", id])) != nil || (try? self.ctr(["task", "ls"]))?.contains(id) == false }
        _ = try? ctr(["containers", "rm", id])
        let hierarchies = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []).map { "/sys/fs/cgroup/\($0)" }
        for base in ["/sys/fs/cgroup"] + hierarchies {
            for parent in ["kubepods/besteffort/\(pod)", "kubepods/besteffort", "kubepods"] { rmdir("\(base)/\(parent)") }
        }
    }

    public func stop() {
        process.signal(SIGTERM)
        _ = try? process.wait(timeout: 30)
        try? FileManager.default.removeItem(atPath: dir)
    }
}
