/// The read-only guard's decisive check: every function and table function in ClickHouse's
/// own parse of a statement (`EXPLAIN AST`, run by the engine that will run the statement,
/// with the same parameters bound) must be one the engine lists and this guard allows.
///
/// Why the engine's parse: a check on a hand lexer's tokens holds only where that lexer
/// agrees with the engine, and they disagreed (ClickHouse reads `“file”(...)`, with
/// Unicode quotes, as a call of `file`; the lexer saw symbols). The tree the engine
/// prints is what it runs, so quoting, comments, escapes, case and aliases are resolved
/// already. `ReadOnlyQuery`'s lexer stays as a cheap first filter.
///
/// How the dump is read: each node is one line, `<indent>Function <name> ...`. A real
/// function's name has no space or line break, so the text up to the first space is the
/// name the engine resolves. A quoted name or alias holding a line break can add lines
/// that look like nodes; such lines can only add names to check (and refuse), never hide
/// a real node, which always starts a line of its own.
///
/// `APPLY` transformers are refused outright: the dump does not show what they call.
///
/// Allowed: a name `system.functions` lists with origin `System` (user-defined functions
/// run programs or SQL out of this check's reach), resolved through `case_insensitive` and
/// `alias_to` to its canonical name, that `ReadOnlyQuery.deniedReason` does not refuse;
/// an aggregate function with combinator suffixes (`sumIf`, `uniqMergeState`); the table
/// functions in `allowedTableFunctions`; `lambda` and a name the statement itself binds to
/// a lambda (`WITH x -> x + 1 AS f SELECT f(1)`). Everything else is refused by name.
public struct FunctionGuard: Sendable {
    /// Table functions that only generate rows or read this store's own tables.
    public static let allowedTableFunctions = ["generateSeries", "generate_series", "merge", "null", "numbers", "numbers_mt", "values", "view", "zeros", "zeros_mt"]
    static let allowedTableFunctionKeys = Set(allowedTableFunctions.map { $0.lowercased() })

    /// Exact name → canonical name.
    let exact: [String: String]
    /// Lower-cased name of a case-insensitive function → canonical name.
    let caseInsensitive: [String: String]
    /// Canonical names of aggregate functions.
    let aggregates: Set<String>
    /// Aggregate combinator suffixes (`If`, `State`, ...), longest first.
    let combinators: [String]
    /// Lower-cased names of table functions.
    let tableFunctions: Set<String>
    /// Functions the engine lists but this guard refuses (not `System`), by exact name.
    let userDefined: Set<String>

    /// One row of `system.functions`.
    public struct Function: Sendable {
        public let name: String
        public let caseInsensitive: Bool
        public let aliasTo: String
        public let isAggregate: Bool
        public let system: Bool
        public init(name: String, caseInsensitive: Bool, aliasTo: String, isAggregate: Bool, system: Bool) {
            self.name = name
            self.caseInsensitive = caseInsensitive
            self.aliasTo = aliasTo
            self.isAggregate = isAggregate
            self.system = system
        }
    }

    /// The statement that lists the functions, one row per function, every column text:
    /// name, case_insensitive, alias_to, is_aggregate, whether its origin is `System`
    /// (older servers lack `origin` and `alias_to`: pass false for them).
    public static func catalogSQL(origin: Bool = true, aliasTo: Bool = true) -> String {
        "SELECT name, toString(case_insensitive), \(aliasTo ? "alias_to" : "''"), toString(is_aggregate), \(origin ? "toString(origin = 'System')" : "'1'") FROM system.functions"
    }
    public static let combinatorsSQL = "SELECT name FROM system.aggregate_function_combinators"
    public static let tableFunctionsSQL = "SELECT name FROM system.table_functions"

    /// From the rows of `catalogSQL`, `combinatorsSQL` and `tableFunctionsSQL`, as text.
    public init(catalogRows: [[String]], combinators: [[String]], tableFunctions: [[String]]) throws(StorageError) {
        var functions: [Function] = []
        for row in catalogRows {
            guard row.count == 5 else { throw StorageError("system.functions answered a row of \(row.count) columns, not 5") }
            functions.append(Function(name: row[0], caseInsensitive: row[1] == "1", aliasTo: row[2], isAggregate: row[3] == "1", system: row[4] == "1"))
        }
        guard functions.count > 100 else { throw StorageError("system.functions lists \(functions.count) functions; the guard cannot decide on so few") }
        self.init(functions: functions, combinators: combinators.compactMap(\.first), tableFunctions: tableFunctions.compactMap(\.first))
    }

