import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import InfraSightCore
import InfraSightSchema
import Synchronization

/// A ClickHouse server over its HTTP interface (`http://user:pass@host:8123/`, or https).
///
/// The client is URLSession (libcurl on Linux): it ships with the toolchain, so the
/// storage path adds no dependency and no build time, and a batch insert is one large
/// request every ~second per table, where the server's parsing, not the client, sets the
/// pace (see docs/performance.md).
///
/// Inserts are RowBinary with an explicit column list, gzip-compressed above 64 KiB. The
/// server's `version()` decides what it can hold: DateTime64 (20.1+) else DateTime, JSON
/// (24.8+) else String; from 22.2 every batch carries `insert_deduplication_token` and new
/// tables get `non_replicated_deduplication_window`, so a retried batch is stored once.
///
/// Several URLs (comma-separated: the nodes of one cluster): requests go to the first; when
/// the node in use cannot be reached (or answers that it is unavailable) the next one is
/// asked at once, and used from then on. While on another node, the first is asked
/// `SELECT 1` (2 s at most) once a minute, and used again once it answers — so servers that
/// list their own node first go back to it after an outage instead of piling onto the
/// others. The nodes are expected to hold the same tables (a cluster's Distributed
/// tables), so any of them can take any insert or query.
public final class HTTPStore: EventStore, Sendable {
    struct Endpoint: Sendable {
        let url: URL
        let user: String?
        let password: String?
    }
    let endpoints: [Endpoint]
    private let current = Atomic<Int>(0)
    /// Requests that went to another node because the one in use was unavailable.
    public let failovers = Atomic<UInt64>(0)
    /// When the first node was last asked whether it is back (monotonic seconds).
    private let firstNodeChecked = Mutex<Double>(0)
    /// Seconds between those checks.
    var firstNodeCheckInterval: Double {
        get { settings.withLock { $0.firstNodeCheckInterval } }
        set { settings.withLock { $0.firstNodeCheckInterval = newValue } }
    }
    /// What may be changed after `init`.
    private struct Settings {
        var firstNodeCheckInterval = 60.0
        var insertSettings: [String: String] = [:]
        var version: (major: Int, minor: Int) = (0, 0)
        var versionText = ""
        /// The server's function lists, read once.
        var functions: FunctionGuard?
    }
    private let settings = Mutex(Settings())
    /// How many nodes the URL names.
    public var nodeCount: Int { endpoints.count }
    /// The node requests go to now.
    public var endpoint: URL { endpoints[current.load(ordering: .relaxed)].url }
    /// Settings every insert carries as URL parameters (e.g. `insert_distributed_sync`).
    public var insertSettings: [String: String] {
        get { settings.withLock { $0.insertSettings } }
        set { settings.withLock { $0.insertSettings = newValue } }
    }
    /// How long rows are kept: applied by `prepare` as TTL (19.6 and later) or as hourly
    /// deletes of expired rows (before).
    public let retention = StoreRetention()
    /// How much disk it may use: kept by dropping the oldest parts, or day partitions
    /// before 20.12 (`storage.max_disk`).
    public let budget = StoreBudget()
    let session: URLSession
    public var version: (major: Int, minor: Int) { settings.withLock { $0.version } }
    private let challenges = ChallengeRefusal()
    public var versionText: String { settings.withLock { $0.versionText } }

    /// Parses the URL (or URLs, comma-separated) and asks the server its version (one
    /// round trip).
    /// Limits sent with every statement from outside the program.
    public let limits: QueryLimits

    public init(url: String, timeout: TimeInterval = 30, limits: QueryLimits = QueryLimits()) throws(StorageError) {
        self.limits = limits
        var endpoints: [Endpoint] = []
        for text in Self.split(url) {
            guard var components = URLComponents(string: text), let scheme = components.scheme, ["http", "https"].contains(scheme),
                components.host?.isEmpty == false
            else {
                throw StorageError("--clickhouse-url must look like http://user:password@host:8123/ (got \(Self.redacted(text)))")
            }
            let user = components.user?.removingPercentEncoding
            let password = components.password?.removingPercentEncoding
            components.user = nil
            components.password = nil
            if components.path.isEmpty { components.path = "/" }
            components.query = nil
            endpoints.append(Endpoint(url: components.url!, user: user, password: password))
        }
        self.endpoints = endpoints
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = timeout * 4
        session = URLSession(configuration: configuration, delegate: challenges, delegateQueue: nil)
        let text = String(decoding: try send(sql: "SELECT version()", body: nil, parameters: [:]), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = text.split(separator: ".").compactMap { Int($0) }
        guard parts.count >= 2 else { throw StorageError("ClickHouse at \(endpoint) answered version() with '\(text)'") }
        settings.withLock {
            $0.versionText = text
            $0.version = (parts[0], parts[1])
        }
        budget.store = self
    }

    /// Several URLs separated by commas: a comma starts a new URL only where `http://` or
    /// `https://` follows (a password may hold a comma).
    static func split(_ text: String) -> [String] {
        var parts: [String] = []
        for piece in text.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = piece.trimmingCharacters(in: .whitespaces)
            if parts.isEmpty || trimmed.hasPrefix("http://") || trimmed.hasPrefix("https://") {
                parts.append(trimmed)
            } else {
                parts[parts.count - 1] += "," + piece
            }
        }
        return parts
    }

