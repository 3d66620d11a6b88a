import Foundation
import InfraSightSchema
import InfraSightStorage

/// One named query of the catalog: a `queries/<name>.sql` file whose header says what it
/// shows and which parameters it takes, then one SELECT whose placeholders are ClickHouse
/// query parameters (`{node:String}`), bound by the engine, never pasted into the SQL.
///
/// Header lines, before the SQL, each `-- key: value`:
/// - `title:` a few words (required);
/// - `shows:` what it answers, for whom (repeatable: lines are joined);
/// - `param: NAME TYPE [= DEFAULT] [-- what it is]` one per placeholder, in any order. A
///   parameter without a default is required. TYPE is the placeholder's ClickHouse type.
/// - `grafana: DASHBOARD PANELTYPE [ORDER]` a panel on a Grafana dashboard, or
///   `grafana: variable NAME` the query of a dashboard variable (repeatable;
///   `GrafanaDashboards`).
///
/// Every `{name:Type}` in the SQL must be declared with the same type, and every declared
/// parameter used (`QueryCatalog.init` refuses the file otherwise).
public struct CatalogQuery: Sendable, Equatable {
    public struct Parameter: Sendable, Equatable {
        public let name: String
        public let type: String
        /// nil: the caller must give a value.
        public let defaultValue: String?
        public let about: String
    }

    public let name: String
    public let title: String
    public let shows: String
    public let parameters: [Parameter]
    /// The `grafana:` header lines, verbatim.
    public let grafana: [String]
    /// The statement, header removed.
    public let sql: String

    /// The entry as the console's `/api/catalog` and `queries list --json` show it: name,
    /// title, shows, parameters (name, type, default or null, about).
    public var jsonObject: [String: Any] {
        [
            "name": name, "title": title, "shows": shows,
            "parameters": parameters.map { ["name": $0.name, "type": $0.type, "default": $0.defaultValue as Any? ?? NSNull(), "about": $0.about] },
        ]
    }

    /// The placeholders of `sql` in order of appearance: (name, type, range in `sql`).
    public var placeholders: [(name: String, type: String, range: Range<String.Index>)] {
        Self.placeholders(in: sql)
    }

    static func placeholders(in sql: String) -> [(name: String, type: String, range: Range<String.Index>)] {
        var out: [(String, String, Range<String.Index>)] = []
        var index = sql.startIndex
        while let open = sql[index...].firstIndex(of: "{") {
            guard let close = sql[open...].firstIndex(of: "}") else { break }
            let inner = sql[sql.index(after: open)..<close]
            if let colon = inner.firstIndex(of: ":") {
                let name = inner[..<colon].trimmingCharacters(in: .whitespaces)
                let type = inner[inner.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if ReadOnlyQuery.isParameterName(name), !type.isEmpty {
                    out.append((name, type, open..<sql.index(after: close)))
                }
            }
            index = sql.index(after: open)
        }
        return out
    }
}

/// A catalog file that cannot be used, with the file and the reason.
public struct CatalogError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The named queries the console and the Grafana dashboards are made of.
///
/// `QueryCatalog.builtIn` is the catalog built into the binary from `queries/*.sql`
/// (repository root: a link to `Sources/InfraSightCatalog/queries`).
public struct QueryCatalog: Sendable {
    public let queries: [CatalogQuery]

    /// The catalog compiled into this binary. The files are checked by the tests, so a
    /// failure here is a build that should not have shipped.
    public static let builtIn: QueryCatalog = {
        let files = EmbeddedAssets.files.filter { $0.key.hasPrefix("queries/") && $0.key.hasSuffix(".sql") }
        do {
            return try QueryCatalog(files: files.map { (String($0.key.dropFirst("queries/".count).dropLast(4)), $0.value) })
        } catch {
            fatalError("the built-in query catalog is broken: \(error)")
        }
    }()

    /// Parses `(name, text)` pairs; throws on the first file that is not a valid entry.
    public init(files: [(name: String, text: String)]) throws(CatalogError) {
        queries = try files.sorted { $0.name < $1.name }.map { file throws(CatalogError) in try Self.parse(name: file.name, text: file.text) }
    }

    public func query(named name: String) -> CatalogQuery? { queries.first { $0.name == name } }

    /// The first-party tables the catalog reads, from the plugins' own DDL files (linked
    /// into `tables/`). A store fed by only some plugins lacks the others' tables, and a
    /// query over several tables would fail on the missing one: the console creates them
    /// (empty) with `EventStore.prepare`, as `schema apply` would.
    public static let tables: [TableSchema] = EmbeddedAssets.files.filter { $0.key.hasPrefix("tables/") }.sorted { $0.key < $1.key }.map { file in
        do {
            return try TableSchema(ddl: file.value)
        } catch {
            fatalError("the built-in DDL \(file.key) does not parse: \(error)")
        }
    }

