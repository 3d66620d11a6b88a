import Foundation
import Glibc
import InfraSightCore

/// The Docker Engine API (and podman's, which is the same) over a unix socket: inspect
/// for one container, `/events` for every container as it is created, `/containers/json`
/// to list the ones that exist.
///
/// A create event carries the image and every label among its attributes, with other
/// attributes mixed in (`name`; podman's `podId`, `containerExitCode`): so a create names
/// a container provisionally and starts an inspect, which has the labels exactly; the
/// container's rows wait for it (dockerd answers inspect of a starting container once it
/// has started, a few hundred ms) and get the event's attributes only if it does not
/// come in time.
public final class DockerEngineSource: ContainerMetadataSource {
    public let socketPath: String
    public init(socketPath: String) { self.socketPath = socketPath }

    public var description: String { "docker at \(socketPath)" }

    /// The Docker (or podman) socket under `hostRoot`: `configured` if given, else the
    /// first standard one there is.
    public static func find(hostRoot: String, configured: String?) -> DockerEngineSource? {
        let root = hostRoot == "/" ? "" : hostRoot
        if let configured { return DockerEngineSource(socketPath: root + configured) }
        return ["\(root)/var/run/docker.sock", "\(root)/run/podman/podman.sock"].first(where: UnixSocket.exists)
            .map { DockerEngineSource(socketPath: $0) }
    }

    /// GET /containers/<id>/json (HTTP/1.0: the body ends at close). Only a full id goes
    /// into the request line: anything else is no container of this API.
    public func inspect(_ id: String, timeout: Double) -> ContainerResolver.Answer {
        guard ContainerID.isFull(id) else { return .unknown }
        guard let response = get("/containers/\(id)/json", timeout: timeout) else { return .unavailable }
        if String(decoding: response.prefix(16), as: UTF8.self).contains(" 404") { return .unknown }
        return Self.parse(response).map(ContainerResolver.Answer.found) ?? .unavailable
    }

    /// One request, its whole response (status line, headers, body), or nil.
    func get(_ path: String, timeout: Double) -> [UInt8]? {
        guard let fd = UnixSocket.connect(socketPath, timeout: timeout) else { return nil }
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: docker\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ UnixSocket.writeAll(fd, $0) }) else { return nil }
        return UnixSocket.readAll(fd, limit: 32 << 20, deadline: MonotonicClock.seconds() + timeout)
    }

    /// Image and labels from an inspect response (status line, headers, JSON body).
    static func parse(_ response: [UInt8]) -> ContainerResolver.Metadata? {
        guard let json = body(response) as? [String: Any], let config = json["Config"] as? [String: Any] else { return nil }
        return ContainerResolver.Metadata(image: (config["Image"] as? String) ?? "", labels: (config["Labels"] as? [String: String]) ?? [:])
    }

    /// The JSON body of a 200 response, or nil.
    static func body(_ response: [UInt8]) -> Any? {
        guard let split = headerEnd(response) else { return nil }
        let status = String(decoding: response[0..<min(split, 64)], as: UTF8.self)
        guard status.hasPrefix("HTTP/1.") && status.contains(" 200 ") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(response[(split + 4)...]))
    }

    /// Where the headers end (the index of their closing CRLF CRLF).
    static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        return (0...(bytes.count - 4)).first { bytes[$0] == 13 && bytes[$0 + 1] == 10 && bytes[$0 + 2] == 13 && bytes[$0 + 3] == 10 }
    }

    /// What a container event means for the resolver (nil: nothing).
    enum Event: Equatable {
        case created(id: String, ContainerResolver.Metadata)
        case destroyed(id: String)
    }

    /// Attributes of a create event that are not labels.
    static let notLabels: Set<String> = ["image", "name", "podId", "containerExitCode"]

    /// One line of the event stream.
    static func event(_ line: some Collection<UInt8>) -> Event? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
            (json["Type"] as? String) == "container", let action = json["Action"] as? String,
            let actor = json["Actor"] as? [String: Any], let id = actor["ID"] as? String, ContainerID.isFull(id)
        else { return nil }
        switch action {
        case "create":
            let attributes = (actor["Attributes"] as? [String: String]) ?? [:]
            let image = attributes["image"] ?? (json["from"] as? String) ?? ""
            return .created(id: id, ContainerResolver.Metadata(image: image, labels: attributes.filter { !notLabels.contains($0.key) }))
        case "destroy": return .destroyed(id: id)
        default: return nil
        }
    }

    static let eventsPath = "/events?filters=" + #"{"type":["container"],"event":["create","destroy"]}"#
        .addingPercentEncoding(withAllowedCharacters: .alphanumerics)!

    public func watch(_ resolver: ContainerResolver, stop: SignalFlag) {
        var backoff = Backoff(initial: 0.5, maximum: 30)
        while !stop.isSet {
            if follow(resolver, stop: stop) { backoff.reset() }
            if !stop.sleep(backoff.next()) { return }
        }
    }

    /// One connection to the event stream: subscribes, lists what exists (so nothing
    /// created while no stream was open is missed), then follows events until the stream
    /// drops or `stop`. True when it got as far as the stream.
    private func follow(_ resolver: ContainerResolver, stop: SignalFlag) -> Bool {
        guard let fd = UnixSocket.connect(socketPath, timeout: 2) else { return false }
        defer { close(fd) }
        let request = Array("GET \(Self.eventsPath) HTTP/1.0\r\nHost: docker\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ UnixSocket.writeAll(fd, $0) }) else { return false }
        var pending: [UInt8] = []
        var headersDone = false
        var chunk = [UInt8](repeating: 0, count: 65536)
        var listed = false
        while !stop.isSet {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 { return headersDone }
            if ready == 0 {
                // The subscription is in place once the headers came; dockerd sends them
                // only with the first event, so list after a quiet moment as well.
                if !listed { listed = list(resolver) }
                continue
            }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return headersDone }
            pending += chunk[0..<n]
            if !headersDone {
                guard let end = Self.headerEnd(pending) else {
                    if pending.count > 65536 { return false }
                    continue
                }
                let status = String(decoding: pending[0..<min(end, 64)], as: UTF8.self)
                guard status.contains(" 200 ") else { return false }
                pending.removeFirst(end + 4)
                headersDone = true
            }
            while let newline = pending.firstIndex(of: 10) {
                switch Self.event(pending[..<newline]) {
                case .created(let id, let metadata)?: resolver.announce(id, metadata, from: self, exact: false)
                case .destroyed(let id)?: resolver.forget(id)
                case nil: break
                }
                pending.removeFirst(newline + 1)
            }
            if pending.count > 1 << 20 { return true } // no newline in 1 MiB: not an event stream
            if !listed { listed = list(resolver) }
        }
        return headersDone
    }

    /// Announces every container that exists (running or not), then tells `resolver` this
    /// source follows its events (the subscription came first). True when listed.
    private func list(_ resolver: ContainerResolver) -> Bool {
        guard let response = get("/containers/json?all=1", timeout: 5), let containers = Self.body(response) as? [[String: Any]] else { return false }
        for c in containers {
            guard let id = c["Id"] as? String, ContainerID.isFull(id) else { continue }
            resolver.announce(id, ContainerResolver.Metadata(image: (c["Image"] as? String) ?? "", labels: (c["Labels"] as? [String: String]) ?? [:]), from: self)
        }
        resolver.following(self)
        return true
    }
}
