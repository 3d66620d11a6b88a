import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import X509

/// Decides who an agent is from what it presents, not from what it says.
///
/// - A shared bearer token (`--token-file`) admits any agent that has it; such agents are
///   trusted to name themselves (node name, agent id), except with a name the per-agent
///   tokens list: that name is its token's holder's alone, and beside such a list a
///   shared-token agent's rows are stored with the node name its hello gave.
/// - Per-agent tokens (`--agent-tokens FILE`, one `name token` per line) admit an agent
///   as `name`: its hello must say node `name`, and rows are stored with that node name.
/// - With mutual TLS and `--cert-identity`, the client certificate's names (its SAN DNS
///   names and subject common name) are what the agent may call itself: its hello must
///   name one of them, and rows are stored with it.
/// Thread-safe (immutable).
public struct AgentAuthenticator: Sendable {
    public let sharedToken: String?
    /// Token → agent name.
    public let agentTokens: [(name: String, token: String)]
    public let certificateIdentity: Bool

    public init(sharedToken: String?, agentTokens: [(name: String, token: String)] = [], certificateIdentity: Bool = false) {
        self.sharedToken = sharedToken
        self.agentTokens = agentTokens
        self.certificateIdentity = certificateIdentity
    }

    public var requiresToken: Bool { sharedToken != nil || !agentTokens.isEmpty }
    /// Whether credentials name each agent (else agents name themselves).
    public var provesIdentity: Bool { !agentTokens.isEmpty || certificateIdentity }

    /// What the credentials of one connection establish.
    public struct Credential: Sendable {
        /// The name a per-agent token proves.
        var tokenName: String?
        /// The names a client certificate carries (when `certificateIdentity`).
        var certificateNames: [String]?
    }

    /// Checks the bearer token and reads the certificate's names. Throws a reason for the
    /// log and the agent (never the token itself).
    public func authenticate(authorization: String?, transport: (any ServerContext.TransportSpecific)?) throws(PipelineError) -> Credential {
        var credential = Credential()
        if requiresToken {
            guard let authorization else { throw PipelineError("no bearer token") }
            var matched = false
            // Every token is compared (in constant time each), so timing does not tell
            // which one came close.
            if let sharedToken, PipelineSecurity.matches(authorization, token: sharedToken) { matched = true }
            for entry in agentTokens where PipelineSecurity.matches(authorization, token: entry.token) {
                matched = true
                credential.tokenName = entry.name
            }
            guard matched else { throw PipelineError("a wrong bearer token") }
        }
        if certificateIdentity {
            guard let context = transport as? HTTP2ServerTransport.Posix.Context, let certificate = context.peerCertificate else {
                throw PipelineError("no client certificate (the server takes agents' names from their certificates)")
            }
            credential.certificateNames = Self.names(of: certificate)
        }
        return credential
    }

    /// The hello's node name checked against the credential: the identity to store with,
    /// or a refusal naming the mismatch.
    public func identity(_ credential: Credential, claimedNode: String, claimedID: String) throws(PipelineError) -> AgentIdentity {
        let node = String(claimedNode.prefix(253))
        var proven: String?
        if let name = credential.tokenName {
            guard node == name else { throw PipelineError("the agent says it is node '\(node)' but its token belongs to '\(name)'") }
            proven = name
        }
        if let names = credential.certificateNames {
            guard names.contains(node) else {
                throw PipelineError("the agent says it is node '\(node)' but its certificate names \(names.isEmpty ? "nothing" : names.joined(separator: ", "))")
            }
            proven = node
        }
        if let proven { return AgentIdentity(id: proven, provenNode: proven) }
        // Self-named (a shared token, or no credentials): a name the agent tokens file
        // lists proves who holds that token, so nobody else may use it, in the hello or
        // in rows (which then all get the hello's node name).
        let id = String(claimedID.prefix(253))
        guard !agentTokens.isEmpty else { return AgentIdentity(id: id, provenNode: nil) }
        for (what, claimed) in [("node", node), ("agent id", id)] where agentTokens.contains(where: { $0.name == claimed }) {
            throw PipelineError("the agent gives the \(what) '\(claimed)' without its token, but the agent tokens file lists \(claimed): only \(claimed)'s own token may use that name")
        }
        return AgentIdentity(id: id, provenNode: nil, node: node)
    }

    /// A certificate's SAN DNS names and subject common names.
    static func names(of certificate: Certificate) -> [String] {
        var names: [String] = []
        if let sans = try? certificate.extensions.subjectAlternativeNames {
            for case .dnsName(let name) in sans { names.append(name) }
        }
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if let name = String(attribute.value) { names.append(name) }
            }
        }
        return names
    }

    /// Reads a per-agent token file: one `name token` per line, `#` comments. Names are
    /// node names ([A-Za-z0-9._-], at most 253 bytes); tokens at least 16 bytes, unique.
    public static func agentTokens(file: String) throws(PipelineError) -> [(name: String, token: String)] {
        let text = try SecretFile.read(file, what: "agent token file")
        var out: [(name: String, token: String)] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2 else { throw PipelineError("\(file):\(n + 1): expected `name token`") }
            let name = String(fields[0]), token = String(fields[1])
            guard name.utf8.count <= 253, name.utf8.allSatisfy({ $0 < 128 && (isalnum(Int32($0)) != 0 || $0 == 46 || $0 == 45 || $0 == 95) }) else {
                throw PipelineError("\(file):\(n + 1): agent name must be [A-Za-z0-9._-], at most 253 bytes")
            }
            guard token.utf8.count >= PipelineSecurity.minimumTokenBytes else {
                throw PipelineError("\(file):\(n + 1): the token of \(name) is shorter than \(PipelineSecurity.minimumTokenBytes) bytes")
            }
            guard !out.contains(where: { $0.token == token }) else { throw PipelineError("\(file):\(n + 1): the token of \(name) is also another agent's") }
            out.append((name, token))
        }
        guard !out.isEmpty else { throw PipelineError("the agent token file \(file) names no agent") }
        return out
    }
}
