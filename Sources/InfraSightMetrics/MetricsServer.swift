import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// One sampled value: a counter (monotonic total) or a gauge (current level).
public struct Sample: Sendable {
    public enum Kind: Sendable { case counter, gauge }
    public let name: String
    public let labels: [(String, String)]
    public let value: Double
    public let kind: Kind
    public let help: String

    public init(_ name: String, _ labels: [(String, String)] = [], _ value: Double, _ kind: Kind, help: String) {
        self.name = name
        self.labels = labels
        self.value = value
        self.kind = kind
        self.help = help
    }
}

/// Serves `/metrics` (Prometheus text format), `/healthz` and `/readyz` over HTTP/1.1.
///
/// The values come from `sample`, called at each scrape: the pipeline keeps its own
/// atomic counters on the hot path and nothing is pushed per event. Counters are exported
/// as Prometheus counters (incremented by the change since the previous scrape), levels
/// as gauges. `/healthz` answers 200 while the process serves; `/readyz` 200 once
/// `ready` says so, 503 before; its body is `ready` or `starting`, then one line per
/// `notes` item (e.g. a plugin that is not running and why).
public final class MetricsServer: Sendable {
    let registry = PrometheusCollectorRegistry()
    let sample: @Sendable () -> [Sample]
    let ready: @Sendable () -> (ready: Bool, notes: [String])
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel = Mutex<Channel?>(nil)
    /// The registry's metrics by name and labels; a counter with the total it last had.
    private struct Registered {
        var counters: [String: (Counter, Double)] = [:]
        var gauges: [String: Gauge] = [:]
    }
    private let registered = Mutex(Registered())

    public init(sample: @escaping @Sendable () -> [Sample], ready: @escaping @Sendable () -> (ready: Bool, notes: [String])) {
        self.sample = sample
        self.ready = ready
    }

    /// Binds `host:port` (port 0 picks one) and returns the bound port.
    public func start(host: String, port: Int) throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [unowned self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
        let bound = try bootstrap.bind(host: host, port: port).wait()
        channel.withLock { $0 = bound }
        return bound.localAddress?.port ?? port
    }

    public func stop() {
        try? channel.withLock { $0 }?.close().wait()
        try? group.syncShutdownGracefully()
    }

    func key(_ s: Sample) -> String { s.name + "|" + s.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") }

    /// Brings the registry up to date and renders it.
    func render() -> [UInt8] {
        let samples = sample()
        registered.withLock { r in
            for s in samples {
                let k = key(s)
                let name = MetricNameDescriptor(metricName: s.name, unitName: "", helpText: s.help)
                switch s.kind {
                case .counter:
                    let (counter, last) = r.counters[k] ?? (registry.makeCounter(descriptor: name, labels: s.labels), 0)
                    if s.value > last { counter.increment(by: s.value - last) }
                    r.counters[k] = (counter, max(last, s.value))
                case .gauge:
                    let gauge = r.gauges[k] ?? registry.makeGauge(descriptor: name, labels: s.labels)
                    gauge.set(to: s.value)
                    r.gauges[k] = gauge
                }
            }
        }
        return registry.emitToBuffer()
    }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: MetricsServer
        var path = ""
        init(server: MetricsServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            case .body:
                break
            case .end:
                let (status, type, body): (HTTPResponseStatus, String, [UInt8])
                switch path {
                case "/metrics": (status, type, body) = (.ok, "text/plain; version=0.0.4", server.render())
                case "/healthz": (status, type, body) = (.ok, "text/plain", Array("ok\n".utf8))
                case "/readyz":
                    let state = server.ready()
                    let text = ([state.ready ? "ready" : "starting"] + state.notes).map { $0 + "\n" }.joined()
                    (status, type, body) = (state.ready ? .ok : .serviceUnavailable, "text/plain", Array(text.utf8))
                default: (status, type, body) = (.notFound, "text/plain", Array("not found\n".utf8))
                }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: type)
                headers.add(name: "Content-Length", value: String(body.count))
                headers.add(name: "Connection", value: "close")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
                var buffer = context.channel.allocator.buffer(capacity: body.count)
                buffer.writeBytes(body)
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}
