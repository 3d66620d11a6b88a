import Dispatch
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import InfraSightCore
import Synchronization

/// containerd's containers API over its unix socket: a container's image reference and
/// labels (for a Kubernetes container, io.kubernetes.pod.name, .pod.namespace,
/// .container.name and the rest the kubelet sets). Containers are looked for in each of
/// `namespaces` in turn: k8s.io (the kubelet's), moby (Docker's own containerd), default
/// (ctr's).
public final class ContainerdSource: ContainerMetadataSource {
    public let socketPath: String
    public let namespaces: [String]

    public init(socketPath: String, namespaces: [String] = ["k8s.io", "moby", "default"]) {
        self.socketPath = socketPath
        self.namespaces = namespaces
    }

    public var description: String { "containerd at \(socketPath)" }

    /// Where containerd listens on a node: kubeadm and most distributions, k3s, microk8s.
    public static let standardSockets = [
        "/run/containerd/containerd.sock", "/run/k3s/containerd/containerd.sock", "/var/snap/microk8s/common/run/containerd.sock",
    ]

    /// The socket `configured` (under `hostRoot`), else the first standard one that exists
    /// there; nil when there is none.
    public static func find(hostRoot: String, configured: String?) -> ContainerdSource? {
        let root = hostRoot == "/" ? "" : hostRoot
        if let configured { return ContainerdSource(socketPath: root + configured) }
        return standardSockets.map { root + $0 }.first(where: UnixSocket.exists).map { ContainerdSource(socketPath: $0) }
    }

    /// Runs the lookup on the concurrency pool and waits for it on this thread (the
    /// enricher's callers are plain threads), at most twice `timeout` in all: an
    /// unresponsive containerd must not hold the dispatcher longer than that.
    public func inspect(_ id: String, timeout: Double) -> ContainerResolver.Answer {
        let done = DispatchSemaphore(value: 0)
        let answer = Mutex<ContainerResolver.Answer>(.unavailable)
        let task = Task.detached {
            let found = await self.lookup(id, timeout: timeout)
            answer.withLock { $0 = found }
            done.signal()
        }
        // Each request is bounded by `timeout` too; a stuck connect is cut here.
        if done.wait(timeout: .now() + timeout * 2) == .timedOut {
            task.cancel()
            return .unavailable
        }
        return answer.withLock { $0 }
    }

    func lookup(_ id: String, timeout: Double) async -> ContainerResolver.Answer {
        do {
            let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
            return try await withGRPCClient(transport: transport) { client in
                let containers = Containerd_Services_Containers_V1_Containers.Client(wrapping: client)
                var options = CallOptions.defaults
                options.timeout = .milliseconds(Int64(timeout * 1000))
                options.waitForReady = false
                var request = Containerd_Services_Containers_V1_GetContainerRequest()
                request.id = id
                for namespace in namespaces {
                    do {
                        let reply = try await containers.get(request, metadata: ["containerd-namespace": .string(namespace)], options: options)
                        return .found(ContainerResolver.Metadata(image: reply.container.image, labels: reply.container.labels))
                    } catch let error as RPCError where error.code == .notFound {
                        continue
                    }
                }
                return .unknown
            }
        } catch {
            return .unavailable
        }
    }
}
