import Foundation

/// What follows a CREATE TABLE's column list, parsed with a fixed grammar so that a
/// server can rebuild it from parts instead of pasting text it received:
///
/// ```
/// ENGINE = Family[( [column {, column}] )]     -- MergeTree family only, not Replicated
/// { PARTITION BY expr | ORDER BY expr | PRIMARY KEY expr | SAMPLE BY expr | TTL expr
///   | SETTINGS name = integer {, name = integer} }   -- each clause at most once
/// expr := term {(+ | -) term}
/// term := column | integer | function( [expr {, expr}] ) | ( [expr {, expr}] )
///       | INTERVAL integer unit
/// ```
/// Columns must be among the table's own; functions and settings come from short allow
/// lists (partitioning, hashing and date functions; numeric MergeTree settings). String
/// literals do not exist in this grammar, so nothing an agent writes can name a file, a
/// URL, a ZooKeeper path or a disk. `canonical` is the clause rebuilt from the parts,
/// every identifier backquoted.
public struct EngineClause: Equatable, Sendable {
    /// MergeTree-family engines an agent may ask for. Replicated engines take ZooKeeper
    /// paths (strings): a cluster's tables are created by its operator (`schema apply --cluster`).
    public static let families: Set<String> = [
        "MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree",
        "CollapsingMergeTree", "VersionedCollapsingMergeTree",
    ]
    /// Functions allowed in key, partition and TTL expressions.
    public static let functions: Set<String> = [
        "tuple", "toDate", "toDateTime", "toYYYYMM", "toYYYYMMDD", "toStartOfDay", "toStartOfHour",
        "toStartOfMonth", "toStartOfWeek", "toMonday", "toStartOfInterval", "toStartOfFiveMinutes",
        "intHash32", "intHash64", "cityHash64", "sipHash64", "xxHash64", "modulo", "intDiv",
        "fromUnixTimestamp64Milli", "toUnixTimestamp",
    ]
    /// Numeric MergeTree settings an agent may set.
    public static let settingNames: Set<String> = [
        "index_granularity", "index_granularity_bytes", "ttl_only_drop_parts", "merge_with_ttl_timeout",
        "min_bytes_for_wide_part", "min_rows_for_wide_part", "non_replicated_deduplication_window",
        "allow_nullable_key",
    ]
    static let intervalUnits: Set<String> = ["SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR"]
    static let clauses = ["PARTITION BY", "ORDER BY", "PRIMARY KEY", "SAMPLE BY", "TTL", "SETTINGS"]

    public let family: String
    public let arguments: [String]
    /// Clause keyword ("ORDER BY", ...) → its canonical text, in `clauses` order.
    public private(set) var parts: [(String, String)]

    public static func == (a: EngineClause, b: EngineClause) -> Bool {
        a.family == b.family && a.arguments == b.arguments && a.parts.map { "\($0.0) \($0.1)" } == b.parts.map { "\($0.0) \($0.1)" }
    }

    /// The clause rebuilt from its parts.
    public var canonical: String {
        var text = "ENGINE = \(family)(\(arguments.map(quoteIdentifier).joined(separator: ", ")))"
        for (keyword, value) in parts { text += " \(keyword) \(value)" }
        return text
    }