    /// The URL without its password, for messages.
    static func redacted(_ url: String) -> String {
        guard var c = URLComponents(string: url) else {
            // Unparseable: whatever sits between "//" and the last "@" may be credentials,
            // and a query may hold a password; neither is shown.
            var text = url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            if let scheme = text.range(of: "//"), let at = text.range(of: "@", options: .backwards), scheme.upperBound <= at.lowerBound {
                text.replaceSubrange(scheme.upperBound..<at.lowerBound, with: "***")
            }
            return text + (url.contains("?") ? "?***" : "")
        }
        guard c.password != nil || c.query != nil else { return url }
        if c.password != nil { c.password = "***" }
        if c.query != nil { c.query = "***" }
        return c.string ?? url
    }

    public var summary: String {
        "ClickHouse \(versionText) at \(endpoint)" + (endpoints.count > 1 ? " (of \(endpoints.map(\.url.absoluteString).joined(separator: ", ")))" : "")
    }

    func atLeast(_ major: Int, _ minor: Int) -> Bool { version.major > major || (version.major == major && version.minor >= minor) }
    var supportsDateTime64: Bool { atLeast(20, 1) }
    var supportsJSON: Bool { atLeast(24, 8) }
    var jsonNeedsExperimentalSetting: Bool { !atLeast(25, 3) }
    var supportsDeduplicationToken: Bool { atLeast(22, 2) }

    /// Whether `ALTER TABLE ... ADD COLUMN` takes `IF NOT EXISTS` (19.1+).
    var supportsAddColumnIfNotExists: Bool { atLeast(19, 1) }
    /// Table TTL (19.6).
    public var supportsTTL: Bool { atLeast(19, 6) }

    /// The table with the types this server has: DateTime for DateTime64 before 20.1,
    /// String for JSON before 24.8.
    public func holding(_ table: TableSchema) -> TableSchema {
        table.mappingTypes { type in
            func map(_ t: ColumnType) -> ColumnType {
                switch t {
                case .dateTime64 where !supportsDateTime64: return .dateTime
                case .json where !supportsJSON: return .string
                case .nullable(let inner): return .nullable(map(inner))
                default: return t
                }
            }
            return map(type)
        }
    }

    /// The table as this server can hold it: `holding`, and the deduplication window
    /// where inserts carry a deduplication token.
    public func serverSchema(_ table: TableSchema) -> TableSchema {
        let mapped = holding(table)
        return supportsDeduplicationToken ? mapped.withDeduplicationWindow : mapped
    }

    /// The settings a statement creating or adding `columns` needs (JSON before 25.3).
    func ddlParameters(_ columns: [Column]) -> [String: String] {
        guard supportsJSON && jsonNeedsExperimentalSetting && columns.contains(where: { $0.type.base == .json }) else { return [:] }
        return ["allow_experimental_json_type": "1"]
    }

    public func prepare(_ tables: [TableSchema], migrated: (TableMigration) -> Void) throws(PrepareError) -> [TableSchema] {
        let prepared = tables.map { budget.creating(serverSchema($0)) }
        do {
            for db in Set(tables.compactMap(\.database)).sorted() {
                _ = try send(sql: "CREATE DATABASE IF NOT EXISTS `\(db)`", body: nil, parameters: [:])
            }
            for t in prepared { _ = try send(sql: t.statement, body: nil, parameters: ddlParameters(t.columns)) }
        } catch {
            throw .store(error)
        }
        for t in prepared {
            if let migration = try migrate(t, onCluster: nil) { migrated(migration) }
            // Codecs (ColumnCodecs) where system.columns says them (20.1 and later here).
            if supportsDateTime64, let line = try ColumnCodecs.apply(
                t, read: { (sql: String) throws(StorageError) -> Data in try send(sql: sql, body: nil, parameters: ["default_format": "TabSeparated"]) },
                alter: { (sql: String) throws(StorageError) in _ = try send(sql: sql, body: nil, parameters: ddlParameters(t.columns)) })
            {
                retention.notice(line)
            }
        }
        try applyRetention(prepared, targets: nil, cluster: nil)
        budget.register(prepared)
        return prepared
    }

