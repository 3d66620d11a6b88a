import Foundation

/// One column of a table, in DDL order.
public struct Column: Equatable, Sendable {
    public let name: String
    public let type: ColumnType

    public init(name: String, type: ColumnType) {
        self.name = name
        self.type = type
    }
}

/// A table as its CREATE TABLE statement defines it. The DDL is the single source of truth
/// for column names, types and order; everything else is derived from it.
public struct TableSchema: Equatable, Sendable {
    /// The database, or nil when the DDL names the table without one.
    public let database: String?
    public let name: String
    public let columns: [Column]
    public let ddl: String
    /// What follows the column list (`ENGINE = ... ORDER BY ...`), without a trailing `;`.
    public let tail: String

    /// `database.name`, or `name`.
    public var qualifiedName: String { database.map { "\($0).\(name)" } ?? name }

    /// The index of the column named `name`, or nil.
    public func index(of name: String) -> Int? { columns.firstIndex { $0.name == name } }

    public init(database: String?, name: String, columns: [Column], ddl: String, tail: String = "ENGINE = MergeTree() ORDER BY tuple()") {
        self.database = database
        self.name = name
        self.columns = columns
        self.ddl = ddl
        self.tail = tail
    }

    /// `database`.`name` (or `name`), backquoted.
    public var quotedName: String { (database.map { quoteIdentifier($0) + "." } ?? "") + quoteIdentifier(name) }

    /// The DDL as a single statement without comments or a trailing `;`, every name
    /// backquoted (names are plain identifiers: `init(ddl:)` refuses others).
    public var statement: String { statement(onCluster: nil) }

    /// `statement`, with `ON CLUSTER cluster` when one is given.
    public func statement(onCluster cluster: String?) -> String {
        let on = cluster.map { " ON CLUSTER \($0)" } ?? ""
        return "CREATE TABLE IF NOT EXISTS \(quotedName)\(on) (\n  \(columns.map { "\(quoteIdentifier($0.name)) \($0.type)" }.joined(separator: ",\n  "))\n)\n\(tail)"
    }

    /// The same table with column types replaced (e.g. for a server that lacks a type).
    public func mappingTypes(_ transform: (ColumnType) -> ColumnType) -> TableSchema {
        let mapped = columns.map { Column(name: $0.name, type: transform($0.type)) }
        var copy = TableSchema(database: database, name: name, columns: mapped, ddl: ddl, tail: tail)
        copy = TableSchema(database: database, name: name, columns: mapped, ddl: copy.statement, tail: tail)
        return copy
    }

    /// The explicit column list of an INSERT: `(a, b, c)`.
    public var columnList: String { "(" + columns.map { "`\($0.name)`" }.joined(separator: ", ") + ")" }