    /// Parses `tail` (the text after the column list) against `columns`. Throws a
    /// `DDLError` naming the first thing outside the grammar.
    public init(parsing tail: String, columns: [String]) throws(DDLError) {
        var p = ClauseParser(tokens: try ClauseLexer.tokens(tail), columns: Set(columns))
        try p.expectWord("ENGINE")
        try p.expect(.symbol("="))
        let family = try p.identifier()
        guard Self.families.contains(family) else {
            throw DDLError("engine \(family) is not accepted (one of \(Self.families.sorted().joined(separator: ", ")))")
        }
        var arguments: [String] = []
        if p.peek == .symbol("(") {
            p.advance()
            while p.peek != .symbol(")") {
                if !arguments.isEmpty { try p.expect(.symbol(",")) }
                arguments.append(try p.column())
            }
            p.advance()
        }
        var found: [String: String] = [:]
        while p.peek != nil {
            guard let keyword = Self.clauses.first(where: { p.startsWith($0) }) else {
                throw DDLError("unexpected \(p.peekText) after the engine (expected \(Self.clauses.joined(separator: ", ")))")
            }
            guard found[keyword] == nil else { throw DDLError("\(keyword) appears twice") }
            p.skipWords(keyword)
            if keyword == "SETTINGS" {
                var settings: [String] = []
                repeat {
                    if !settings.isEmpty { p.advance() }
                    let name = try p.identifier()
                    guard Self.settingNames.contains(name) else { throw DDLError("setting \(name) is not accepted") }
                    try p.expect(.symbol("="))
                    settings.append("\(name) = \(try p.integer())")
                } while p.peek == .symbol(",")
                found[keyword] = settings.joined(separator: ", ")
            } else {
                var text = try p.expression()
                if keyword == "TTL", p.startsWith("DELETE") { p.advance(); text += " DELETE" }
                found[keyword] = text
            }
        }
        guard found["ORDER BY"] != nil || family != "MergeTree" || found["PRIMARY KEY"] != nil else {
            throw DDLError("a MergeTree table needs ORDER BY")
        }
        self.family = family
        self.arguments = arguments
        parts = Self.clauses.compactMap { k in found[k].map { (k, $0) } }
    }

    /// The same clause without `keyword`'s clause (one of `clauses`), e.g. a server
    /// replacing an agent's PARTITION BY and TTL with its own policy.
    public func without(_ keyword: String) -> EngineClause {
        var copy = self
        copy.parts.removeAll { $0.0 == keyword }
        return copy
    }

    /// The same clause with one more setting (kept when already set).
    public func setting(_ name: String, _ value: Int) -> EngineClause {
        var copy = self
        if let i = copy.parts.firstIndex(where: { $0.0 == "SETTINGS" }) {
            guard !copy.parts[i].1.contains(name) else { return self }
            copy.parts[i].1 += ", \(name) = \(value)"
        } else {
            copy.parts.append(("SETTINGS", "\(name) = \(value)"))
        }
        return copy
    }
}

/// `name`, backquoted (names are checked to be plain identifiers before they get here).
public func quoteIdentifier(_ name: String) -> String { "`\(name)`" }

/// Why `name` cannot be the database agents' tables live in (`server --database`,
/// `server.database`), or nil when it can: a plain identifier, and not the engine's own
/// databases or the server's.
public func agentDatabaseProblem(_ name: String) -> String? {
    let reserved = ["system", "information_schema", "INFORMATION_SCHEMA", "infrasight"]
    guard isPlainIdentifier(name), !reserved.contains(name) else {
        return "must be a plain database name other than system, information_schema and infrasight (got \(name))"
    }
    return nil
}

/// Whether `name` is a plain SQL identifier: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes.
public func isPlainIdentifier(_ name: String) -> Bool {
    guard let first = name.utf8.first, name.utf8.count <= 128 else { return false }
    func letter(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 }
    return letter(first) && name.utf8.allSatisfy { letter($0) || ($0 >= 48 && $0 <= 57) }
}

enum ClauseToken: Equatable {
    case word(String)
    case number(String)
    case symbol(Character)
}

enum ClauseLexer {
    /// Words (identifiers, backquoted ones unquoted), unsigned integers and the symbols
    /// `( ) , = + -`. Anything else (quotes, semicolons, comments) is refused.
    static func tokens(_ text: String) throws(DDLError) -> [ClauseToken] {
        var out: [ClauseToken] = []
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace { i += 1; continue }
            if "(),=+-".contains(c) {
                if c == "-", i + 1 < chars.count, chars[i + 1] == "-" { throw DDLError("comments are not accepted in the engine clause") }
                out.append(.symbol(c))
                i += 1
            } else if c == "`" {
                guard let end = chars[(i + 1)...].firstIndex(of: "`") else { throw DDLError("unterminated backquote in the engine clause") }
                let name = String(chars[(i + 1)..<end])
                guard isPlainIdentifier(name) else { throw DDLError("identifier `\(name.prefix(40))` is not a plain identifier") }
                out.append(.word(name))
                i = end + 1
            } else if c.isASCII && (c.isLetter || c == "_") {
                var j = i
                while j < chars.count, chars[j].isASCII, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" { j += 1 }
                out.append(.word(String(chars[i..<j])))
                i = j
            } else if c.isASCII && c.isNumber {
                var j = i
                while j < chars.count, chars[j].isASCII, chars[j].isNumber { j += 1 }
                guard j - i <= 18 else { throw DDLError("number too long in the engine clause") }
                out.append(.number(String(chars[i..<j])))
                i = j
            } else {
                throw DDLError("character '\(c)' is not accepted in the engine clause")
            }
        }
        return out
    }
}

