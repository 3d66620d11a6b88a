import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import InfraSightStorage
import Synchronization

/// The web console over HTTP/1.1 (HTTPS with a certificate): `ConsoleAccess` decides who
/// may ask, on the request head, before any body is read; `ConsoleAPI` answers. Store
/// queries run on a small thread pool of their own, never on the event loop, so a long
/// query does not stall other requests.
///
/// Bounded against clients that hold resources: at most `maxConnections` connections; at
/// the cap a new connection closes the oldest one that has not yet sent a head the
/// console admitted (so idle or unauthorised clients cannot keep the token's holder out),
/// or is closed itself when every open one has; a connection must complete each request within
/// `requestSeconds` of its first byte, and is closed after `requestSeconds` idle between
/// requests; a body over `maxBody` (by Content-Length or as it arrives) is refused. A
/// request refused on its head is answered and its connection closed, body unread.
public final class ConsoleServer: Sendable {
    public struct TLSFiles: Sendable {
        public let certificate: String
        public let key: String
        public init(certificate: String, key: String) {
            self.certificate = certificate
            self.key = key
        }
    }

    let api: ConsoleAPI
    let access: ConsoleAccess
    let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let pool = NIOThreadPool(numberOfThreads: 4)
    private let channel = Mutex<Channel?>(nil)
    /// A request body larger than this is refused (a statement, not data).
    static let maxBody = 1 << 20
    /// At most this many requests wait for (or run on) the store at once.
    static let maxInFlight = 64
    /// At most this many open connections.
    public static let maxConnections = 128
    /// Seconds a request may take to arrive, and a connection may stay idle.
    public static let requestSeconds: Int64 = 15
    let inFlight = Counter()
    let connections = Connections()

    /// Open connections, oldest first, each with whether it has sent an admitted head.
    final class Connections: Sendable {
        private let entries = Mutex<[(id: ObjectIdentifier, channel: Channel, admitted: Bool)]>([])

        /// Adds `channel`; at `cap`, first closes the oldest connection not yet admitted.
        /// Returns false (nothing added) when every open connection has been admitted.
        func add(_ channel: Channel, cap: Int) -> Bool {
            var victim: Channel?
            let added = entries.withLock { entries -> Bool in
                if entries.count >= cap {
                    guard let i = entries.firstIndex(where: { !$0.admitted }) else { return false }
                    victim = entries.remove(at: i).channel
                }
                entries.append((ObjectIdentifier(channel), channel, false))
                return true
            }
            victim?.close(promise: nil)
            return added
        }

        func admit(_ channel: Channel) {
            let id = ObjectIdentifier(channel)
            entries.withLock { entries in if let i = entries.firstIndex(where: { $0.id == id }) { entries[i].admitted = true } }
        }

        func remove(_ channel: Channel) {
            let id = ObjectIdentifier(channel)
            entries.withLock { $0.removeAll { $0.id == id } }
        }
    }

