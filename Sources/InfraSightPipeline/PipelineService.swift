import Foundation
import GRPCCore
import InfraSightPipelineProto
import Logging
import Synchronization

/// The server's `infrasight.v1.Pipeline` service: checks the bearer token, answers a
/// Hello with Welcome once the agent's tables are applied (or with a fatal Refusal), then
/// stores batches one after another and acks each only once it is stored.
public struct PipelineService: Infrasight_V1_Pipeline.ServiceProtocol {
    let storage: ServerStorage
    let token: String?
    let version: String
    let logger: Logger
    let agents: AgentRegistry

    public init(storage: ServerStorage, token: String?, version: String, logger: Logger, agents: AgentRegistry) {
        self.storage = storage
        self.token = token
        self.version = version
        self.logger = logger
        self.agents = agents
    }

    public func stream(
        request: StreamingServerRequest<Infrasight_V1_AgentMessage>, context: ServerContext
    ) async throws -> StreamingServerResponse<Infrasight_V1_ServerMessage> {
        let peer = context.remotePeer
        if let token {
            let header = request.metadata[stringValues: "authorization"].first(where: { _ in true })
            guard PipelineSecurity.matches(header, token: token) else {
                let why = header == nil ? "no bearer token" : "a wrong bearer token"
                logger.warning("refused agent at \(peer): \(why)")
                throw RPCError(code: .unauthenticated, message: "this server requires a bearer token; the agent sent \(why)")
            }
        }
        return StreamingServerResponse { writer in
            var agent: String?
            defer { if let agent { agents.left(agent) } }
            for try await message in request.messages {
                switch message.kind {
                case .hello(let hello):
                    do {
                        let tables = try await storage.register(hello)
                        agent = hello.agentID
                        agents.joined(hello.agentID)
                        logger.notice("agent \(hello.agentID) (\(hello.nodeName), \(hello.version)) at \(peer): \(tables.count) tables")
                        var welcome = Infrasight_V1_ServerMessage()
                        welcome.welcome.serverVersion = version
                        try await writer.write(welcome)
                    } catch {
                        logger.error("refused agent \(hello.agentID) at \(peer): \(error)")
                        try await writer.write(refusal("\(error)"))
                        return [:]
                    }
                case .batch(let batch):
                    guard let agent else {
                        try await writer.write(refusal("a batch before the hello"))
                        return [:]
                    }
                    do {
                        let ack = try await storage.store(batch, agent: agent)
                        var reply = Infrasight_V1_ServerMessage()
                        reply.ack = ack
                        try await writer.write(reply)
                    } catch let error as PipelineError {
                        logger.error("refused a batch from agent \(agent) at \(peer): \(error)")
                        try await writer.write(refusal(error.description))
                        return [:]
                    }
                case nil:
                    continue
                }
            }
            return [:]
        }
    }

    func refusal(_ reason: String) -> Infrasight_V1_ServerMessage {
        var message = Infrasight_V1_ServerMessage()
        message.refusal.reason = reason
        message.refusal.fatal = true
        return message
    }
}

/// Agents connected now (for metrics and readiness).
public final class AgentRegistry: Sendable {
    private let connected = Mutex<[String: Int]>([:])
    public init() {}
    func joined(_ id: String) { connected.withLock { $0[id, default: 0] += 1 } }
    func left(_ id: String) {
        connected.withLock {
            $0[id, default: 1] -= 1
            if $0[id] == 0 { $0.removeValue(forKey: id) }
        }
    }
    public var count: Int { connected.withLock { $0.count } }
}