    /// Brings `tables` (their rows held by `targets` when given, ON CLUSTER `cluster`) to
    /// the retention policy: TTL, or registered with the sweeper where there is none.
    func applyRetention(_ tables: [TableSchema], targets: [TableSchema]?, cluster: String?) throws(PrepareError) {
        if supportsTTL {
            try retention.apply(tables, targets: targets, cluster: cluster,
                                read: { (sql: String) throws(StorageError) -> Data in try send(sql: sql, body: nil, parameters: ["default_format": "TabSeparated"]) },
                                alter: { (sql: String) throws(StorageError) in _ = try send(sql: sql, body: nil, parameters: [:]) })
        } else {
            retention.sweep(
                tables, targets: targets, cluster: cluster,
                partitioned: { [unowned self] t in
                    guard let column = RetentionPolicy.timeColumn(of: t),
                        let key = try? budgetQuery("SELECT partition_key FROM system.tables WHERE database = \(sqlStringLiteral(t.database ?? "default")) AND name = \(sqlStringLiteral(t.name))")
                    else { return false }
                    return key.trimmingCharacters(in: .whitespacesAndNewlines) == "toDate(\(column))"
                },
                // Strong: a sweep runs on the sweeper's own queue and may outlive its
                // caller's last use of the store (an ON CLUSTER delete waits for every
                // node); an unowned store freed under it crashed the test process.
                run: { sql in _ = try self.send(sql: sql, body: nil, parameters: [:]) },
                read: { sql in try self.budgetQuery(sql) })
        }
    }

    /// `TableMigration.apply` with what this server understands: no `IF NOT EXISTS`
    /// before 19.1, the JSON setting where it is needed.
    public func migrate(_ table: TableSchema, onCluster cluster: String?) throws(PrepareError) -> TableMigration? {
        try TableMigration.apply(
            table, cluster: cluster, ifNotExists: supportsAddColumnIfNotExists,
            read: { (sql: String) throws(StorageError) -> Data in try send(sql: sql, body: nil, parameters: ["default_format": "TabSeparated"]) },
            alter: { (sql: String) throws(StorageError) in _ = try send(sql: sql, body: nil, parameters: ddlParameters(table.columns)) })
    }

    public func insert(_ batch: Batch) throws(StorageError) {
        var parameters: [String: String] = [:]
        if supportsJSON { parameters["input_format_binary_read_json_as_string"] = "1" }
        if supportsDeduplicationToken { parameters["insert_deduplication_token"] = batch.id }
        parameters.merge(insertSettings) { _, setting in setting }
        _ = try send(sql: "INSERT INTO \(batch.table.qualifiedName) \(batch.table.columnList) FORMAT RowBinary", body: batch.bytes, parameters: parameters)
    }

    public func query(_ text: String, format: String) throws(StorageError) -> Data {
        let q = UserQuery(text)
        return try send(sql: q.sql, body: nil, parameters: ["default_format": q.format ?? format])
    }