    /// A count shared with the pool's closures.
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        /// Adds one and returns the new count.
        func enter() -> Int { value.wrappingAdd(1, ordering: .relaxed).newValue }
        func leave() { value.wrappingSubtract(1, ordering: .relaxed) }
    }

    public init(api: ConsoleAPI, access: ConsoleAccess, logger: Logger) {
        self.api = api
        self.access = access
        self.logger = logger
    }

    /// Binds `host:port` (port 0 picks one), with TLS when `tls` is given; returns the port.
    public func start(host: String, port: Int, tls: TLSFiles?) throws -> Int {
        let sslContext: NIOSSLContext? = try tls.map { tls in
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            return try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        }
        pool.start()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [unowned self] channel in
                // Past the cap, room is made by closing the oldest connection that has not
                // been admitted; with none, this one is closed before anything is read.
                guard connections.add(channel, cap: Self.maxConnections) else { return channel.close() }
                let connections = self.connections
                channel.closeFuture.whenComplete { _ in connections.remove(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    if let sslContext { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
        let bound = try bootstrap.bind(host: host, port: port).wait()
        channel.withLock { $0 = bound }
        return bound.localAddress?.port ?? port
    }

    public func stop() {
        try? channel.withLock { $0 }?.close().wait()
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: ConsoleServer
        /// The request being read, admitted on its head.
        var request: (head: HTTPRequestHead, path: String, query: [String: String])?
        var body = ByteBuffer()
        var tooLarge = false
        /// A refused request's remaining parts are dropped until its end.
        var discarding = false
        /// A request is being answered (its query may run long): the deadline waits.
        var answering = false
        var deadline: Scheduled<Void>?
        /// The running request's query, stopped when the connection closes before its answer.
        var cancellation: QueryCancellation?

        init(server: ConsoleServer) { self.server = server }

        func channelActive(context: ChannelHandlerContext) {
            armDeadline(context)
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            deadline?.cancel()
            cancellation?.cancel()
            context.fireChannelInactive()
        }

        /// Closes the connection unless the next request is complete within `requestSeconds`.
        func armDeadline(_ context: ChannelHandlerContext) {
            deadline?.cancel()
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: .seconds(ConsoleServer.requestSeconds)) {
                let (handler, context) = bound.value
                guard !handler.answering else { return }
                context.close(promise: nil)
            }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                body.clear()
                tooLarge = false
                discarding = !admit(context: context, head: head)
            case .body(var chunk):
                guard !discarding else { return }
                if body.readableBytes + chunk.readableBytes > ConsoleServer.maxBody { tooLarge = true } else { body.writeBuffer(&chunk) }
            case .end:
                guard !discarding, let request else { return }
                self.request = nil
                if tooLarge {
                    write(context: context, ConsoleAPI.Response(status: 413, contentType: "text/plain", body: Data("request body over 1 MiB\n".utf8)), keepAlive: false)
                    return
                }
                answer(context: context, head: request.head, path: request.path, query: request.query)
            }
        }

        /// Decides on the head alone. Returns false (having answered, the connection to
        /// close) when the request is refused or is a login.
        func admit(context: ChannelHandlerContext, head: HTTPRequestHead) -> Bool {
            guard var components = URLComponents(string: head.uri) else {
                write(context: context, ConsoleAPI.Response(status: 400, contentType: "text/plain", body: Data("malformed request target\n".utf8)), keepAlive: false)
                return false
            }
            if components.path.isEmpty { components.path = "/" }
            var query: [String: String] = [:]
            for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
            let method = head.method.rawValue
            let headers = head.headers.map { ($0.name, $0.value) }
            let address = context.remoteAddress?.ipAddress ?? "unknown"
            switch server.access.check(method: method, path: components.path, query: query, headers: headers, address: address) {
            case .refuse(let status, let reason):
                if status == 401, method == "GET", !components.path.hasPrefix("/api/") {
                    var page = server.api.asset("login.html")
                    page.status = 401
                    write(context: context, page, keepAlive: false)
                } else {
                    let body = (try? JSONSerialization.data(withJSONObject: ["error": reason])) ?? Data()
                    write(context: context, ConsoleAPI.Response(status: status, contentType: "application/json", body: body), keepAlive: false)
                }
                return false
            case .login(let cookie, let location):
                write(context: context, ConsoleAPI.Response(status: 303, contentType: "text/plain", body: Data()), keepAlive: false,
                      extra: [("Set-Cookie", cookie), ("Location", location)])
                return false
            case .allow:
                break
            }
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > ConsoleServer.maxBody {
                write(context: context, ConsoleAPI.Response(status: 413, contentType: "text/plain", body: Data("request body over 1 MiB\n".utf8)), keepAlive: false)
                return false
            }
            request = (head, components.path, query)
            server.connections.admit(context.channel)
            return true
        }

        func answer(context: ChannelHandlerContext, head: HTTPRequestHead, path: String, query: [String: String]) {
            let keepAlive = head.isKeepAlive
            let method = head.method.rawValue
            let bodyData = Data(body.readableBytesView)
            let api = server.api
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            // Requests waiting for the store are bounded: past the limit, 503 at once.
            guard server.inFlight.enter() <= ConsoleServer.maxInFlight else {
                server.inFlight.leave()
                write(context: context, ConsoleAPI.Response(status: 503, contentType: "application/json", body: Data(#"{"error":"busy: too many requests waiting for the store; retry"}"#.utf8)), keepAlive: keepAlive)
                return
            }
            answering = true
            let cancellation = QueryCancellation()
            self.cancellation = cancellation
            let inFlight = server.inFlight
            server.pool.submit { _ in
                let response = api.respond(method: method, path: path, query: query, body: bodyData, cancellation: cancellation)
                inFlight.leave()
                loop.execute {
                    let (handler, context) = bound.value
                    handler.answering = false
                    handler.cancellation = nil
                    handler.write(context: context, response, keepAlive: keepAlive)
                }
            }
        }

        func write(context: ChannelHandlerContext, _ response: ConsoleAPI.Response, keepAlive: Bool, extra: [(String, String)] = []) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: response.contentType)
            headers.add(name: "Content-Length", value: String(response.body.count))
            headers.add(name: "Cache-Control", value: "no-store")
            headers.add(name: "X-Content-Type-Options", value: "nosniff")
            headers.add(name: "X-Frame-Options", value: "DENY")
            headers.add(name: "Referrer-Policy", value: "no-referrer")
            // Everything the pages need is served from here: no inline script, no other origin.
            headers.add(name: "Content-Security-Policy", value: "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
            for (name, value) in extra { headers.add(name: name, value: value) }
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            } else {
                armDeadline(context)
            }
        }
    }
}
