import Foundation
import Glibc
import InfraSightCore
import GRPCNIOTransportHTTP2Posix

/// TLS material and the bearer token, as files. Secrets are read from files or the
/// environment, never taken as command-line values (those show in `ps`), and never logged.
public struct PipelineSecurity: Sendable {
    /// PEM certificate chain this side presents (server: required for TLS; agent: for mTLS).
    public var certificate: String?
    /// PEM private key of `certificate`.
    public var key: String?
    /// PEM CA bundle that verifies the other side (agent: the server's CA, else the system
    /// roots; server: clients must present a certificate from this CA — mutual TLS).
    public var ca: String?
    /// The shared bearer token (already read from its file or variable).
    public var token: String?

    public init(certificate: String? = nil, key: String? = nil, ca: String? = nil, token: String? = nil) {
        self.certificate = certificate
        self.key = key
        self.ca = ca
        self.token = token
    }

    public var usesTLS: Bool { certificate != nil || ca != nil }

    /// The shortest token a file may hold, as per-agent tokens (`AgentAuthenticator`): a
    /// short one can be guessed by whoever reaches the port.
    public static let minimumTokenBytes = 16

    /// Reads a token from `file` (first line, trimmed) or from the environment variable.
    /// The file must be readable by its owner only (`SecretFile`) and its token at least
    /// `minimumTokenBytes` long.
    public static func token(file: String?, environment variable: String) throws(PipelineError) -> String? {
        if let file {
            let text = try SecretFile.read(file, what: "token file")
            let token = text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard !token.isEmpty else { throw PipelineError("the token file \(file) is empty") }
            guard token.utf8.count >= minimumTokenBytes else {
                throw PipelineError("the token in \(file) is \(token.utf8.count) bytes, under the \(minimumTokenBytes) a token needs (head -c 24 /dev/urandom | base64 makes one)")
            }
            return token
        }
        // Trimmed as the file's first line is: a Kubernetes secretKeyRef passes the file's
        // bytes, trailing newline included (`base64 > token` writes one).
        if let value = ProcessInfo.processInfo.environment[variable]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty { return value }
        return nil
    }

    func check() throws(PipelineError) {
        for (flag, path) in [("certificate", certificate), ("key", key), ("CA", ca)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw PipelineError("cannot read the TLS \(flag) file \(path)")
            }
        }
        if let key { try SecretFile.check(key, what: "TLS key file") }
    }

    /// The server's transport security: plaintext, TLS, or mutual TLS when `ca` is set.
    func serverTransport() throws(PipelineError) -> HTTP2ServerTransport.Posix.TransportSecurity {
        try check()
        if ca != nil && certificate == nil { throw PipelineError("--tls-ca on the server (mutual TLS) needs --tls-cert and --tls-key") }
        guard let certificate else { return .plaintext }
        guard let key else { throw PipelineError("--tls-cert needs --tls-key") }
        let chain: [TLSConfig.CertificateSource] = [.file(path: certificate, format: .pem)]
        let privateKey: TLSConfig.PrivateKeySource = .file(path: key, format: .pem)
        guard let ca else { return .tls(certificateChain: chain, privateKey: privateKey) }
        return .mTLS(certificateChain: chain, privateKey: privateKey) { config in
            config.trustRoots = .certificates([.file(path: ca, format: .pem)])
            config.clientCertificateVerification = .noHostnameVerification
        }
    }

    /// The agent's transport security: plaintext unless a CA or a client certificate is set.
    func clientTransport() throws(PipelineError) -> HTTP2ClientTransport.Posix.TransportSecurity {
        try check()
        guard usesTLS else { return .plaintext }
        if certificate != nil && key == nil { throw PipelineError("--tls-cert needs --tls-key") }
        return .tls { config in
            if let certificate, let key {
                config.certificateChain = [.file(path: certificate, format: .pem)]
                config.privateKey = .file(path: key, format: .pem)
            }
            if let ca { config.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
            config.serverCertificateVerification = .fullVerification
        }
    }

    /// Constant-time comparison of an `authorization` header with the expected token.
    static func matches(_ header: String?, token: String) -> Bool {
        guard let header else { return false }
        return constantTimeEqual(header, "Bearer \(token)")
    }
}

/// Files holding secrets (tokens, private keys): refused when group or others may read or
/// write them, as ssh refuses a private key with such a mode.
public enum SecretFile {
    /// Throws unless `path` is a regular file with no group/other permission bits.
    public static func check(_ path: String, what: String) throws(PipelineError) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw PipelineError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw PipelineError("the \(what) \(path) is not a regular file") }
        guard st.st_mode & 0o077 == 0 else {
            throw PipelineError(String(format: "the %@ %@ is accessible by group or others (mode %04o); run chmod 600 on it", what, path, st.st_mode & 0o7777))
        }
    }

    /// The file's text, after `check`.
    public static func read(_ path: String, what: String) throws(PipelineError) -> String {
        try check(path, what: what)
        guard let data = FileManager.default.contents(atPath: path) else { throw PipelineError("cannot read the \(what) \(path)") }
        return String(decoding: data, as: UTF8.self)
    }
}

public struct PipelineError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