struct ClauseParser {
    let tokens: [ClauseToken]
    let columns: Set<String>
    var i = 0
    var depth = 0

    init(tokens: [ClauseToken], columns: Set<String>) {
        self.tokens = tokens
        self.columns = columns
    }

    var peek: ClauseToken? { i < tokens.count ? tokens[i] : nil }
    var peekText: String {
        switch peek {
        case .word(let w): w
        case .number(let n): n
        case .symbol(let s): String(s)
        case nil: "the end"
        }
    }
    mutating func advance() { i += 1 }

    func startsWith(_ keywords: String) -> Bool {
        for (k, word) in keywords.split(separator: " ").enumerated() {
            guard i + k < tokens.count, case .word(let w) = tokens[i + k], w.uppercased() == word else { return false }
        }
        return true
    }

    mutating func skipWords(_ keywords: String) { i += keywords.split(separator: " ").count }

    mutating func expect(_ token: ClauseToken) throws(DDLError) {
        guard peek == token else { throw DDLError("expected \(token) in the engine clause, found \(peekText)") }
        advance()
    }

    mutating func expectWord(_ word: String) throws(DDLError) {
        guard startsWith(word) else { throw DDLError("expected \(word), found \(peekText)") }
        advance()
    }

    mutating func identifier() throws(DDLError) -> String {
        guard case .word(let w) = peek else { throw DDLError("expected a name, found \(peekText)") }
        advance()
        return w
    }

    mutating func column() throws(DDLError) -> String {
        let name = try identifier()
        guard columns.contains(name) else { throw DDLError("the engine clause names \(name), which is not a column of the table") }
        return name
    }

    mutating func integer() throws(DDLError) -> String {
        guard case .number(let n) = peek else { throw DDLError("expected a number, found \(peekText)") }
        advance()
        return n
    }

    mutating func expression() throws(DDLError) -> String {
        var text = try term()
        while peek == .symbol("+") || peek == .symbol("-") {
            let op = peekText
            advance()
            text += " \(op) " + (try term())
        }
        return text
    }

    mutating func list() throws(DDLError) -> String {
        try expect(.symbol("("))
        depth += 1
        defer { depth -= 1 }
        guard depth <= 8 else { throw DDLError("expression nested too deeply") }
        var items: [String] = []
        while peek != .symbol(")") {
            if !items.isEmpty { try expect(.symbol(",")) }
            items.append(try expression())
            guard items.count <= 64 else { throw DDLError("too many items in the engine clause") }
        }
        advance()
        return "(" + items.joined(separator: ", ") + ")"
    }

    mutating func term() throws(DDLError) -> String {
        switch peek {
        case .number: return try integer()
        case .symbol("("): return try list()
        case .word(let w) where w.uppercased() == "INTERVAL":
            advance()
            let n = try integer()
            let unit = try identifier().uppercased()
            guard EngineClause.intervalUnits.contains(unit) else { throw DDLError("unknown interval unit \(unit)") }
            return "INTERVAL \(n) \(unit)"
        case .word(let w):
            if tokens.indices.contains(i + 1), tokens[i + 1] == .symbol("(") {
                guard EngineClause.functions.contains(w) else { throw DDLError("function \(w) is not accepted in the engine clause") }
                advance()
                return w + (try list())
            }
            return quoteIdentifier(try column())
        default:
            throw DDLError("unexpected \(peekText) in an expression of the engine clause")
        }
    }
}
