import Foundation
import InfraSightSchema

/// A sealed batch of rows of one table, encoded as RowBinary for the store's column types.
public struct Batch: Sendable {
    /// The table as the store has it (types may be mapped for an older server).
    public let table: TableSchema
    public let bytes: Data
    public let rows: Int
    /// Unique per batch; sent as insert_deduplication_token where the store supports it,
    /// so a retried batch is stored once.
    public let id: String
    /// The plugin whose rows these are (for per-plugin counters).
    public let plugin: String

    public init(table: TableSchema, bytes: Data, rows: Int, id: String, plugin: String) {
        self.table = table
        self.bytes = bytes
        self.rows = rows
        self.id = id
        self.plugin = plugin
    }
}

/// Where rows go: embedded ClickHouse or a ClickHouse server. Implementations are
/// thread-safe; `insert` may block (it runs on the sink thread).
public protocol EventStore: AnyObject, Sendable {
    /// One line for logs: what and where.
    var summary: String { get }
    /// Creates each table's database and the table (IF NOT EXISTS) and returns the
    /// tables as the store will hold them, in the same order.
    func prepare(_ tables: [TableSchema]) throws(StorageError) -> [TableSchema]
    /// Stores a batch. Throws a `StorageError`; `retryable` says whether trying again
    /// later can succeed (the server is down) or not (the batch is refused).
    func insert(_ batch: Batch) throws(StorageError)
    /// Runs a statement and returns its output in `format` (a ClickHouse format name).
    func query(_ sql: String, format: String) throws(StorageError) -> Data
    /// Releases the store before the process exits (from the main thread); later calls fail.
    func close()
}

extension EventStore {
    public func close() {}
}

extension TableSchema {
    /// The table with `non_replicated_deduplication_window` set when it is a MergeTree
    /// without settings of its own, so inserts carrying an `insert_deduplication_token`
    /// (the batch id) are stored once even when a batch is retried or resent.
    public var withDeduplicationWindow: TableSchema {
        guard tail.contains("MergeTree"), !tail.uppercased().contains("SETTINGS") else { return self }
        return TableSchema(database: database, name: name, columns: columns, ddl: ddl,
                           tail: tail + " SETTINGS non_replicated_deduplication_window = 1000")
    }
}

extension StorageError {
    /// Whether retrying the same operation later may succeed.
    public var retryable: Bool { description.hasPrefix(StorageError.retryablePrefix) }
    static let retryablePrefix = "unavailable: "
    static func unavailable(_ message: String) -> StorageError { StorageError(retryablePrefix + message) }
}

/// A statement as a user wrote it, split into the SQL and a trailing FORMAT clause.
public struct UserQuery: Equatable, Sendable {
    public let sql: String
    public let format: String?

    public init(_ text: String) {
        var sql = text.trimmingCharacters(in: .whitespacesAndNewlines)
        while sql.hasSuffix(";") { sql = String(sql.dropLast()).trimmingCharacters(in: .whitespacesAndNewlines) }
        var format: String?
        // A trailing `FORMAT Name` (outside quotes: a name is letters only).
        let words = sql.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        if words.count >= 3, words[words.count - 2].uppercased() == "FORMAT",
            words.last!.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" })
        {
            format = String(words.last!)
            let cut = sql.range(of: words[words.count - 2], options: .backwards)!.lowerBound
            sql = String(sql[..<cut]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        self.sql = sql
        self.format = format
    }

    /// The first keyword, upper-cased.
    public var keyword: String {
        let first = sql.drop(while: { $0 == "(" || $0.isWhitespace }).prefix(while: { $0.isLetter })
        return first.uppercased()
    }

    /// SELECT-like statements whose output ClickHouse itself can format into a file.
    public var isSelect: Bool { ["SELECT", "WITH"].contains(keyword) }

    /// Statements that only read.
    public var isReadOnly: Bool { ["SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"].contains(keyword) }
}