    /// The statement under `readonly=1` and the limits of `QueryLimits`, all URL settings
    /// of the same request: the server applies them before the statement, which then can
    /// change none of them (measured on 18.16: `SETTINGS max_result_rows = ...` in the
    /// statement is refused, "Cannot execute SET query in readonly mode"), and refuses
    /// writes, DDL and table functions ("Table functions are forbidden in readonly mode").
    /// The format travels as a `FORMAT` clause, its name checked by `ReadOnlyQuery`. On a
    /// server that has `EXPLAIN` (20.6 and later) `FunctionGuard` first checks the
    /// server's own parse of the statement. The HTTP user must be allowed to set
    /// `readonly` (a user whose profile is already readonly = 1 is not: ClickHouse refuses
    /// to modify it).
    public func readOnlyQuery(_ query: ReadOnlyQuery) throws(StorageError) -> Data {
        // Query parameters as `param_<name>` URL arguments (ClickHouse 19.3 and later),
        // in the escaped text form the server reads them in. An older server takes them for
        // unknown settings; say what is missing instead.
        if !query.parameters.isEmpty && !atLeast(19, 3) {
            throw StorageError("refused: ClickHouse \(versionText) cannot bind query parameters (19.3 and later can): the catalog's queries need them; plain SQL still runs")
        }
        var arguments = ["readonly": "1"]
        for setting in limits.settings { arguments[setting.name] = setting.value }
        for (name, value) in query.parameters { arguments["param_" + name] = ReadOnlyQuery.escapedParameter(value) }
        if let functions = try functionGuard() {
            let ast = try send(sql: "EXPLAIN AST\n\(query.sql)\nFORMAT TSVRaw", body: nil, parameters: arguments)
            try functions.check(ast: String(decoding: ast, as: UTF8.self))
        }
        guard let cancellation = query.cancellation else {
            return try send(sql: "\(query.sql)\nFORMAT \(query.format)", body: nil, parameters: arguments)
        }
        // A query id of its own, so an abandoned statement can be stopped by it.
        let id = "infrasight-\(UUID().uuidString)"
        arguments["query_id"] = id
        return try cancellation.whileRunning(stop: { [self] in
            do {
                _ = try send(sql: "KILL QUERY WHERE query_id = \(sqlStringLiteral(id)) ASYNC", body: nil, parameters: [:])
            } catch {
                FileHandle.standardError.write(Data("infrasight: warning: cannot stop an abandoned query: \(error)\n".utf8))
            }
        }) { () throws(StorageError) in
            try send(sql: "\(query.sql)\nFORMAT \(query.format)", body: nil, parameters: arguments)
        }
    }


    /// The server's function lists, read once; nil on a server without `EXPLAIN` (before
    /// 20.6), where `readonly = 1` refuses every table function and no scalar function
    /// reads files (`file()` as a scalar arrived in 21.x).
    func functionGuard() throws(StorageError) -> FunctionGuard? {
        guard atLeast(20, 6) else { return nil }
        if let functions = settings.withLock({ $0.functions }) { return functions }
        func rows(_ sql: String) throws(StorageError) -> [[String]] {
            let text = String(decoding: try send(sql: "\(sql)\nFORMAT TSVRaw", body: nil, parameters: ["readonly": "1"]), as: UTF8.self)
            return text.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        }
        let columns = Set(try rows("SELECT name FROM system.columns WHERE database = 'system' AND table = 'functions'").compactMap(\.first))
        let made = try FunctionGuard(
            catalogRows: try rows(FunctionGuard.catalogSQL(origin: columns.contains("origin"), aliasTo: columns.contains("alias_to"))),
            combinators: try rows(FunctionGuard.combinatorsSQL),
            tableFunctions: try rows(FunctionGuard.tableFunctionsSQL))
        settings.withLock { $0.functions = made }
        return made
    }

    /// One request, to the node in use; when it is unavailable, to each other node in turn
    /// (the first that answers is used from then on).
    func send(sql: String, body: Data?, parameters: [String: String]) throws(StorageError) -> Data {
        returnToFirstNodeIfBack()
        let start = current.load(ordering: .relaxed)
        var step = 0
        while true {
            let index = (start + step) % endpoints.count
            do {
                let data = try send(to: endpoints[index], sql: sql, body: body, parameters: parameters)
                if step > 0 {
                    current.store(index, ordering: .relaxed)
                    failovers.add(1, ordering: .relaxed)
                    firstNodeChecked.withLock { $0 = MonotonicClock.seconds() }
                }
                return data
            } catch {
                step += 1
                guard error.retryable, step < endpoints.count else { throw error }
            }
        }
    }

    /// While on another node than the first, at most once per `firstNodeCheckInterval`:
    /// `SELECT 1` to the first (2 s at most), and back to it when it answers.
    private func returnToFirstNodeIfBack() {
        guard current.load(ordering: .relaxed) != 0 else { return }
        let now = MonotonicClock.seconds()
        let due = firstNodeChecked.withLock { last in
            guard now - last >= firstNodeCheckInterval else { return false }
            last = now
            return true
        }
        guard due else { return }
        // A failed probe only means "not back yet": the node in use goes on serving.
        if (try? send(to: endpoints[0], sql: "SELECT 1", body: nil, parameters: [:], timeout: 2)) != nil {
            current.store(0, ordering: .relaxed)
            failovers.add(1, ordering: .relaxed)
        }
    }

