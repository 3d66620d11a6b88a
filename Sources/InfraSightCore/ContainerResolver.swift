import Foundation
import Synchronization
import Glibc

/// A container runtime's API that can name a container's image and labels.
public protocol ContainerMetadataSource: AnyObject {
    /// The runtime and its socket, for messages (`docker at /var/run/docker.sock`).
    var description: String { get }
    /// Asks for container `id` (64 hex digits), waiting at most `timeout` seconds.
    func inspect(_ id: String, timeout: Double) -> ContainerResolver.Answer
}

/// Container image and labels from the container runtimes' APIs: the Docker Engine API
/// over its unix socket (podman serves the same API on its own socket), and any other
/// source given (containerd's, for Kubernetes nodes), asked in turn until one knows the
/// container.
///
/// Lookups run on the caller's thread, once per container and with a short timeout
/// (`timeout`, default 100 ms, per source): the first event of a new container waits at most that
/// long for its metadata, so the rows people look for first carry image and labels; a
/// runtime that is slower (dockerd answers inspect only once a starting container is up)
/// or down costs that container's rows their metadata for `retryAfter` (0.5 s), an
/// unknown container for `negativeTTL`, never an event. Answers are cached for
/// `positiveTTL`; the cache holds at most `capacity` containers.
public final class ContainerResolver {
    public struct Metadata {
        public let image: [UInt8]
        /// The labels as a JSON object with sorted keys, `{}` when none.
        public let labels: [UInt8]
        public static let empty = Metadata(image: [], labels: Array("{}".utf8))

        public init(image: [UInt8], labels: [UInt8]) {
            self.image = image
            self.labels = labels
        }

        /// From an image reference and labels (encoded with sorted keys).
        public init(image: String, labels: [String: String]) {
            let encoded = (try? JSONSerialization.data(withJSONObject: labels, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            self.init(image: Array(image.utf8), labels: Array(encoded))
        }
    }

    /// What one source says of a container.
    public enum Answer { case found(Metadata), unknown, unavailable }

    /// The runtimes asked, in order.
    public let sources: [any ContainerMetadataSource]
    let timeout: Double
    let positiveTTL = 300.0
    let negativeTTL = 5.0
    let retryAfter = 0.5
    public let capacity: Int
    private var cache: [[UInt8]: (Metadata, Double)] = [:]
    /// Resolver cache hits and misses (each miss is one round of runtime API requests).
    public let counters = CacheCounters()
    public var lookups: Int { Int(counters.misses.load(ordering: .relaxed)) }

    /// The Docker (or podman) socket under `hostRoot` if there is one, then `extraSources`.
    public init(hostRoot: String = "/", timeout: Double = 0.1, capacity: Int = 4096, extraSources: [any ContainerMetadataSource] = []) {
        let root = hostRoot == "/" ? "" : hostRoot
        let docker = ["\(root)/var/run/docker.sock", "\(root)/run/podman/podman.sock"].first(where: UnixSocket.exists)
        sources = (docker.map { [DockerEngineSource(socketPath: $0)] } ?? []) + extraSources
        self.timeout = timeout
        self.capacity = capacity
    }

    public func metadata(for id: [UInt8]) -> Metadata {
        guard !id.isEmpty, !sources.isEmpty else { return .empty }
        let now = MonotonicClock.seconds()
        if let (m, expires) = cache[id], expires > now {
            counters.hits.add(1, ordering: .relaxed)
            return m
        }
        counters.misses.add(1, ordering: .relaxed)
        let text = String(decoding: id, as: UTF8.self)
        // The first source that knows the container answers; if none does, one that
        // could not be asked makes it "unavailable" (retried sooner than "unknown").
        var answer = Answer.unknown
        for source in sources {
            let said = source.inspect(text, timeout: timeout)
            if case .found = said {
                answer = said
                break
            }
            if case .unavailable = said { answer = .unavailable }
        }
        if cache.count >= capacity { cache = cache.filter { $0.value.1 > now } }
        if cache.count >= capacity { cache.removeAll(keepingCapacity: true) }
        switch answer {
        case .found(let m): cache[id] = (m, now + positiveTTL); return m
        case .unknown: cache[id] = (.empty, now + negativeTTL)
        case .unavailable: cache[id] = (.empty, now + retryAfter)
        }
        return .empty
    }
}

/// The Docker Engine API (and podman's, which is the same) over a unix socket.
final class DockerEngineSource: ContainerMetadataSource {
    let socketPath: String
    init(socketPath: String) { self.socketPath = socketPath }

    var description: String { "docker at \(socketPath)" }

    /// GET /containers/<id>/json over the unix socket (HTTP/1.0: the body ends at close).
    func inspect(_ id: String, timeout: Double) -> ContainerResolver.Answer {
        guard let fd = UnixSocket.connect(socketPath, timeout: timeout) else { return .unavailable }
        defer { close(fd) }
        let request = Array("GET /containers/\(id)/json HTTP/1.0\r\nHost: docker\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ UnixSocket.writeAll(fd, $0) }),
            let response = UnixSocket.readAll(fd, limit: 4 << 20, deadline: MonotonicClock.seconds() + timeout)
        else { return .unavailable }
        if String(decoding: response.prefix(16), as: UTF8.self).contains(" 404") { return .unknown }
        return Self.parse(response).map(ContainerResolver.Answer.found) ?? .unavailable
    }

    /// Image and labels from an inspect response (status line, headers, JSON body).
    static func parse(_ response: [UInt8]) -> ContainerResolver.Metadata? {
        let text = response
        guard let split = (0..<max(0, text.count - 3)).first(where: { text[$0] == 13 && text[$0 + 1] == 10 && text[$0 + 2] == 13 && text[$0 + 3] == 10 }) else { return nil }
        let status = String(decoding: text[0..<min(split, 64)], as: UTF8.self)
        guard status.hasPrefix("HTTP/1.") && status.contains(" 200 ") else { return nil }
        let body = Data(text[(split + 4)...])
        guard let json = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
            let config = json["Config"] as? [String: Any]
        else { return nil }
        let image = (config["Image"] as? String) ?? ""
        let labels = (config["Labels"] as? [String: String]) ?? [:]
        return ContainerResolver.Metadata(image: image, labels: labels)
    }
}
