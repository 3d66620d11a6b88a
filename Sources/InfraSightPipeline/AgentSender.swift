import Foundation
import Glibc
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import InfraSightCore
import InfraSightPipelineProto
import Logging
import NIOSSL
import Synchronization

/// gRPC message compression of the agent's stream. Servers accept all of them; `none`
/// is the default because the batches are already compact and a node's CPU is the
/// workload's, `gzip` pays where the link is slow or billed.
public enum WireCompression: String, CaseIterable, Sendable {
    case none, gzip, deflate

    var algorithm: CompressionAlgorithm {
        switch self {
        case .none: .none
        case .gzip: .gzip
        case .deflate: .deflate
        }
    }
}

/// Streams the spool to the server: one bidirectional stream per connection, Hello first
/// (with every table's DDL), then the spooled batches in sequence order, at most `window`
/// batches and `windowBytes` unacknowledged at a time (flow control: a server that stores slowly acks slowly, and
/// HTTP/2 flow control holds the rest). A batch leaves the spool only when its Ack
/// arrives. On any connection failure the sender waits (exponential backoff from 0.5 s to
/// 30 s, ±20 % jitter so a fleet does not reconnect in lockstep), reconnects and resends
/// every unacknowledged batch in order, marked as a resend so the server stores it once.
///
/// A batch the server refuses on its own (a Refusal naming the batch) is moved aside in
/// the spool (`.rejected`), counted, and the stream goes on.
///
/// Several servers: each agent prefers one of them (chosen by its node name, so a fleet
/// spreads evenly) and connects there first. When a connection fails the next server is
/// tried at once, with the unacknowledged batches resent there (any server finds a batch
/// another one stored: the ledger and the store's deduplication are shared); only when
/// every server failed in a row does the agent wait (the backoff above). While on another
/// server it checks every `failbackAfter` seconds whether its preferred one accepts
/// connections again, and then moves back: it stops sending, lets the server ack what is in
/// flight, ends the stream and reconnects — so a server that comes back gets its share.
///
/// A refusal the agent cannot fix by retrying (a wrong or missing token, a certificate
/// the server does not accept, a table that conflicts with the server's) is fatal:
/// `failure` is set and `run` returns; the spool keeps its batches for the next start.
public final class AgentSender: Sendable {
    public struct Counters: Sendable {
        public var connected = false
        public var connects: UInt64 = 0
        /// Moves to another server after a failure, and back to the preferred one.
        public var failovers: UInt64 = 0
        public var batchesAcked: UInt64 = 0
        public var rowsAcked: UInt64 = 0
        /// Batches the server had stored before (resent after a lost ack).
        public var duplicatesAcked: UInt64 = 0
        public var lastError: String?
        /// Rows acked per plugin.
        public var rowsByPlugin: [String: UInt64] = [:]
        /// Rows the server refused for good per plugin (their batches set aside).
        public var rowsRejectedByPlugin: [String: UInt64] = [:]
    }

    let spool: BatchSpool
    /// The servers, in the order they are tried (from `preferred` on).
    public let servers: [Server]
    /// The index of the server this agent prefers.
    public let preferred: Int
    let failbackAfter: Double
    let security: PipelineSecurity
    let hello: Infrasight_V1_Hello
    let window: Int
    /// Unacknowledged bytes at most (beyond one batch).
    let windowBytes: Int
    let maxMessageBytes: Int
    let compression: WireCompression
    let logger: Logger
    private let state = Mutex(Counters())
    private let fatal = Mutex<String?>(nil)
    private let draining = Atomic<Bool>(false)
    /// The doorbell of the connection in use (nil between connections).
    private let currentDoorbell = Mutex<Doorbell?>(nil)

    /// A server's address. `host`: a name or an address literal (IPv6 without brackets).
    public struct Server: Sendable, Equatable, CustomStringConvertible {
        public let host: String
        public let port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// The server `node` prefers among `count`: FNV-1a of its name (stable across restarts
    /// and releases, unlike Swift's seeded hash), so a fleet spreads evenly.
    public static func preferredIndex(node: String, count: Int) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in node.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(hash % UInt64(max(count, 1)))
    }

