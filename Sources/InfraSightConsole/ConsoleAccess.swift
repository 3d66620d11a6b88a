import Foundation
import InfraSightCore

/// Who may use the console, checked on every request before anything else is read.
///
/// - With a token: the request carries it, as `Authorization: Bearer TOKEN` or in the
///   `infrasight_console` cookie that `GET /?token=TOKEN` sets (HttpOnly, SameSite=Strict,
///   Secure under TLS) before redirecting to a URL without it.
/// - Without a token (loopback only, the command refuses more): the `Host` header must name
///   loopback or the address listened on, so a web page elsewhere cannot reach the console
///   through a DNS name it re-points at 127.0.0.1 (DNS rebinding).
/// - `POST` needs the `X-InfraSight: 1` header, which a form on another site cannot send
///   without the browser asking first (and nothing here answers that ask), so no other
///   site can make a logged-in browser post a statement.
public struct ConsoleAccess: Sendable {
    public static let cookieName = "infrasight_console"
    let token: String?
    let listenHost: String
    let secure: Bool

    public init(token: String?, listenHost: String, secure: Bool) {
        self.token = token
        self.listenHost = listenHost
        self.secure = secure
    }

    public enum Decision: Equatable, Sendable {
        case allow
        /// Log in: set the cookie and redirect to `location`.
        case login(cookie: String, location: String)
        case refuse(status: Int, reason: String)
    }

    public func check(method: String, path: String, query: [String: String], headers: [(String, String)]) -> Decision {
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        if method == "POST", header("x-infrasight") != "1" {
            return .refuse(status: 403, reason: "a POST needs the X-InfraSight: 1 header")
        }
        guard let token else {
            guard let host = header("host"), Self.isLocal(Self.hostPart(host), listenHost: listenHost) else {
                return .refuse(status: 403, reason: "the Host header must name this machine's loopback address")
            }
            return .allow
        }
        if let given = query["token"], path == "/" {
            guard constantTimeEqual(given, token) else { return .refuse(status: 401, reason: "wrong token") }
            let flags = "HttpOnly; SameSite=Strict; Path=/" + (secure ? "; Secure" : "")
            return .login(cookie: "\(Self.cookieName)=\(token); \(flags)", location: "/")
        }
        if let authorization = header("authorization"), authorization.hasPrefix("Bearer "),
            constantTimeEqual(String(authorization.dropFirst("Bearer ".count)), token)
        {
            return .allow
        }
        for cookie in (header("cookie") ?? "").split(separator: ";") {
            let pair = cookie.trimmingCharacters(in: .whitespaces)
            if pair.hasPrefix(Self.cookieName + "="), constantTimeEqual(String(pair.dropFirst(Self.cookieName.count + 1)), token) { return .allow }
        }
        return .refuse(status: 401, reason: "log in: open /?token=TOKEN once, or send Authorization: Bearer TOKEN")
    }

    /// "127.0.0.1:8080" → "127.0.0.1", "[::1]:8080" → "::1", "localhost" → "localhost".
    static func hostPart(_ host: String) -> String {
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") { return String(host[host.index(after: host.startIndex)..<close]) }
        if let colon = host.lastIndex(of: ":"), host.firstIndex(of: ":") == colon { return String(host[..<colon]) }
        return host
    }

    /// Loopback (host names are case-insensitive) or the address listened on.
    static func isLocal(_ host: String, listenHost: String) -> Bool {
        let lower = host.lowercased()
        return lower == listenHost.lowercased() || isLoopback(lower)
    }
}
