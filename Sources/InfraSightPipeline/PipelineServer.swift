import Foundation
import Glibc
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import NIOSSL

/// The gRPC server of `infrasight server`: the Pipeline service on one address, plaintext,
/// TLS or mutual TLS. An agent whose TLS handshake fails (no certificate, one from another
/// CA) is logged with the reason: the transport would otherwise drop it silently.
public final class PipelineServer: Sendable {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let transport: HTTP2ServerTransport.Posix
    let task: Task<Void, any Error>

    /// Binds and starts serving; `port` 0 picks a free port (see `port()`).
    public init(host: String, port: Int, security: PipelineSecurity, service: PipelineService, maxMessageBytes: Int, logger: Logger) throws(PipelineError) {
        var config = HTTP2ServerTransport.Posix.Config.defaults
        config.rpc.maxRequestPayloadSize = maxMessageBytes
        // Agents choose whether to compress (see WireCompression); the server takes any.
        config.compression = .init(enabledAlgorithms: .all)
        config.connection.keepalive.clientBehavior.allowWithoutCalls = true
        config.connection.keepalive.clientBehavior.minPingIntervalWithoutCalls = .seconds(10)
        if security.usesTLS {
            config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let tls = try? ops.handler(type: NIOSSLServerHandler.self) {
                        try ops.addHandler(TLSRefusalLogger(logger: logger), position: .after(tls))
                    }
                }
            }
        }
        let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        transport = HTTP2ServerTransport.Posix(address: address, transportSecurity: try security.serverTransport(), config: config)
        let server = GRPCServer(transport: transport, services: [service])
        self.server = server
        task = Task { try await server.serve() }
    }

    /// The bound port, once listening; throws the bind error.
    public func port() async throws -> Int {
        let address = try await transport.listeningAddress
        return address.ipv4?.port ?? address.ipv6?.port ?? 0
    }

    /// Why binding `host:port` fails (e.g. "Address already in use"), or nil if it works.
    public static func bindError(host: String, port: Int) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let info = result else { return String(cString: gai_strerror(rc)) }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, 0)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        defer { close(fd) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        return bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 ? nil : String(cString: strerror(errno))
    }

    /// Stops accepting; open streams get `grace` seconds to finish, then are cancelled
    /// (their agents keep the unacknowledged batches and resend them).
    public func stop(grace: Double = 5) async {
        server.beginGracefulShutdown()
        let task = task
        let timer = Task {
            try await Task.sleep(nanoseconds: UInt64(grace * 1e9))
            task.cancel()
        }
        _ = try? await task.value
        timer.cancel()
    }
}

/// Logs a failed TLS handshake with the peer's address and NIOSSL's reason.
final class TLSRefusalLogger: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = Any
    let logger: Logger
    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOSSLError || error is BoringSSLError {
            let peer = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
            logger.warning("refused a TLS connection from \(peer): \(error)")
        }
        context.fireErrorCaught(error)
    }
}