    /// `servers`: at least one. `failbackAfter`: how often, while on another server, the
    /// preferred one is checked.
    public init(spool: BatchSpool, servers: [Server], security: PipelineSecurity, hello: Infrasight_V1_Hello, window: Int = 8,
                windowBytes: Int = 16 << 20, maxMessageBytes: Int, compression: WireCompression = .none, failbackAfter: Double = 60,
                logger: Logger) throws(PipelineError) {
        guard !servers.isEmpty else { throw PipelineError("no server to send to") }
        self.spool = spool
        self.servers = servers
        preferred = Self.preferredIndex(node: hello.nodeName, count: servers.count)
        self.failbackAfter = failbackAfter
        self.security = security
        self.hello = hello
        self.window = window
        self.windowBytes = windowBytes
        self.maxMessageBytes = maxMessageBytes
        self.compression = compression
        self.logger = logger
        _ = try security.clientTransport()
        for server in servers where security.token != nil && !security.usesTLS && !isLoopback(server.host) {
            logger.warning("the bearer token travels in plaintext to \(server): anyone on the path can read it; give --tls-ca to use TLS")
        }
    }

    public var counters: Counters { state.withLock { $0 } }
    /// Set when the server refused the agent for good.
    public var failure: String? { fatal.withLock { $0 } }

    /// New batches are in the spool.
    public func notify() { currentDoorbell.withLock { $0 }?.ring() }

    /// Stop once the spool is empty (every batch acknowledged).
    public func drain() {
        draining.store(true, ordering: .relaxed)
        currentDoorbell.withLock { $0 }?.ring()
    }

    /// Runs until drained (spool empty after `drain()`), a fatal refusal, or cancellation.
    public func run() async {
        var backoff = Backoff(initial: 0.5, maximum: 30)
        var index = preferred
        // Servers that failed one after another since the last welcome.
        var failedInARow = 0
        while !Task.isCancelled {
            if draining.load(ordering: .relaxed) && spool.count == 0 { return }
            let server = servers[index]
            let outcome = await connectOnce(server, preferred: index == preferred)
            switch outcome {
            case .drained: return
            case .fatal(let reason):
                fatal.withLock { $0 = reason }
                return
            case .failback:
                logger.notice("server \(servers[preferred]) accepts connections again: moving back to it from \(server)")
                index = preferred
                failedInARow = 0
                backoff.reset()
                state.withLock {
                    $0.connected = false
                    $0.failovers += 1
                }
            case .failed(let reason, let welcomed):
                if welcomed {
                    backoff.reset()
                    failedInARow = 0
                }
                failedInARow += 1
                let next = (index + 1) % servers.count
                let message = "server \(server): \(reason)"
                let first = state.withLock { s -> Bool in
                    let changed = s.lastError != message || s.connected
                    s.connected = false
                    s.lastError = message
                    if next != index { s.failovers += 1 }
                    return changed
                }
                let spooled = "spool: \(spool.count) batches, \(spool.bytes >> 10) KiB"
                if next != index && failedInARow < servers.count {
                    logger.warning("\(message); trying \(servers[next]) (\(spooled))")
                } else {
                    // Every server failed in a row: wait before the next round.
                    let wait = backoff.next()
                    if first { logger.warning("\(message); retrying\(servers.count > 1 ? " every server" : "") (\(spooled))") }
                    failedInARow = 0
                    try? await Task.sleep(nanoseconds: UInt64(wait * 1e9))
                }
                index = next
            }
        }
    }

    enum Outcome { case drained, fatal(String), failed(String, welcomed: Bool), failback }

