import Foundation
import GRPCCore
import InfraSightCore
import InfraSightPipelineProto
import Logging
import Synchronization

/// The server's `infrasight.v1.Pipeline` service: checks the agent's credentials
/// (`AgentAuthenticator`), answers a Hello with Welcome once the agent's tables are
/// applied (or with a fatal Refusal), then stores batches one after another and acks each
/// only once it is stored. A batch that cannot be stored is refused on its own (a
/// Refusal naming its batch id, not fatal) and the stream reads on. An agent may write
/// only the tables its hello declared.
public struct PipelineService: Infrasight_V1_Pipeline.ServiceProtocol {
    let storage: ServerStorage
    let authenticator: AgentAuthenticator
    let version: String
    let logger: Logger
    let agents: AgentRegistry

    public init(storage: ServerStorage, authenticator: AgentAuthenticator, version: String, logger: Logger, agents: AgentRegistry) {
        self.storage = storage
        self.authenticator = authenticator
        self.version = version
        self.logger = logger
        self.agents = agents
    }

    public func stream(
        request: StreamingServerRequest<Infrasight_V1_AgentMessage>, context: ServerContext
    ) async throws -> StreamingServerResponse<Infrasight_V1_ServerMessage> {
        let peer = context.remotePeer
        let credential: AgentAuthenticator.Credential
        do {
            let header = request.metadata[stringValues: "authorization"].first(where: { _ in true })
            credential = try authenticator.authenticate(authorization: header, transport: context.transportSpecific)
        } catch {
            logger.warning("refused agent at \(peer): \(Self.printable("\(error)", limit: .max))")
            throw RPCError(code: .unauthenticated, message: "this server refused the agent's credentials: \(error)")
        }
        return StreamingServerResponse { writer in
            var agent: AgentIdentity?
            var declared = ServerStorage.Declaration()
            defer { if let agent { agents.left(agent.id) } }
            for try await message in request.messages {
                switch message.kind {
                case .hello(let hello):
                    guard agent == nil else {
                        try await writer.write(refusal("a second hello on one stream"))
                        return [:]
                    }
                    let claimed = Self.printable(hello.agentID)
                    do {
                        let identity = try authenticator.identity(credential, claimedNode: hello.nodeName, claimedID: hello.agentID)
                        declared = try await storage.register(hello)
                        agent = identity
                        agents.joined(identity.id)
                        let proof = identity.provenNode == nil ? "self-named" : "identity from its credentials"
                        logger.notice("agent \(Self.printable(identity.id)) (\(Self.printable(hello.nodeName)), \(Self.printable(hello.version)), \(proof)) at \(peer): \(declared.count) tables")
                        var welcome = Infrasight_V1_ServerMessage()
                        welcome.welcome.serverVersion = version
                        try await writer.write(welcome)
                    } catch {
                        logger.error("refused agent \(claimed) at \(peer): \(Self.printable("\(error)", limit: .max))")
                        try await writer.write(refusal("\(error)"))
                        return [:]
                    }
                case .batch(let batch):
                    guard let agent else {
                        try await writer.write(refusal("a batch before the hello"))
                        return [:]
                    }
                    do {
                        let ack = try await storage.store(batch, agent: agent, declared: declared)
                        var reply = Infrasight_V1_ServerMessage()
                        reply.ack = ack
                        try await writer.write(reply)
                    } catch let error as BatchRefusal {
                        logger.error("refused a batch from agent \(Self.printable(agent.id)) at \(peer): \(Self.printable("\(error)", limit: .max))")
                        var reply = refusal(error.description)
                        reply.refusal.fatal = false
                        reply.refusal.batchID = String(batch.batchID.prefix(64))
                        try await writer.write(reply)
                    }
                case nil:
                    continue
                }
            }
            return [:]
        }
    }

    /// Text from the wire (a name, or a refusal that quotes the agent's input), made safe
    /// for one log line, at most 253 characters for a name.
    static func printable(_ text: String, limit: Int = 253) -> String { oneLogLine(text, limit: limit) }

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