    /// The statement `name` with `values` bound: each declared parameter takes the given
    /// value or its default; a required one missing, or a value for a parameter the query
    /// does not declare, is refused. The engine parses each value as its type.
    public func bind(_ name: String, _ values: [String: String], format: String) throws(StorageError) -> ReadOnlyQuery {
        guard let query = query(named: name) else { throw StorageError("refused: no query named '\(name.prefix(80))' in the catalog") }
        let declared = Set(query.parameters.map(\.name))
        if let unknown = values.keys.sorted().first(where: { !declared.contains($0) }) {
            throw StorageError("refused: \(name) takes no parameter '\(unknown.prefix(80))' (it takes \(query.parameters.map(\.name).joined(separator: ", ")))")
        }
        var bound: [String: String] = [:]
        for parameter in query.parameters {
            guard let value = values[parameter.name] ?? parameter.defaultValue else {
                throw StorageError("refused: \(name) needs a value for \(parameter.name) (\(parameter.type))")
            }
            bound[parameter.name] = value
        }
        return try ReadOnlyQuery(query.sql, format: format, parameters: bound)
    }

    static func parse(name: String, text: String) throws(CatalogError) -> CatalogQuery {
        let file = "queries/\(name).sql"
        guard ReadOnlyQuery.isParameterName(name) else { throw CatalogError("\(file): a query's name is a plain identifier") }
        var title = "", shows: [String] = [], grafana: [String] = []
        var parameters: [CatalogQuery.Parameter] = []
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)[...]
        var lineNumber = 0
        while let line = lines.first, line.hasPrefix("--") {
            lines = lines.dropFirst()
            lineNumber += 1
            let body = line.dropFirst(2).trimmingCharacters(in: .whitespaces)
            guard let colon = body.firstIndex(of: ":") else { continue }
            let key = body[..<colon]
            let value = body[body.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "title": title = value
            case "shows": shows.append(value)
            case "grafana": grafana.append(value)
            case "param": parameters.append(try parseParameter(value, at: "\(file):\(lineNumber)"))
            default: continue
            }
        }
        let sql = lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        guard !title.isEmpty else { throw CatalogError("\(file): no '-- title:' line in the header") }
        guard !sql.isEmpty else { throw CatalogError("\(file): no statement after the header") }
        var declared: [String: String] = [:]
        for p in parameters {
            guard declared.updateValue(p.type, forKey: p.name) == nil else { throw CatalogError("\(file): parameter \(p.name) is declared twice") }
        }
        let used = CatalogQuery.placeholders(in: sql)
        for placeholder in used {
            guard let type = declared[placeholder.name] else {
                throw CatalogError("\(file): {\(placeholder.name):\(placeholder.type)} is not declared in the header")
            }
            guard type == placeholder.type else {
                throw CatalogError("\(file): {\(placeholder.name):\(placeholder.type)} is declared as \(type)")
            }
        }
        if let unused = parameters.first(where: { p in !used.contains { $0.name == p.name } }) {
            throw CatalogError("\(file): parameter \(unused.name) is declared but not used")
        }
        do {
            _ = try ReadOnlyQuery(sql)
        } catch {
            throw CatalogError("\(file): \(error)")
        }
        return CatalogQuery(name: name, title: title, shows: shows.joined(separator: " "), parameters: parameters, grafana: grafana, sql: sql)
    }

    /// `NAME TYPE [= DEFAULT] [-- about]`; DEFAULT is a single-quoted string ('' for empty)
    /// or a bare word.
    static func parseParameter(_ text: String, at place: String) throws(CatalogError) -> CatalogQuery.Parameter {
        var rest = Substring(text)
        var about = ""
        if let dashes = rest.range(of: " -- ") {
            about = rest[dashes.upperBound...].trimmingCharacters(in: .whitespaces)
            rest = rest[..<dashes.lowerBound]
        }
        var defaultValue: String?
        if let equals = rest.firstIndex(of: "=") {
            var value = rest[rest.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("'"), value.hasSuffix("'") { value = String(value.dropFirst().dropLast()) }
            defaultValue = value
            rest = rest[..<equals]
        }
        let words = rest.trimmingCharacters(in: .whitespaces)
        guard let space = words.firstIndex(of: " ") else { throw CatalogError("\(place): a parameter is 'NAME TYPE [= DEFAULT] [-- what]'") }
        let name = String(words[..<space])
        let type = words[space...].trimmingCharacters(in: .whitespaces)
        guard ReadOnlyQuery.isParameterName(name) else { throw CatalogError("\(place): '\(name)' is not a parameter name") }
        return CatalogQuery.Parameter(name: name, type: type, defaultValue: defaultValue, about: about)
    }
}
