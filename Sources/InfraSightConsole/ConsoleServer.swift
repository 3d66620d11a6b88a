import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// The web console over HTTP/1.1 (HTTPS with a certificate): `ConsoleAccess` decides who
/// may ask, `ConsoleAPI` answers. Store queries run on a small thread pool of their own,
/// never on the event loop, so a long query does not stall other requests.
public final class ConsoleServer: @unchecked Sendable {
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
    private let pool = NIOThreadPool(numberOfThreads: 2)
    private var channel: Channel?
    /// A request body larger than this is refused (a statement, not data).
    static let maxBody = 1 << 20
    /// At most this many requests wait for (or run on) the store at once.
    static let maxInFlight = 64
    let inFlight = Counter()

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
        var sslContext: NIOSSLContext?
        if let tls {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            sslContext = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        }
        pool.start()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [unowned self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
        let channel = try bootstrap.bind(host: host, port: port).wait()
        self.channel = channel
        return channel.localAddress?.port ?? port
    }

    public func stop() {
        try? channel?.close().wait()
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: ConsoleServer
        var head: HTTPRequestHead?
        var body = ByteBuffer()
        var tooLarge = false

        init(server: ConsoleServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body.clear()
                tooLarge = false
            case .body(var chunk):
                if body.readableBytes + chunk.readableBytes > ConsoleServer.maxBody { tooLarge = true } else { body.writeBuffer(&chunk) }
            case .end:
                guard let head else { return }
                self.head = nil
                handle(context: context, head: head)
            }
        }

        func handle(context: ChannelHandlerContext, head: HTTPRequestHead) {
            let keepAlive = head.isKeepAlive
            guard var components = URLComponents(string: head.uri) else {
                write(context: context, ConsoleAPI.Response(status: 400, contentType: "text/plain", body: Data("malformed request target\n".utf8)), keepAlive: false)
                return
            }
            if components.path.isEmpty { components.path = "/" }
            var query: [String: String] = [:]
            for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
            let method = head.method.rawValue
            let headers = head.headers.map { ($0.name, $0.value) }
            if tooLarge {
                write(context: context, ConsoleAPI.Response(status: 413, contentType: "text/plain", body: Data("request body over 1 MiB\n".utf8)), keepAlive: false)
                return
            }
            switch server.access.check(method: method, path: components.path, query: query, headers: headers) {
            case .refuse(let status, let reason):
                if status == 401, method == "GET", !components.path.hasPrefix("/api/") {
                    var page = server.api.asset("login.html")
                    page.status = 401
                    write(context: context, page, keepAlive: keepAlive)
                } else {
                    let body = (try? JSONSerialization.data(withJSONObject: ["error": reason])) ?? Data()
                    write(context: context, ConsoleAPI.Response(status: status, contentType: "application/json", body: body), keepAlive: keepAlive)
                }
                return
            case .login(let cookie, let location):
                write(context: context, ConsoleAPI.Response(status: 303, contentType: "text/plain", body: Data()), keepAlive: keepAlive,
                      extra: [("Set-Cookie", cookie), ("Location", location)])
                return
            case .allow:
                break
            }
            let bodyData = Data(body.readableBytesView)
            let api = server.api
            let path = components.path
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            // Requests waiting for the store are bounded: past the limit, 503 at once.
            guard server.inFlight.enter() <= ConsoleServer.maxInFlight else {
                server.inFlight.leave()
                write(context: context, ConsoleAPI.Response(status: 503, contentType: "application/json", body: Data(#"{"error":"busy: too many requests waiting for the store; retry"}"#.utf8)), keepAlive: keepAlive)
                return
            }
            let inFlight = server.inFlight
            server.pool.submit { _ in
                let response = api.respond(method: method, path: path, query: query, body: bodyData)
                inFlight.leave()
                loop.execute {
                    let (handler, context) = bound.value
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
            }
        }
    }
}