    /// One request to one node: the SQL in the URL when there is a body, else as the body.
    /// `timeout`: seconds for this request instead of the session's.
    func send(to node: Endpoint, sql: String, body: Data?, parameters: [String: String], timeout: Double? = nil) throws(StorageError) -> Data {
        let (endpoint, user, password) = (node.url, node.user, node.password)
        var components = URLComponents(url: endpoint, resolvingAgainstBaseURL: false)!
        var items = parameters.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
        if body != nil { items.insert(URLQueryItem(name: "query", value: sql), at: 0) }
        components.queryItems = items.isEmpty ? nil : items
        var request = URLRequest(url: components.url!)
        request.httpMethod = "POST"
        if let timeout { request.timeoutInterval = timeout }
        if let user {
            let token = Data("\(user):\(password ?? "")".utf8).base64EncodedString()
            request.setValue("Basic \(token)", forHTTPHeaderField: "Authorization")
        }
        var payload = body ?? Data(sql.utf8)
        if payload.count > 64 * 1024, let compressed = Gzip.compress(payload) {
            payload = compressed
            request.setValue("gzip", forHTTPHeaderField: "Content-Encoding")
        }
        request.httpBody = payload

        let done = DispatchSemaphore(value: 0)
        let answer = Mutex<(data: Data?, response: HTTPURLResponse?, error: String?)>((nil, nil, nil))
        let task = session.dataTask(with: request) { data, response, error in
            answer.withLock { $0 = (data, response as? HTTPURLResponse, error?.localizedDescription) }
            done.signal()
        }
        task.resume()
        done.wait()
        let result = answer.withLock { $0 }

        if challenges.wasChallenged(task.taskIdentifier) {
            throw .unauthorized("ClickHouse at \(endpoint) refused the credentials\(user.map { " for user \($0)" } ?? ""): HTTP 401")
        }
        if let error = result.error {
            throw .unavailable("cannot reach ClickHouse at \(endpoint): \(error)")
        }
        let status = result.response?.statusCode ?? 0
        let data = result.data ?? Data()
        guard status == 200 else {
            let message = String(decoding: data.prefix(2000), as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "HTTP \(status)"
            let code = StorageError.leadingCode(message).map(ClickHouseCode.init(rawValue:))
            // Refused credentials, and anything the server refuses as a request error,
            // will not get better by retrying.
            if code.map(ClickHouseCode.credentials.contains) == true || status == 401 || status == 403 {
                throw .unauthorized("ClickHouse at \(endpoint) refused the credentials\(user.map { " for user \($0)" } ?? ""): \(message)")
            }
            if StorageError.saysNoSpace(message) {
                throw .noSpace("ClickHouse at \(endpoint): \(message)")
            }
            if status >= 500 && code.map(ClickHouseCode.refusedRequest.contains) != true {
                throw .unavailable("ClickHouse at \(endpoint): \(message)")
            }
            if let code { throw .refused(code: code, message: "ClickHouse at \(endpoint): \(message)") }
            throw StorageError("ClickHouse at \(endpoint): \(message)")
        }
        return data
    }

}

extension HTTPStore: BudgetedStore {
    public var diskBudget: StoreBudget? { budget }

    func budgetQuery(_ sql: String) throws(StorageError) -> String {
        String(decoding: try send(sql: sql, body: nil, parameters: ["default_format": "TabSeparated"]), as: UTF8.self)
    }

    /// The default disk's, from `system.disks` (19.15 and later); nil before.
    func fileSystem() throws(StorageError) -> (used: Int64, total: Int64)? {
        guard atLeast(19, 15) else { return nil }
        let f = try budgetQuery("SELECT free_space, total_space FROM system.disks WHERE name = 'default'")
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\t")
        guard f.count == 2, let free = Int64(f[0]), let total = Int64(f[1]), total > 0 else { return nil }
        return (total - free, total)
    }

    var dropsParts: Bool { atLeast(20, 12) }
    var keepsInactiveParts: Bool { true }
}

/// Answers HTTP authentication challenges by cancelling: the credentials were already sent
/// in the request, so a challenge means they were refused. (Left unanswered, libcurl-based
/// URLSession on Linux was seen to never complete the task.)
final class ChallengeRefusal: NSObject, URLSessionTaskDelegate, Sendable {
    private let challenged = Mutex(Set<Int>())

    func urlSession(_ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
                    completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        challenged.withLock { _ = $0.insert(task.taskIdentifier) }
        completionHandler(.cancelAuthenticationChallenge, nil)
    }

    func wasChallenged(_ taskIdentifier: Int) -> Bool {
        challenged.withLock { $0.remove(taskIdentifier) != nil }
    }
}
