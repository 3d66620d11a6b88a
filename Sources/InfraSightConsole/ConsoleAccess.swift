import Foundation
import Glibc
import InfraSightCore
import Synchronization

/// Who may use the console, decided on each request's head before any of its body is read.
///
/// - There is always a token (configured, or generated at first start: `newSecret`).
///   TLS encrypts; it does not say who is asking, so it never stands in for the token.
/// - A request carries the token as `Authorization: Bearer TOKEN`, or logs in once with
///   `GET /?token=TOKEN`: that starts a session and sets the `infrasight_session` cookie
///   to the session's random id (HttpOnly, SameSite=Strict, Secure under TLS), never the
///   token, before redirecting to a URL without it. Sessions last `sessionLifetime`; at
///   most `maxSessions` are kept (the oldest ends first).
/// - Wrong tokens are rate-limited per address (an IPv6 address by its /64): past
///   `maxFailuresPerAddress` within `failureWindow` seconds, every attempt from that
///   address that presents a token is answered 429 until the window ends (sessions
///   already open go on working). Only that address waits: there is no limit for all,
///   which anyone with many addresses could use to lock the token's holder out. Guessing
///   from many addresses is what the token's length is for (at least 16 bytes; a
///   generated one is 32 random bytes).
/// - `POST` needs the `X-InfraSight: 1` header, which a form on another site cannot send
///   without the browser asking first (and nothing here answers that ask), so no other
///   site can make a logged-in browser post a statement.
/// Thread-safe.
public final class ConsoleAccess: Sendable {
    public static let cookieName = "infrasight_session"
    public static let sessionLifetime: Double = 12 * 3600
    public static let maxSessions = 1024
    public static let failureWindow: Double = 60
    public static let maxFailuresPerAddress = 10
    /// Addresses remembered per window; past it the oldest window's entries are dropped.
    public static let maxAddresses = 10_000

    let token: String
    let secure: Bool
    /// Session id → when it ends (monotonic seconds).
    private let sessions = Mutex<[String: Double]>([:])
    private let failures = Mutex<Failures>(Failures())
    let clock: @Sendable () -> Double

    struct Failures {
        var windowStart: Double = 0
        var byAddress: [String: Int] = [:]
    }

    public init(token: String, secure: Bool, clock: @escaping @Sendable () -> Double = { MonotonicClock.seconds() }) {
        self.token = token
        self.secure = secure
        self.clock = clock
    }

    public enum Decision: Equatable, Sendable {
        case allow
        /// Log in: set the cookie and redirect to `location`.
        case login(cookie: String, location: String)
        case refuse(status: Int, reason: String)
    }

    /// The decision for one request head from `address` (the peer's IP, for rate limits).
    public func check(method: String, path: String, query: [String: String], headers: [(String, String)], address: String) -> Decision {
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        if method == "POST", header("x-infrasight") != "1" {
            return .refuse(status: 403, reason: "a POST needs the X-InfraSight: 1 header")
        }
        if let given = query["token"], path == "/" {
            if let limited = rateLimited(address) { return limited }
            guard constantTimeEqual(given, token) else { return failed(address) }
            let flags = "HttpOnly; SameSite=Strict; Path=/; Max-Age=\(Int(Self.sessionLifetime))" + (secure ? "; Secure" : "")
            return .login(cookie: "\(Self.cookieName)=\(startSession()); \(flags)", location: "/")
        }
        if let authorization = header("authorization") {
            guard authorization.hasPrefix("Bearer ") else { return .refuse(status: 401, reason: "only Authorization: Bearer TOKEN is accepted") }
            if let limited = rateLimited(address) { return limited }
            guard constantTimeEqual(String(authorization.dropFirst("Bearer ".count)), token) else { return failed(address) }
            return .allow
        }
        for cookie in (header("cookie") ?? "").split(separator: ";") {
            let pair = cookie.trimmingCharacters(in: .whitespaces)
            if pair.hasPrefix(Self.cookieName + "="), isSession(String(pair.dropFirst(Self.cookieName.count + 1))) { return .allow }
        }
        return .refuse(status: 401, reason: "log in: open /?token=TOKEN once (the token is in the file the console named when it started), or send Authorization: Bearer TOKEN")
    }

    /// A new secret, for a session id or a generated token: 32 random bytes, hex.
    public static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// Starts a session and returns its id (`newSecret`).
    func startSession() -> String {
        let id = Self.newSecret()
        let now = clock()
        sessions.withLock { s in
            s = s.filter { $0.value > now }
            if s.count >= Self.maxSessions, let oldest = s.min(by: { $0.value < $1.value })?.key { s[oldest] = nil }
            s[id] = now + Self.sessionLifetime
        }
        return id
    }

    func isSession(_ id: String) -> Bool {
        let now = clock()
        return sessions.withLock { s in
            guard let end = s[id] else { return false }
            guard end > now else {
                s[id] = nil
                return false
            }
            return true
        }
    }

    /// 429 while `address` is over the limit of wrong tokens in this window.
    func rateLimited(_ address: String) -> Decision? {
        let now = clock()
        let key = Self.key(address)
        return failures.withLock { f -> Decision? in
            if now - f.windowStart >= Self.failureWindow { f = Failures(windowStart: now) }
            if f.byAddress[key, default: 0] >= Self.maxFailuresPerAddress {
                return .refuse(status: 429, reason: "too many wrong tokens from this address; try again in \(Int(Self.failureWindow - (now - f.windowStart)) + 1) s")
            }
            return nil
        }
    }

    func failed(_ address: String) -> Decision {
        let key = Self.key(address)
        failures.withLock { f in
            // Bounded: a flood of addresses starts the window afresh rather than grow it.
            if f.byAddress.count >= Self.maxAddresses && f.byAddress[key] == nil { f.byAddress = [:] }
            f.byAddress[key, default: 0] += 1
        }
        return .refuse(status: 401, reason: "wrong token")
    }

    /// An IPv4 address as it is; an IPv6 address by its first 64 bits (one host usually
    /// holds a whole /64).
    static func key(_ address: String) -> String {
        var v6 = in6_addr()
        guard address.contains(":"), inet_pton(AF_INET6, address, &v6) == 1 else { return address }
        return withUnsafeBytes(of: &v6) { $0.prefix(8).map { String(format: "%02x", $0) }.joined() } + "/64"
    }
}
