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
    /// Creates each table's database and the table (IF NOT EXISTS), and brings a table the
    /// store already has up to its DDL (`migrate`: the columns it lacks are added, in the
    /// DDL's order), calling `migrated` once per table altered so the caller can say so.
    /// A column present with another type refuses the table (`PrepareError.conflict`,
    /// naming the column) before it is changed. Returns the tables as the store will hold
    /// them (`holding`, plus settings of its own), in the same order.
    ///
    /// A store implements this or `prepare(_:)`: each has a default in terms of the other.
    func prepare(_ tables: [TableSchema], migrated: (TableMigration) -> Void) throws(PrepareError) -> [TableSchema]
    /// `prepare(_:migrated:)` with nothing said about migrations and a conflict as a
    /// `StorageError` naming the column.
    func prepare(_ tables: [TableSchema]) throws(StorageError) -> [TableSchema]
    /// The table with each column's type as this store holds it (an older server lacks
    /// DateTime64 and JSON); nothing is created.
    func holding(_ table: TableSchema) -> TableSchema
    /// Adds to the store's `table` (as `holding` gives it; it must exist) the columns it
    /// lacks, `ON CLUSTER cluster` when one is given, and returns what was added (nil:
    /// nothing was missing). See `TableMigration`.
    func migrate(_ table: TableSchema, onCluster cluster: String?) throws(PrepareError) -> TableMigration?
    /// Stores a batch. Throws a `StorageError`; `retryable` says whether trying again
    /// later can succeed (the server is down) or not (the batch is refused).
    func insert(_ batch: Batch) throws(StorageError)
    /// Runs a statement the program itself wrote (DDL, its own lookups) and returns its
    /// output in `format` (a ClickHouse format name). Trusted: nothing is checked; text
    /// from outside the program goes through `readOnlyQuery` instead.
    func query(_ sql: String, format: String) throws(StorageError) -> Data
    /// Runs a checked statement from outside the program (the query socket, `infrasight
    /// query`, the console) with ClickHouse's own `readonly = 1` for that statement, and
    /// returns its output in `query.format`. ClickHouse refuses anything that would write
    /// or change a setting; that error comes back as a `StorageError`.
    func readOnlyQuery(_ query: ReadOnlyQuery) throws(StorageError) -> Data
    /// Releases the store before the process exits (from the main thread); later calls fail.
    func close()
    /// Its disk budget (`storage.max_disk`), where it keeps one: a writer whose insert
    /// found no space asks it to make room before trying again.
    var diskBudget: StoreBudget? { get }
}

extension EventStore {
    public func close() {}

    public var diskBudget: StoreBudget? { nil }

    public func prepare(_ tables: [TableSchema], migrated: (TableMigration) -> Void) throws(PrepareError) -> [TableSchema] {
        do {
            return try prepare(tables)
        } catch {
            throw .store(error)
        }
    }

    public func prepare(_ tables: [TableSchema]) throws(StorageError) -> [TableSchema] {
        do {
            return try prepare(tables, migrated: { _ in })
        } catch {
            throw error.storageError
        }
    }

    public func holding(_ table: TableSchema) -> TableSchema { table }

    /// Through `query`, with `IF NOT EXISTS` (every ClickHouse since 19.1).
    public func migrate(_ table: TableSchema, onCluster cluster: String?) throws(PrepareError) -> TableMigration? {
        try TableMigration.apply(
            table, cluster: cluster, ifNotExists: true,
            read: { (sql: String) throws(StorageError) -> Data in try query(sql, format: "TabSeparated") },
            alter: { (sql: String) throws(StorageError) in _ = try query(sql, format: "TabSeparated") })
    }

    public func readOnlyQuery(_ query: ReadOnlyQuery) throws(StorageError) -> Data {
        throw StorageError("\(summary) does not answer queries")
    }
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

/// A statement the program wrote, split into the SQL and a trailing FORMAT clause (on
/// `SQLLexer` tokens, so a `FORMAT` inside a string or comment is text).
public struct UserQuery: Equatable, Sendable {
    public let sql: String
    public let format: String?
    /// The first keyword, upper-cased (SELECT for a statement opening with `(`).
    public let keyword: String

    public init(_ text: String) {
        do {
            let statement = try SQLStatement(text)
            sql = statement.sql
            format = statement.format
            keyword = statement.keyword
        } catch {
            // Trusted text that does not lex (an unclosed quote): passed on whole, so
            // ClickHouse reports the syntax error with its position.
            sql = text
            format = nil
            keyword = ""
        }
    }

    /// SELECT-like statements whose output ClickHouse itself can format into a file.
    public var isSelect: Bool { ["SELECT", "WITH"].contains(keyword) }
}
