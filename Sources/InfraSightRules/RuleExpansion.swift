import Foundation
import InfraSightStorage

/// Expands `$name` references in a condition and checks that the result is one row
/// expression, on `SQLLexer` tokens (a `$` inside a string or quoted identifier is text).
///
/// - `$list` becomes an array literal of its strings (`['bash', 'sh']`), usable with `IN`,
///   `has()` and `arrayExists()`;
/// - `$macro` becomes `(its expression)`, itself expanded (a macro may use lists and other
///   macros; a cycle is refused).
///
/// The expanded condition is refused when it is not a row expression the evaluator can
/// paste into its query: a `;`, unbalanced brackets, a subquery or clause keyword
/// (`SELECT`, `FROM`, `UNION`, `SETTINGS`, `FORMAT`, `INTO`, ...), or a function that
/// reaches files, other servers or programs (`ReadOnlyQuery`'s deny list).
public struct RuleExpansion: Sendable {
    public let lists: [String: [String]]
    public let macros: [String: String]

    public init(lists: [String: [String]], macros: [String: String]) {
        self.lists = lists
        self.macros = macros
    }

    static let clauseKeywords: Set<String> = [
        "SELECT", "FROM", "UNION", "EXCEPT", "INTERSECT", "SETTINGS", "FORMAT", "INTO", "INSERT", "WITH", "JOIN",
        "GROUP", "ORDER", "LIMIT", "HAVING", "WHERE", "PREWHERE", "ARRAY", "OUTFILE",
    ]

    public func expand(_ condition: String) throws(RuleProblem) -> String {
        let expanded = try expand(condition, seen: [])
        try check(expanded)
        return expanded
    }

    func expand(_ text: String, seen: [String]) throws(RuleProblem) -> String {
        let bytes = Array(text.utf8)
        let tokens: [SQLLexer.Token]
        do {
            tokens = try SQLLexer.tokens(text)
        } catch {
            throw RuleProblem("", "a quoted string or identifier is not closed")
        }
        var out = ""
        for token in tokens {
            let piece = String(decoding: bytes[token.range], as: UTF8.self)
            guard token.kind == .word, piece.hasPrefix("$") else {
                out += piece
                continue
            }
            let name = String(piece.dropFirst())
            if let items = lists[name] {
                out += "[" + items.map(sqlStringLiteral).joined(separator: ", ") + "]"
            } else if let body = macros[name] {
                guard !seen.contains(name) else { throw RuleProblem("", "macro \(name) uses itself (\((seen + [name]).joined(separator: " → ")))") }
                out += "(" + (try expand(body, seen: seen + [name])) + ")"
            } else {
                throw RuleProblem("", "\(piece) is neither a list nor a macro")
            }
        }
        return out
    }


    func check(_ condition: String) throws(RuleProblem) {
        let bytes = Array(condition.utf8)
        let tokens: [SQLLexer.Token]
        do {
            tokens = try SQLLexer.tokens(condition).filter { $0.kind != .whitespace && $0.kind != .comment }
        } catch {
            throw RuleProblem("", "a quoted string or identifier is not closed")
        }
        guard !tokens.isEmpty else { throw RuleProblem("", "the condition is empty") }
        var depth = 0
        for (i, token) in tokens.enumerated() {
            let text = String(decoding: bytes[token.range], as: UTF8.self)
            switch token.kind {
            case .semicolon, .verticalDelimiter:
                throw RuleProblem("", "a condition is one expression (no ';')")
            case .openParen:
                depth += 1
            case .closeBracket:
                depth -= 1
                guard depth >= 0 else { throw RuleProblem("", "unbalanced brackets: a '\(text)' closes nothing") }
            case .symbol where text == "[":
                depth += 1
            case .word:
                if Self.clauseKeywords.contains(text.uppercased()) {
                    throw RuleProblem("", "a condition is an expression over the row's columns: no \(text.uppercased()) (subqueries and clauses are not evaluated per row)")
                }
                if i + 1 < tokens.count, tokens[i + 1].kind == .openParen, let reason = ReadOnlyQuery.deniedReason(text) {
                    throw RuleProblem("", "\(text)() \(reason)")
                }
            default:
                break
            }
        }
        guard depth == 0 else { throw RuleProblem("", "unbalanced brackets") }
    }
}
