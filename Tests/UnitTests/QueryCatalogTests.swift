@testable import InfraSightCatalog
import Testing

/// What makes a catalog file unusable (each refused with the file and the reason), and
/// how a query's SQL becomes a Grafana panel's.
@Suite struct QueryCatalogTests {
    /// The refusal of a catalog made of one file `q` with `text`, or nil.
    func refusal(_ text: String, name: String = "q") -> String? {
        do {
            _ = try QueryCatalog(files: [(name, text)])
            return nil
        } catch {
            return error.description
        }
    }

    static let good = """
        -- title: Opens
        -- shows: files opened.
        -- grafana: files table
        -- param: from DateTime64(3) -- start
        -- param: comm String = '' -- command ('' for all)
        -- param: limit UInt32 = 50
        SELECT filename FROM audit.tracing_events
        WHERE wall_time_ms >= toUnixTimestamp64Milli({from:DateTime64(3)}) AND ({comm:String} = '' OR comm = {comm:String})
        LIMIT {limit:UInt32}
        """

    @Test func aWellFormedFileIsParsedIntoTitleParametersAndSQL() throws {
        let catalog = try QueryCatalog(files: [("q", Self.good)])
        let q = try #require(catalog.query(named: "q"))
        #expect(q.title == "Opens" && q.shows == "files opened." && q.grafana == ["files table"])
        #expect(q.parameters.map(\.name) == ["from", "comm", "limit"])
        #expect(q.parameters.map(\.defaultValue) == [nil, "", "50"])
        #expect(q.sql.hasPrefix("SELECT filename") && q.placeholders.map(\.name) == ["from", "comm", "comm", "limit"])
    }

    @Test func aFileWithoutATitleIsRefused() {
        #expect(refusal(Self.good.replacingOccurrences(of: "-- title: Opens\n", with: "")) == "queries/q.sql: no '-- title:' line in the header")
    }

    @Test func anUndeclaredPlaceholderIsRefused() {
        let text = Self.good.replacingOccurrences(of: "LIMIT {limit:UInt32}", with: "LIMIT {limit:UInt32} OFFSET {skip:UInt32}")
        #expect(refusal(text) == "queries/q.sql: {skip:UInt32} is not declared in the header")
    }

    @Test func aPlaceholderOfAnotherTypeThanDeclaredIsRefused() {
        let text = Self.good.replacingOccurrences(of: "LIMIT {limit:UInt32}", with: "LIMIT {limit:UInt64}")
        #expect(refusal(text) == "queries/q.sql: {limit:UInt64} is declared as UInt32")
    }

    @Test func aDeclaredParameterTheSQLDoesNotUseIsRefused() {
        let text = Self.good.replacingOccurrences(of: "-- param: limit", with: "-- param: node String = ''\n-- param: limit")
        #expect(refusal(text) == "queries/q.sql: parameter node is declared but not used")
    }

    @Test func aParameterDeclaredTwiceOrMalformedIsRefused() {
        #expect(refusal(Self.good.replacingOccurrences(of: "-- param: limit UInt32 = 50", with: "-- param: limit UInt32 = 50\n-- param: limit UInt32")) == "queries/q.sql: parameter limit is declared twice")
        #expect(refusal(Self.good.replacingOccurrences(of: "-- param: limit UInt32 = 50", with: "-- param: limit")) == "queries/q.sql:6: a parameter is 'NAME TYPE [= DEFAULT] [-- what]'")
    }

    @Test func aWriteOrNoStatementIsRefused() {
        #expect(refusal("-- title: t\n") == "queries/q.sql: no statement after the header")
        #expect(refusal("-- title: t\nDROP TABLE audit.tracing_events")?.hasPrefix("queries/q.sql: refused") == true)
    }

    @Test func theGrafanaFormReplacesOnlyThePlaceholders() throws {
        let q = try #require(try QueryCatalog(files: [("q", Self.good)]).query(named: "q"))
        let grafana = try GrafanaPlaceholders.grafanaSQL(of: q)
        #expect(grafana.sql == """
            SELECT filename FROM audit.tracing_events
            WHERE wall_time_ms >= toUnixTimestamp64Milli($__fromTime_ms) AND (decodeURLComponent('${comm:percentencode}') = '' OR comm = decodeURLComponent('${comm:percentencode}'))
            LIMIT 50
            """)
        #expect(grafana.variables == [.textbox(name: "comm")])
    }

    @Test func eachParameterKindHasItsGrafanaForm() throws {
        func form(_ name: String, _ type: String, _ value: String? = nil) throws -> String {
            try GrafanaPlaceholders.form(of: .init(name: name, type: type, defaultValue: value, about: ""), in: "q").sql
        }
        #expect(try form("to", "DateTime64(3)") == "$__toTime_ms")
        #expect(try form("interval_s", "UInt32", "10") == "$__interval_s")
        // Every variable reaches ClickHouse percent-encoded, as a literal it decodes.
        #expect(try form("node", "String", "") == "ifNull(nullIf(decodeURLComponent('${node:percentencode}'), '*'), '')")
        #expect(try form("severity", "String", "") == "decodeURLComponent('${severity:percentencode}')")
        #expect(try form("pid", "UInt32") == "toUInt32OrZero(decodeURLComponent('${pid:percentencode}'))")
        #expect(try form("start_time_ns", "UInt64") == "toUInt64OrZero(decodeURLComponent('${start_time_ns:percentencode}'))")
        #expect(try form("prefixes", "Array(String)", "['/etc/', '/root/']")
            == #"extractAll(replaceRegexpOne(decodeURLComponent('${prefixes:percentencode}'), '(?s)^\\{(.*)\\}$', '\\1'), '[^,]+')"#)
        #expect(throws: CatalogError.self) { try form("prefixes", "Array(String)", "['a,b', 'it''s']") }
        #expect(throws: CatalogError.self) { try form("prefixes", "Array(String)", "['/etc/', '']") }
        #expect(throws: CatalogError.self) { try form("ratio", "Float64", "1") }
    }

    @Test func theBuiltInCatalogMakesEveryDashboard() throws {
        let files = try GrafanaDashboards.files(from: .builtIn)
        #expect(files.keys.sorted() == ["files.json", "network.json", "overview.json", "processes.json", "resources.json", "security.json"])
        #expect(files.values.allSatisfy { $0.contains("infrasight-clickhouse") && $0.contains("$__fromTime_ms") })
    }
}
