/// A statement from outside the program (the query socket, `infrasight query`, the
/// console), checked before any store sees it. The store then runs it with ClickHouse's
/// own `readonly = 1` (`EventStore.readOnlyQuery`); these checks are the second belt,
/// for what `readonly` does not cover and to refuse early with a reason a person can act on:
///
/// - exactly one statement (a `;` inside a string or comment is text; one followed by
///   another statement is refused);
/// - a read-only kind: SELECT, WITH, SHOW, DESCRIBE/DESC, EXPLAIN, EXISTS, or `(`;
/// - no `INTO OUTFILE` (measured in chdb 26.9: it writes the file even under
///   `readonly = 1`, because the client side of the engine writes it);
/// - no function that reaches files, other servers or programs (`file(`, `url(`,
///   `s3(`, `executable(`, ... case-insensitive, quoted names too). Under `readonly = 1`
///   ClickHouse refuses table functions, but not the scalar `file('/etc/shadow')`, which
///   reads any file the process can (measured in chdb 26.9);
/// - the output format a name of `[A-Za-z0-9_]+`, since it is written into SQL.
///
/// Every check is made on the tokens of `SQLLexer`, whose boundaries are ClickHouse's.
///
/// Values for the statement's `{name:Type}` placeholders travel apart from the SQL, as
/// ClickHouse query parameters (`parameters`): the engine parses each as a value of the
/// placeholder's type, so a value never becomes SQL.
public struct ReadOnlyQuery: Equatable, Sendable {
    /// The statement without a trailing `FORMAT name` and `;`.
    public let sql: String
    /// The output format: the statement's own `FORMAT` clause, else the one asked for.
    public let format: String
    /// The first keyword, upper-cased (SELECT for a statement opening with `(`).
    public let keyword: String
    /// Values of the `{name:Type}` placeholders, by name, as given (not escaped).
    public let parameters: [String: String]
    /// Set by an asker that can go away before the answer: the store stops the statement
    /// when it is cancelled. Not part of equality.
    public var cancellation: QueryCancellation?

    public static func == (a: ReadOnlyQuery, b: ReadOnlyQuery) -> Bool {
        a.sql == b.sql && a.format == b.format && a.keyword == b.keyword && a.parameters == b.parameters
    }

    /// At most this many parameters, each value at most `maxParameterBytes`.
    public static let maxParameters = 64
    public static let maxParameterBytes = 64 * 1024

    /// Statement kinds that only read.
    public static let readOnlyKeywords = ["SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"]

    /// Throws a `StorageError` starting `refused: ` that names what was refused.
    public init(_ text: String, format: String = "TSV", parameters: [String: String] = [:]) throws(StorageError) {
        guard parameters.count <= Self.maxParameters else { throw Self.refused("more than \(Self.maxParameters) parameters") }
        for (name, value) in parameters {
            guard Self.isParameterName(name) else {
                throw Self.refused("'\(name.prefix(80))' is not a parameter name (a letter or _, then letters, digits and _)")
            }
            guard value.utf8.count <= Self.maxParameterBytes else {
                throw Self.refused("parameter \(name) is longer than \(Self.maxParameterBytes) bytes")
            }
            // Only the statement's own placeholders: a value nothing reads has no business
            // in the engine's session.
            guard text.contains("{\(name):") else {
                throw Self.refused("parameter \(name) has no {\(name):Type} placeholder in the statement")
            }
        }
        self.parameters = parameters
        let statement: SQLStatement
        do {
            statement = try SQLStatement(text)
        } catch {
            throw Self.refused("a quoted string, quoted identifier or comment is not closed")
        }
        let tokens = statement.body
        guard !tokens.isEmpty else { throw Self.refused("no statement") }
        if tokens.contains(where: { $0.kind == .semicolon || $0.kind == .verticalDelimiter }) {
            throw Self.refused("more than one statement (one statement per query; a ';' or \\G ends it)")
        }
        keyword = statement.keyword
        guard Self.readOnlyKeywords.contains(keyword) else {
            let got = keyword.isEmpty ? SQLStatement.text(statement.bytes, tokens.first!) : keyword
            throw Self.refused("only read-only statements (\(Self.readOnlyKeywords.filter { $0 != "DESC" }.joined(separator: ", "))) are accepted here; got \(got)")
        }
        // Word pairs and calls: the next significant token after each name. `APPLY f` and
        // `APPLY(f)` call `f` on every column.
        let names = tokens.indices.filter { [.word, .quotedIdentifier].contains(tokens[$0].kind) }
        for i in names where i + 1 < tokens.endIndex {
            let name = SQLStatement.name(statement.bytes, tokens[i])
            let next = tokens[i + 1]
            if name.uppercased() == "INTO", [.word, .quotedIdentifier].contains(next.kind),
                SQLStatement.name(statement.bytes, next).uppercased() == "OUTFILE"
            {
                throw Self.refused("INTO OUTFILE writes a file on this host; queries here only read (use --format and redirect the output)")
            }
            if next.kind == .openParen, let reason = Self.deniedReason(name) {
                throw Self.refused("\(name)() \(reason); queries here read only the stored tables")
            }
            if name.uppercased() == "APPLY" {
                let target = next.kind == .openParen && i + 2 < tokens.endIndex ? tokens[i + 2] : next
                if [.word, .quotedIdentifier].contains(target.kind), let reason = Self.deniedReason(SQLStatement.name(statement.bytes, target)) {
                    throw Self.refused("\(SQLStatement.name(statement.bytes, target))() \(reason); queries here read only the stored tables")
                }
            }
        }
        let chosen = statement.format ?? format
        guard Self.isFormatName(chosen) else {
            throw Self.refused("'\(chosen)' is not a ClickHouse format name (letters, digits and _ only)")
        }
        self.format = chosen
        sql = statement.sql
    }

