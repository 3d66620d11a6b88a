import Foundation
import Glibc

/// A real dockerd (started by `Runtimes.start()` if none answers) and a test image built locally from a
/// few host binaries with `docker import`: no registry is needed.
public enum Docker {
    public static let image = "local/infrasight-test:2"
    static let docker = FileManager.default.fileExists(atPath: "/usr/bin/docker") ? "/usr/bin/docker" : "/usr/local/bin/docker"
    /// The docker client's path, for scripts.
    public static var client: String { docker }

    public static func docker(_ args: [String]) throws -> String {
        let r = try run(docker, args)
        guard r.status == 0 else { throw TestFailure("docker \(args.joined(separator: " ")): \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts dockerd if needed and builds the image once.
    public static func ready() throws {
        try Runtimes.start()
        if (try? docker(["image", "inspect", image])) == nil {
            let root = try makeTempDir(prefix: "image")
            let script = """
                set -e
                R=\(root)
                for b in /usr/bin/sleep /usr/bin/sh /usr/bin/dash /usr/bin/cat; do
                  install -D $b $R$b
                  ldd $b | grep -o '/[^ ]*' | while read l; do install -D $l $R$l; done
                done
                ln -sf usr/bin $R/bin; ln -sf usr/lib $R/lib; ln -sf usr/lib64 $R/lib64
                mkdir -p $R/etc && echo 'container data' > $R/etc/motd
                tar -C $R -c . | \(docker) import -c 'CMD ["/bin/sh"]' - \(image)
                """
            let r = try run("/bin/sh", ["-c", script])
            guard r.status == 0 else { throw TestFailure("building the test image failed: \(r.stderr)") }
        }
    }
}

/// The container runtimes, started (if they do not answer) by the same script the test
/// command runs: containerd first, then dockerd on it (scripts/start-runtimes.sh says why).
public enum Runtimes {
    public static func start() throws {
        let r = try run("/bin/bash", ["\(Paths.packageRoot)/scripts/start-runtimes.sh"])
        guard r.status == 0 else { throw TestFailure("scripts/start-runtimes.sh: \(r.stderr)") }
    }
}