    public init(functions: [Function], combinators: [String], tableFunctions: [String]) {
        var exact: [String: String] = [:], lower: [String: String] = [:], aggregates = Set<String>(), userDefined = Set<String>()
        let byName = Dictionary(functions.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for f in functions {
            guard f.system else {
                userDefined.insert(f.name)
                continue
            }
            // An alias names its target (`alias_to`), which is itself listed.
            let canonical = f.aliasTo.isEmpty ? f.name : f.aliasTo
            exact[f.name] = canonical
            if f.caseInsensitive { lower[f.name.lowercased()] = canonical }
            if f.isAggregate || byName[canonical]?.isAggregate == true { aggregates.insert(canonical) }
        }
        self.exact = exact
        caseInsensitive = lower
        self.aggregates = aggregates
        self.combinators = combinators.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
        self.tableFunctions = Set(tableFunctions.map { $0.lowercased() })
        self.userDefined = userDefined
    }

    /// The names the dump calls as functions, in order, each with whether it is in table
    /// position (the first child of a `TableExpression`, whose line prints nothing the
    /// statement chose, so the next line is always that child), and the names it binds
    /// to lambdas.
    static func calls(in ast: String) -> (calls: [(name: String, table: Bool)], lambdas: Set<String>) {
        var calls: [(name: String, table: Bool)] = [], lambdas = Set<String>()
        var previous: (indent: Int, tableExpression: Bool) = (-1, false)
        for raw in ast.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.drop { $0 == " " }
            let indent = raw.count - line.count
            defer { previous = (indent, line.hasPrefix("TableExpression ") || line == "TableExpression") }
            guard line.hasPrefix("Function ") else { continue }
            let rest = line.dropFirst("Function ".count)
            let name = String(rest.prefix { $0 != " " })
            calls.append((name, previous.tableExpression && indent == previous.indent + 1))
            if name == "lambda", let alias = rest.range(of: " (alias ") {
                // `Function lambda (alias f) (children 1)`: the alias up to its closing paren.
                let tail = rest[alias.upperBound...]
                let end = tail.range(of: ") (children ")?.lowerBound ?? tail.lastIndex(of: ")") ?? tail.endIndex
                lambdas.insert(String(tail[..<end]))
            }
        }
        return (calls, lambdas)
    }

    /// Throws a `StorageError` starting `refused: ` naming the first function the dump
    /// calls that is not allowed.
    public func check(ast: String) throws(StorageError) {
        // `APPLY f`, `APPLY(f)` and even `APPLY(x -> f(x))` print as a bare
        // `ColumnsApplyTransformer`: the function it calls is not in the dump (measured in
        // 26.9; `SELECT * APPLY(file) FROM (SELECT '/etc/shadow' AS p)` read the file), so
        // what it would run cannot be checked.
        for line in ast.split(separator: "\n") where line.drop(while: { $0 == " " }).hasPrefix("ColumnsApplyTransformer") {
            throw ReadOnlyQuery.refused("APPLY hides the function it calls from this check; write the call on each column instead")
        }
        let (calls, lambdas) = Self.calls(in: ast)
        for call in calls {
            if let reason = refusal(call.name, table: call.table, lambdas: lambdas) { throw ReadOnlyQuery.refused(reason) }
        }
    }

    /// Why a call of `name` is refused, or nil. A table function is judged as one even
    /// when a scalar function has its name (`format`, `file`).
    func refusal(_ name: String, table: Bool, lambdas: Set<String>) -> String? {
        let shown = String(name.prefix(80))
        if let reason = ReadOnlyQuery.deniedReason(name) { return "\(shown)() \(reason); queries here read only the stored tables" }
        let lower = name.lowercased()
        if table {
            if Self.allowedTableFunctionKeys.contains(lower) { return nil }
            return "table function \(shown)() reaches beyond the stored tables; here only \(Self.allowedTableFunctions.joined(separator: ", ")) may be used"
        }
        if let canonical = canonical(name) {
            if let reason = ReadOnlyQuery.deniedReason(canonical) { return "\(shown)() (\(canonical)) \(reason); queries here read only the stored tables" }
            return nil
        }
        if let base = aggregateBase(name) {
            if let reason = ReadOnlyQuery.deniedReason(base) { return "\(shown)() (\(base)) \(reason)" }
            return nil
        }
        if name == "lambda" || lambdas.contains(name) { return nil }
        if userDefined.contains(name) { return "\(shown)() is a user-defined function; queries here run only ClickHouse's own functions" }
        if tableFunctions.contains(lower) { return "\(shown)() is a table function; it goes after FROM" }
        return "\(shown)() is not a function this ClickHouse knows"
    }

    /// The canonical name of a listed function, resolving case and aliases.
    func canonical(_ name: String) -> String? {
        exact[name] ?? caseInsensitive[name.lowercased()]
    }

    /// The aggregate function under combinator suffixes (`sumIfState` → `sum`), or nil.
    /// Every split is tried (a suffix can end another: `ArrayIf`, `If`), at most 8 deep.
    func aggregateBase(_ name: String) -> String? {
        func strip(_ rest: Substring, depth: Int) -> String? {
            guard depth < 8 else { return nil }
            for suffix in combinators where rest.count > suffix.count && rest.hasSuffix(suffix) {
                let base = rest.dropLast(suffix.count)
                if let canonical = canonical(String(base)), aggregates.contains(canonical) { return canonical }
                if let found = strip(base, depth: depth + 1) { return found }
            }
            return nil
        }
        return strip(Substring(name), depth: 0)
    }
}
