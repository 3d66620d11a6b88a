import Dispatch
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import InfraSightCore
import Synchronization

/// containerd's containers API over its unix socket: a container's image reference and
/// labels (for a Kubernetes container, io.kubernetes.pod.name, .pod.namespace,
/// .container.name and the rest the kubelet sets). Containers are looked for in each of
/// `namespaces` in turn: k8s.io (the kubelet's), moby (Docker's own containerd), default
/// (ctr's). Its events service names each container as it is created (in any namespace),
/// before its task starts.
public final class ContainerdSource: ContainerMetadataSource {
    public let socketPath: String
    public let namespaces: [String]

    /// k8s.io (the kubelet's), moby (dockerd's), default (ctr's).
    public static let allNamespaces = ["k8s.io", "moby", "default"]

    public init(socketPath: String, namespaces: [String] = allNamespaces) {
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
    public static func find(hostRoot: String, configured: String?, namespaces: [String] = allNamespaces) -> ContainerdSource? {
        let root = hostRoot == "/" ? "" : hostRoot
        if let configured { return ContainerdSource(socketPath: root + configured, namespaces: namespaces) }
        return standardSockets.map { root + $0 }.first(where: UnixSocket.exists).map { ContainerdSource(socketPath: $0, namespaces: namespaces) }
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

    /// Follows `/containers/create` and `/containers/delete` on containerd's event stream
    /// (a create is answered with a Get in the event's namespace, for the labels), lists
    /// every namespace's containers whenever the stream is (re)opened, and reconnects with
    /// backoff when it drops.
    public func watch(_ resolver: ContainerResolver, stop: SignalFlag) {
        var backoff = Backoff(initial: 0.5, maximum: 30)
        while !stop.isSet {
            let done = DispatchSemaphore(value: 0)
            let subscribed = SignalFlag()
            let task = Task.detached {
                await self.follow(resolver, subscribed: subscribed)
                done.signal()
            }
            while done.wait(timeout: .now() + 0.1) == .timedOut {
                if stop.isSet { task.cancel() }
            }
            if subscribed.isSet { backoff.reset() }
            if !stop.sleep(backoff.next()) { return }
        }
    }

    static let eventFilters = [#"topic=="/containers/create""#, #"topic=="/containers/delete""#]

    /// One subscription, until it drops or the task is cancelled.
    ///
    /// containerd (Go gRPC) sends a stream's headers only with its first message, so the
    /// subscription cannot be seen to be in place; it is taken to be once a request sent
    /// after it on the same connection (the listing) is answered: the server has read the
    /// subscription's stream first. Then the source says it follows (`following`).
    func follow(_ resolver: ContainerResolver, subscribed: SignalFlag) async {
        do {
            let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
            try await withGRPCClient(transport: transport) { client in
                let events = Containerd_Services_Events_V1_Events.Client(wrapping: client)
                let containers = Containerd_Services_Containers_V1_Containers.Client(wrapping: client)
                let request = Containerd_Services_Events_V1_SubscribeRequest.with { $0.filters = Self.eventFilters }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await events.subscribe(request: ClientRequest(message: request)) { response in
                            subscribed.set()
                            for try await envelope in response.messages where self.namespaces.contains(envelope.namespace) {
                                await self.handle(envelope, containers: containers, resolver: resolver)
                            }
                        }
                    }
                    // Sent after the subscription's stream opened (a moment to be sure).
                    try await Task.sleep(for: .milliseconds(50))
                    // What was created while no stream was open (or before start-up). A
                    // listing that fails costs nothing but speed: those containers are
                    // looked up at their first event.
                    var listedAny = false
                    for namespace in self.namespaces {
                        guard let listed = try? await containers.list(Containerd_Services_Containers_V1_ListContainersRequest(),
                                                                      metadata: ["containerd-namespace": .string(namespace)]) else { continue }
                        listedAny = true
                        for c in listed.containers {
                            resolver.announce(c.id, ContainerResolver.Metadata(image: c.image, labels: c.labels), from: self)
                        }
                    }
                    if listedAny {
                        subscribed.set()
                        resolver.following(self)
                    }
                    // Until the subscription ends.
                    try await group.next()
                    group.cancelAll()
                }
            }
        } catch {
            // The stream dropped or could not open: `watch` reconnects.
        }
    }

    /// One event from the stream: a create is answered with a Get (for the labels), a
    /// delete forgets the container.
    private func handle(_ envelope: Containerd_Services_Events_V1_Envelope, containers: Containerd_Services_Containers_V1_Containers.Client<some ClientTransport>,
                        resolver: ContainerResolver) async {
        switch envelope.topic {
        case "/containers/create":
            guard let created = try? Containerd_Events_ContainerCreate(serializedBytes: envelope.event.value) else { return }
            var get = Containerd_Services_Containers_V1_GetContainerRequest()
            get.id = created.id
            if let reply = try? await containers.get(get, metadata: ["containerd-namespace": .string(envelope.namespace)]) {
                resolver.announce(created.id, ContainerResolver.Metadata(image: reply.container.image, labels: reply.container.labels), from: self)
            } else {
                // Without its labels the event's word is provisional: the
                // container is looked up and its rows wait for the answer.
                resolver.announce(created.id, ContainerResolver.Metadata(image: created.image, labels: [:]), from: self, exact: false)
            }
        case "/containers/delete":
            guard let deleted = try? Containerd_Events_ContainerDelete(serializedBytes: envelope.event.value) else { return }
            resolver.forget(deleted.id)
        default:
            break
        }
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