    /// The per-connection state shared by the request producer and the response reader.
    final class Connection: Sendable {
        /// The server this connection is to.
        let server: Server
        /// Rung whenever what the request producer waits for may have changed: the
        /// server's welcome, an ack or refusal, new batches, draining, failing back.
        let doorbell = Doorbell()
        init(_ server: Server) { self.server = server }
        struct State {
            var welcomed = false
            var inFlight: [(sequence: UInt64, id: String, rows: UInt64, plugin: String, bytes: Int)] = []
            var lastSent: UInt64 = 0
            var refusal: (reason: String, fatal: Bool)?
            /// Moving back to the preferred server: send nothing more, end the stream once
            /// the server acked what is in flight.
            var failingBack = false
        }
        let state = Mutex(State())
    }

    func connectOnce(_ server: Server, preferred isPreferred: Bool) async -> Outcome {
        let connection = Connection(server)
        currentDoorbell.withLock { $0 = connection.doorbell }
        defer { currentDoorbell.withLock { if $0 === connection.doorbell { $0 = nil } } }
        let (host, port) = (server.host, server.port)
        // On another server than the preferred one: watch for the preferred one's return.
        let watcher = isPreferred ? nil : Task.detached { [servers, preferred, failbackAfter] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(failbackAfter * 1e9))
                if Task.isCancelled { return }
                // The probe blocks (name lookup, connect): on a thread of its own, not the pool's.
                let back = await withCheckedContinuation { done in
                    DispatchQueue.global().async {
                        done.resume(returning: TCPProbe.accepts(host: servers[preferred].host, port: servers[preferred].port, timeout: 2))
                    }
                }
                if back {
                    connection.state.withLock { $0.failingBack = true }
                    connection.doorbell.ring()
                    return
                }
            }
        }
        defer { watcher?.cancel() }
        do {
            var config = HTTP2ClientTransport.Posix.Config.defaults
            config.connection.keepalive = .init(time: .seconds(30), timeout: .seconds(10), allowWithoutCalls: true)
            // The transport's own reconnects are not used: each attempt is one connection,
            // and the backoff above decides when to try again.
            config.backoff = .init(initial: .milliseconds(100), max: .milliseconds(100), multiplier: 1, jitter: 0)
            config.compression = .init(algorithm: compression.algorithm, enabledAlgorithms: .all)
            // An address literal is a literal target: a DNS target would put the IP into
            // TLS SNI, which NIOSSL refuses.
            let target: any ResolvableTarget
            if host.contains(":") {
                target = ResolvableTargets.IPv6(addresses: [.init(host: host, port: port)])
            } else if inet_addr(host) != INADDR_NONE {
                target = ResolvableTargets.IPv4(addresses: [.init(host: host, port: port)])
            } else {
                target = ResolvableTargets.DNS(host: host, port: port)
            }
            let transport = try HTTP2ClientTransport.Posix(
                target: target, transportSecurity: try security.clientTransport(), config: config)
            var metadata: Metadata = [:]
            if let token = security.token { metadata.addString("Bearer \(token)", forKey: "authorization") }
            var options = CallOptions.defaults
            options.waitForReady = false
            options.maxRequestMessageBytes = maxMessageBytes
            options.compression = compression.algorithm
            let outcome: Outcome = try await withGRPCClient(transport: transport) { client in
                let pipeline = Infrasight_V1_Pipeline.Client(wrapping: client)
                return try await pipeline.stream(
                    metadata: metadata, options: options,
                    requestProducer: { writer in try await self.produce(writer, connection) },
                    onResponse: { response in try await self.consume(response, connection) })
            }
            return outcome
        } catch let error as RPCError {
            let welcomed = connection.state.withLock { $0.welcomed }
            if let refusal = connection.state.withLock({ $0.refusal }) {
                return refusal.fatal ? .fatal("server refused the agent: \(refusal.reason)") : .failed("refused: \(refusal.reason)", welcomed: welcomed)
            }
            switch error.code {
            case .unauthenticated, .permissionDenied:
                return .fatal("server refused the agent: \(error.message)")
            default:
                let text = Self.describe(error)
                if Self.isTLSFailure(error) { return .fatal("TLS with \(host):\(port) failed: \(text)") }
                return .failed(text, welcomed: welcomed)
            }
        } catch {
            let welcomed = connection.state.withLock { $0.welcomed }
            if let refusal = connection.state.withLock({ $0.refusal }), refusal.fatal { return .fatal("server refused the agent: \(refusal.reason)") }
            return .failed("\(error)", welcomed: welcomed)
        }
    }

    /// An RPC error with its cause chain, on one line.
    static func describe(_ error: RPCError) -> String {
        var text = "\(error.code): \(error.message)"
        var cause: (any Error)? = error.cause
        var depth = 0
        while let c = cause, depth < 4 {
            text += " (\(c))"
            cause = (c as? RPCError)?.cause
            depth += 1
        }
        return text.replacingOccurrences(of: "\n", with: " ")
    }

    /// A TLS failure (a certificate refused by either side, a handshake that failed) will
    /// not go away by retrying with the same files: decided by the type of an error in
    /// the cause chain (NIOSSL's), never by words in a message.
    static func isTLSFailure(_ error: RPCError) -> Bool {
        var cause: (any Error)? = error.cause
        var depth = 0
        while let c = cause, depth < 8 {
            if c is NIOSSLError || c is NIOSSLExtraError || c is BoringSSLError { return true }
            cause = (c as? RPCError)?.cause
            depth += 1
        }
        return false
    }

    func produce(_ writer: RPCWriter<Infrasight_V1_AgentMessage>, _ connection: Connection) async throws {
        var hello = Infrasight_V1_AgentMessage()
        hello.hello = self.hello
        try await writer.write(hello)
        // Resends: everything that was in flight before and everything from before a restart.
        let resendThrough = max(spool.recoveredThrough, sentThrough.load(ordering: .relaxed))
        var doorbell = connection.doorbell.rings.makeAsyncIterator()
        while true {
            try Task.checkCancellation()
            let (welcomed, inFlight, inFlightBytes, lastSent, failingBack) = connection.state.withLock {
                ($0.welcomed, $0.inFlight.count, $0.inFlight.reduce(0) { $0 + $1.bytes }, $0.lastSent, $0.failingBack)
            }
            // Ends the request stream: the server stores and acks what it has, then ends
            // the response stream (`consume` returns `.failback`).
            if failingBack { return }
            if welcomed && inFlight < window {
                // At most `window` batches and `windowBytes` unacknowledged (one batch always
                // goes): what gRPC buffers for a slow server stays bounded.
                var budget = windowBytes - inFlightBytes
                var next: [UInt64] = []
                for entry in spool.entries(after: lastSent, limit: window - inFlight) {
                    if entry.bytes > budget && !(inFlight == 0 && next.isEmpty) { break }
                    budget -= entry.bytes
                    next.append(entry.sequence)
                }
                for sequence in next {
                    guard var batch = spool.read(sequence) else { continue }
                    batch.resend = sequence <= resendThrough
                    let bytes = batch.rows.count
                    connection.state.withLock {
                        $0.inFlight.append((sequence, batch.batchID, batch.rowCount, batch.plugin, bytes))
                        $0.lastSent = sequence
                    }
                    sentThrough.store(max(sentThrough.load(ordering: .relaxed), sequence), ordering: .relaxed)
                    var message = Infrasight_V1_AgentMessage()
                    message.batch = batch
                    try await writer.write(message)
                }
                if !next.isEmpty { continue }
            }
            if welcomed && inFlight == 0 && draining.load(ordering: .relaxed) && spool.count == 0 { return }
            // Until something changes (a ring while this loop ran is kept); nil: cancelled.
            _ = await doorbell.next()
        }
    }

    /// The highest sequence ever sent in this process.
    private let sentThrough = Atomic<UInt64>(0)

    func consume(_ response: StreamingClientResponse<Infrasight_V1_ServerMessage>, _ connection: Connection) async throws -> Outcome {
        for try await message in response.messages {
            switch message.kind {
            case .welcome(let welcome):
                connection.state.withLock { $0.welcomed = true }
                connection.doorbell.ring()
                let reconnect = state.withLock { s -> String? in
                    s.connected = true
                    s.connects += 1
                    defer { s.lastError = nil }
                    return s.lastError
                }
                if let reconnect {
                    logger.notice("connected to server \(connection.server) (\(welcome.serverVersion)) after: \(reconnect); resending \(spool.count) spooled batches")
                } else {
                    logger.notice("connected to server \(connection.server) (\(welcome.serverVersion))")
                }
            case .ack(let ack):
                let entry = connection.state.withLock { s -> (sequence: UInt64, id: String, rows: UInt64, plugin: String, bytes: Int)? in
                    guard let i = s.inFlight.firstIndex(where: { $0.id == ack.batchID }) else { return nil }
                    return s.inFlight.remove(at: i)
                }
                guard let entry else { throw RPCError(code: .internalError, message: "ack for a batch not in flight: \(ack.batchID)") }
                spool.acknowledge(sequence: entry.sequence)
                state.withLock {
                    $0.batchesAcked += 1
                    $0.rowsAcked += entry.rows
                    $0.rowsByPlugin[entry.plugin, default: 0] += entry.rows
                    if ack.duplicate { $0.duplicatesAcked += 1 }
                }
                connection.doorbell.ring()
            case .refusal(let refusal) where !refusal.fatal && !refusal.batchID.isEmpty:
                // One batch the server can never store: set it aside and go on, so it
                // does not stay first in the spool and stop the agent at every start.
                let entry = connection.state.withLock { s -> (sequence: UInt64, id: String, rows: UInt64, plugin: String, bytes: Int)? in
                    guard let i = s.inFlight.firstIndex(where: { $0.id == refusal.batchID }) else { return nil }
                    return s.inFlight.remove(at: i)
                }
                guard let entry else { throw RPCError(code: .internalError, message: "refusal of a batch not in flight: \(refusal.batchID)") }
                let aside = spool.reject(sequence: entry.sequence, rows: entry.rows)
                state.withLock { $0.rowsRejectedByPlugin[entry.plugin, default: 0] += entry.rows }
                logger.error("server refused a batch of \(entry.rows) \(entry.plugin) rows: \(refusal.reason); \(aside.map { "set aside as \($0)" } ?? "removed from the spool")")
                connection.doorbell.ring()
            case .refusal(let refusal):
                connection.state.withLock { $0.refusal = (refusal.reason, refusal.fatal) }
                if refusal.fatal { return .fatal("server refused the agent: \(refusal.reason)") }
                return .failed("refused: \(refusal.reason)", welcomed: connection.state.withLock { $0.welcomed })
            case nil:
                break
            }
            if draining.load(ordering: .relaxed) && spool.count == 0 && connection.state.withLock({ $0.inFlight.isEmpty }) {
                return .drained
            }
        }
        if draining.load(ordering: .relaxed) && spool.count == 0 { return .drained }
        let (welcomed, failingBack, inFlight) = connection.state.withLock { ($0.welcomed, $0.failingBack, $0.inFlight.count) }
        if failingBack && inFlight == 0 { return .failback }
        return .failed("the server ended the stream", welcomed: welcomed)
    }
}

/// Whether a TCP server accepts connections at `host:port` (a name or an address
/// literal), within `timeout` seconds. Blocking: call it off the cooperative pool.
public enum TCPProbe {
    public static func accepts(host: String, port: Int, timeout: Double) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return false }
        defer { freeaddrinfo(result) }
        var info: UnsafeMutablePointer<addrinfo>? = first
        while let i = info {
            defer { info = i.pointee.ai_next }
            let fd = socket(i.pointee.ai_family, i.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if connect(fd, i.pointee.ai_addr, i.pointee.ai_addrlen) == 0 { return true }
            guard errno == EINPROGRESS else { continue }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&pfd, 1, Int32(timeout * 1000)) == 1 else { continue }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0 { return true }
        }
        return false
    }
}

/// Wakes the one task that waits on `rings`; a ring while it is busy is kept (one), so
/// none is missed between its check and its wait. No polling.
final class Doorbell: Sendable {
    let rings: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (rings, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func ring() { continuation.yield() }
}