    static func refused(_ reason: String) -> StorageError { StorageError("refused: \(reason)") }

    /// `[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes: a name that can follow `param_` in a
    /// setting or URL argument.
    public static func isParameterName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 64, !(first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) else { return false }
        return name.utf8.allSatisfy { SQLLexer.isWordChar($0) }
    }

    /// A parameter's value as ClickHouse reads `param_<name>`: in its escaped text form
    /// (as in TSV), where a backslash starts an escape. Escaping backslash, tab, newline,
    /// carriage return and NUL makes the engine see exactly `value`.
    public static func escapedParameter(_ value: String) -> String {
        var out = ""
        out.reserveCapacity(value.utf8.count)
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\0": out += "\\0"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `[A-Za-z0-9_]+`: every ClickHouse format name, and nothing that can end a clause.
    public static func isFormatName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { SQLLexer.isWordChar($0) }
    }

    /// SHOW and EXPLAIN output comes back as TSV only from embedded ClickHouse: chdb
    /// writes an empty file for `SHOW ... INTO OUTFILE` (measured in 26.9), and an `INTO
    /// OUTFILE` after `EXPLAIN AST SELECT 1` belongs to the inner SELECT, so no file is
    /// written (DESCRIBE and EXISTS are written); both are read through Arrow and printed
    /// as TSV.
    public var readsThroughArrow: Bool { keyword == "SHOW" || keyword == "EXPLAIN" }

    /// Functions (table or scalar) that read or write files, reach other servers or run
    /// programs, by lower-cased name, with why they are refused. A name not listed here is
    /// still under `readonly = 1`, which refuses every table function.
    static let deniedFunctions: [String: String] = {
        let files = ["file", "filecluster", "filesystem", "hdfs", "hdfscluster", "sqlite"]
        let network = [
            "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn", "azureblobstorage", "azureblobstoragecluster",
            "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql", "mongodb", "redis", "jdbc",
            "odbc", "bigquery", "ytsaurus", "arrowflight",
        ]
        var out: [String: String] = [:]
        for n in files { out[n] = "reads or writes files on this host" }
        for n in network { out[n] = "connects to other servers" }
        for n in ["executable", "executablepool"] { out[n] = "runs programs on this host" }
        // Work in the square of their arguments' lengths within one block, where neither the
        // time limit nor a kill is checked (measured: 70 s against a 60 s limit on 12 rows).
        for n in ["editdistance", "editdistanceutf8", "levenshteindistance", "levenshteindistanceutf8", "damerauLevenshteinDistance".lowercased(),
                  "jarosimilarity", "jarowinklersimilarity"] {
            out[n] = "costs the square of its arguments' lengths in one step, beyond the reach of the time limit"
        }
        // chdb's own: Python objects and Arrow streams registered in this process.
        for n in ["python", "arrowstream"] { out[n] = "reads objects in this process's memory" }
        out["input"] = "reads data sent along with the query"
        out["eval"] = "runs SQL given as a string, out of reach of these checks"
        return out
    }()

    /// Families of data-lake readers (local files or object storage), by prefix:
    /// iceberg, icebergS3, icebergLocalCluster, deltaLakeAzure, hudiCluster, paimonHDFS, ...
    static let deniedPrefixes = ["iceberg", "deltalake", "hudi", "paimon"]

    /// Why a call to `name` is refused, or nil when it may run.
    public static func deniedReason(_ name: String) -> String? {
        let lower = name.lowercased()
        if let reason = deniedFunctions[lower] { return reason }
        if deniedPrefixes.contains(where: { lower.hasPrefix($0) }) { return "reads data lakes in files or object storage" }
        return nil
    }
}
