import Foundation
import InfraSightCatalog
import InfraSightStorage

/// What the console answers, independent of HTTP plumbing: a request's method, path,
/// query and body in; status, content type and body out.
///
/// - `GET /` and the pages' assets (`web/`, embedded in the binary).
/// - `GET /api/catalog`: the catalog (name, title, shows, parameters) as JSON.
/// - `GET /api/query/NAME?param=value...`: a catalog query with the URL's parameters bound
///   by ClickHouse (`QueryCatalog.bind`), answered in ClickHouse's `JSON` format.
/// - `POST /api/sql` (body: one statement): checked by `ReadOnlyQuery` and run with the
///   engine's `readonly = 1`, the query socket's path; `JSON` format unless it says another.
/// - `GET /api/status`: this process's own counters (rates, drops) as JSON.
///
/// A store error is answered 400 with `{"error": "..."}`: the statement is the user's own
/// (or a catalog query with their parameters), so its error is theirs to read.
public struct ConsoleAPI: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: Data
    }

    /// One counter or level of this process, for `/api/status`.
    public struct Counter: Sendable {
        public let name: String
        public let labels: [String: String]
        public let value: Double
        public init(name: String, labels: [String: String], value: Double) {
            self.name = name
            self.labels = labels
            self.value = value
        }
    }

    let store: EventStore
    let catalog: QueryCatalog
    let status: @Sendable () -> [Counter]
    let started = Date()
    /// A result larger than this is refused (the page would not show it anyway).
    public static let maxResultBytes = 32 << 20

    public init(store: EventStore, catalog: QueryCatalog = .builtIn, status: @escaping @Sendable () -> [Counter]) {
        self.store = store
        self.catalog = catalog
        self.status = status
    }

    static let assetTypes = ["html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml"]

    /// The answer to one request; `cancellation` stops its store query when the asker goes away.
    public func respond(method: String, path: String, query: [String: String], body: Data, cancellation: QueryCancellation? = nil) -> Response {
        switch (method, path) {
        case ("GET", "/"), ("HEAD", "/"):
            return asset("index.html")
        case ("GET", "/api/catalog"):
            return json(catalog.queries.map(\.jsonObject))
        case ("GET", "/api/status"):
            return json([
                "uptime_seconds": Date().timeIntervalSince(started),
                "store": store.summary,
                "counters": status().map { ["name": $0.name, "labels": $0.labels, "value": $0.value] as [String: Any] },
            ] as [String: Any])
        case ("POST", "/api/sql"):
            let text = String(decoding: body, as: UTF8.self)
            return run(cancellation) { () throws(StorageError) in try ReadOnlyQuery(text, format: "JSON") }
        case ("GET", _) where path.hasPrefix("/api/query/"):
            let name = String(path.dropFirst("/api/query/".count))
            return run(cancellation) { () throws(StorageError) in try catalog.bind(name, query, format: "JSON") }
        case ("GET", _) where !path.hasPrefix("/api/"):
            return asset(String(path.dropFirst()))
        case (_, _) where path.hasPrefix("/api/") || path == "/":
            return error(405, "\(method) is not answered here")
        default:
            return error(404, "no such page")
        }
    }

    func run(_ cancellation: QueryCancellation?, _ make: () throws(StorageError) -> ReadOnlyQuery) -> Response {
        do {
            var query = try make()
            query.cancellation = cancellation
            let output = try store.readOnlyQuery(query)
            guard output.count <= Self.maxResultBytes else {
                return error(400, "the result is larger than \(Self.maxResultBytes >> 20) MiB; narrow it (LIMIT, fewer columns)")
            }
            let type = query.format.hasPrefix("JSON") ? "application/json" : "text/plain; charset=utf-8"
            return Response(status: 200, contentType: type, body: output)
        } catch {
            return self.error(400, error.description)
        }
    }

    /// Only names of the embedded `web/` files are looked up, so a path cannot reach the disk.
    func asset(_ name: String) -> Response {
        guard let text = EmbeddedAssets.files["web/" + name], let ext = name.split(separator: ".").last, let type = Self.assetTypes[String(ext)] else {
            return error(404, "no such page")
        }
        return Response(status: 200, contentType: type, body: Data(text.utf8))
    }

    func json(_ object: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: 200, contentType: "application/json", body: data)
    }

    func error(_ status: Int, _ message: String) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: ["error": message])) ?? Data()
        return Response(status: status, contentType: "application/json", body: data)
    }
}