    /// Parses a `CREATE TABLE [IF NOT EXISTS] [db.]name (col Type, ...) ENGINE ...` statement.
    /// Index, projection and constraint clauses inside the column list are skipped.
    public init(ddl: String) throws(DDLError) {
        let text = Self.stripComments(ddl)
        let scalars = Array(text.unicodeScalars)
        var tokens = Tokenizer(scalars)
        guard tokens.nextWord()?.uppercased() == "CREATE" else { throw DDLError("DDL does not start with CREATE") }
        var word = tokens.nextWord()?.uppercased()
        if word == "OR" { _ = tokens.nextWord(); word = tokens.nextWord()?.uppercased() } // OR REPLACE
        guard word == "TABLE" else { throw DDLError("DDL is not a CREATE TABLE statement") }
        guard var nameText = tokens.nextWord() else { throw DDLError("DDL names no table") }
        if nameText.uppercased() == "IF" {
            guard tokens.nextWord()?.uppercased() == "NOT", tokens.nextWord()?.uppercased() == "EXISTS",
                let n = tokens.nextWord()
            else { throw DDLError("malformed IF NOT EXISTS") }
            nameText = n
        }
        let parts = nameText.split(separator: ".", maxSplits: 1).map { String($0).replacingBackquotes() }
        let database = parts.count == 2 ? parts[0] : nil
        let name = parts.count == 2 ? parts[1] : parts[0]
        guard !name.isEmpty else { throw DDLError("DDL names no table") }
        // Names go back into statements: only plain identifiers, so none can carry SQL.
        for part in parts where !isPlainIdentifier(part) {
            throw DDLError("name '\(part.prefix(60))' is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
        }
        guard let body = tokens.parenthesized() else { throw DDLError("no column list in CREATE TABLE \(nameText)") }

        var columns: [Column] = []
        for item in Self.splitTopLevel(body) {
            let trimmed = item.trimmed()
            if trimmed.isEmpty { continue }
            let upper = trimmed.uppercased()
            if upper.hasPrefix("INDEX ") || upper.hasPrefix("PROJECTION ") || upper.hasPrefix("CONSTRAINT ") || upper.hasPrefix("PRIMARY KEY") {
                continue
            }
            var itemTokens = Tokenizer(Array(trimmed.unicodeScalars))
            guard let columnName = itemTokens.nextWord()?.replacingBackquotes(), let typeText = itemTokens.typeText() else {
                throw DDLError("malformed column definition '\(trimmed.prefix(80))'")
            }
            guard isPlainIdentifier(columnName) else {
                throw DDLError("column name '\(columnName.prefix(60))' is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
            }
            let type = ColumnType(parsing: typeText)
            guard type.isSupported else { throw DDLError("column \(columnName) has unsupported type \(typeText)") }
            guard !columns.contains(where: { $0.name == columnName }) else { throw DDLError("duplicate column \(columnName)") }
            columns.append(Column(name: columnName, type: type))
        }
        guard !columns.isEmpty else { throw DDLError("CREATE TABLE \(nameText) has no columns") }
        var tail = String(String.UnicodeScalarView(scalars[tokens.i...])).trimmingCharacters(in: .whitespacesAndNewlines)
        while tail.hasSuffix(";") { tail = String(tail.dropLast()).trimmingCharacters(in: .whitespacesAndNewlines) }
        guard !tail.isEmpty else { throw DDLError("CREATE TABLE \(nameText) has no ENGINE clause") }
        self.init(database: database, name: name, columns: columns, ddl: ddl, tail: tail)
    }

    static func stripComments(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            if let r = line.range(of: "--") { return line[..<r.lowerBound] }
            return line
        }.joined(separator: "\n")
    }

    static func splitTopLevel(_ body: String) -> [String] {
        var items: [String] = []
        var depth = 0
        var current = ""
        var quote: Character?
        for c in body {
            if let q = quote {
                current.append(c)
                if c == q { quote = nil }
                continue
            }
            switch c {
            case "'", "`", "\"": quote = c; current.append(c)
            case "(": depth += 1; current.append(c)
            case ")": depth -= 1; current.append(c)
            case "," where depth == 0: items.append(current); current = ""
            default: current.append(c)
            }
        }
        items.append(current)
        return items
    }
}

/// Why a DDL statement was refused.
public struct DDLError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A minimal scanner over DDL text: words, balanced parentheses.
struct Tokenizer {
    let s: [Unicode.Scalar]
    var i = 0
    init(_ s: [Unicode.Scalar]) { self.s = s }

    mutating func skipSpace() {
        while i < s.count, s[i].properties.isWhitespace { i += 1 }
    }

    /// An identifier-ish word: letters, digits, `_`, `.`, backquoted parts.
    mutating func nextWord() -> String? {
        skipSpace()
        var out = ""
        while i < s.count {
            let c = s[i]
            if c == "`" {
                out.unicodeScalars.append(c)
                i += 1
                while i < s.count, s[i] != "`" { out.unicodeScalars.append(s[i]); i += 1 }
                if i < s.count { out.unicodeScalars.append(s[i]); i += 1 }
                continue
            }
            if c.properties.isAlphabetic || c.properties.numericType != nil || c == "_" || c == "." {
                out.unicodeScalars.append(c)
                i += 1
            } else {
                break
            }
        }
        return out.isEmpty ? nil : out
    }

    /// The text inside the next balanced parentheses.
    mutating func parenthesized() -> String? {
        skipSpace()
        guard i < s.count, s[i] == "(" else { return nil }
        var depth = 0
        var out = ""
        var quote: Unicode.Scalar?
        while i < s.count {
            let c = s[i]
            i += 1
            if let q = quote {
                out.unicodeScalars.append(c)
                if c == q { quote = nil }
                continue
            }
            if c == "'" || c == "`" { quote = c }
            if c == "(" {
                depth += 1
                if depth == 1 { continue }
            } else if c == ")" {
                depth -= 1
                if depth == 0 { return out }
            }
            out.unicodeScalars.append(c)
        }
        return nil
    }

    /// A type: a word with an optional balanced argument list, e.g. `Nullable(String)`.
    mutating func typeText() -> String? {
        guard let word = nextWord() else { return nil }
        if i < s.count, s[i] == "(" {
            guard let inner = parenthesized() else { return nil }
            return "\(word)(\(inner))"
        }
        return word
    }
}

extension String {
    fileprivate func replacingBackquotes() -> String { String(filter { $0 != "`" }) }
    fileprivate func trimmed() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
