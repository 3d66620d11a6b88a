/// A named table of names for one kind of numeric code, for derived columns of the code-name
/// kind (`IS_DERIVE_CODE_NAME`): a plugin declares "column X is the name of column Y in
/// code table T", and whoever computes the column (the plugin at the source, the server
/// for a batch that left it out) looks T up here. So the server derives names for a
/// plugin's table without knowing the plugin, as long as it knows the code table.
public struct CodeTable: Sendable {
    /// The name plugins declare, `[a-z0-9_]+`.
    public let name: String
    /// A code the table lacks is named `unknownPrefix` + its decimal value.
    public let unknownPrefix: String
    let lookup: @Sendable (Int64) -> StaticString?
    /// Columns agents that did not yet declare derived columns left out of their batches,
    /// named from this table: (database-qualified table, column, source column). The
    /// server derives these for such agents only.
    public let undeclaredBefore: [(table: String, column: String, source: String)]

    /// The name of `code` (allocates only for an unknown code).
    public func name(of code: Int64) -> String {
        lookup(code).map { "\($0)" } ?? "\(unknownPrefix)\(code)"
    }

    /// The known name of `code`, or nil.
    public func knownName(of code: Int64) -> StaticString? { lookup(code) }

    /// ptrace(2) requests: linux/ptrace.h and asm/ptrace-abi.h (x86).
    public static let ptraceRequest = CodeTable(
        name: "ptrace_request", unknownPrefix: "PTRACE_UNKNOWN_", lookup: { CodeNames.ptraceRequest($0) },
        undeclaredBefore: [("audit.ptrace_events", "request_name", "request")])

    /// Every code table, by name.
    public static let all: [String: CodeTable] = Dictionary(uniqueKeysWithValues: [ptraceRequest].map { ($0.name, $0) })

    /// The code table called `name`, or nil when this build does not know it.
    public static func named(_ name: String) -> CodeTable? { all[name] }
}
