import Foundation
import InfraSightSchema

/// Bringing a table the store already has up to its DDL: the columns the DDL has and the
/// table lacks are added, in the DDL's order, by one
/// `ALTER TABLE db.t [ON CLUSTER c] ADD COLUMN IF NOT EXISTS col Type AFTER prev, ...`.
/// Columns the table has and the DDL lacks are left alone; a column present with another
/// type is a `ColumnConflict`, found before anything is changed. Old rows read the added
/// columns' defaults (0, '', ...): ClickHouse writes nothing for them until parts merge.
///
/// The one place that reads `system.columns` and builds the ALTER, for the stores'
/// `prepare` (`run`, `schema apply`) and the server's registration of agents' tables.
public struct TableMigration: Equatable, Sendable {
    /// The table altered, as the store holds it.
    public let table: TableSchema
    /// The columns added, in the DDL's order, each with the column it follows (nil: the
    /// DDL's first column, which goes at the end: FIRST is not understood by every server).
    public let added: [(column: Column, after: String?)]
    public let cluster: String?
    /// Whether the ALTER says `IF NOT EXISTS` (ClickHouse 19.1 and later).
    public let ifNotExists: Bool

    public static func == (a: TableMigration, b: TableMigration) -> Bool {
        a.table == b.table && a.cluster == b.cluster && a.ifNotExists == b.ifNotExists
            && a.added.map(\.column) == b.added.map(\.column) && a.added.map(\.after) == b.added.map(\.after)
    }

    /// What `table` (as the store holds it: types mapped) lacks of `stored`, the store's
    /// columns (name → type as `system.columns` writes it); nil when nothing is missing.
    /// Throws when a column is present with another type.
    public init?(_ table: TableSchema, stored: [String: String], cluster: String? = nil, ifNotExists: Bool = true) throws(ColumnConflict) {
        var added: [(column: Column, after: String?)] = []
        var previous: String?
        for column in table.columns {
            if let type = stored[column.name] {
                guard ColumnType(parsing: type) == column.type else {
                    throw ColumnConflict(table: table.qualifiedName, column: column.name, storedType: type, declaredType: column.type)
                }
            } else {
                added.append((column, previous))
            }
            previous = column.name
        }
        guard !added.isEmpty else { return nil }
        self.table = table
        self.added = added
        self.cluster = cluster
        self.ifNotExists = ifNotExists
    }

    /// The ALTER: one ADD COLUMN per added column, names backquoted (they are plain
    /// identifiers: `TableSchema(ddl:)` refuses others); a later column may follow one
    /// added by an earlier clause.
    public var statement: String {
        let on = cluster.map { " ON CLUSTER \($0)" } ?? ""
        let exists = ifNotExists ? " IF NOT EXISTS" : ""
        let clauses = added.map { c in
            "ADD COLUMN\(exists) \(quoteIdentifier(c.column.name)) \(c.column.type)" + (c.after.map { " AFTER \(quoteIdentifier($0))" } ?? "")
        }
        return "ALTER TABLE \(table.quotedName)\(on) \(clauses.joined(separator: ", "))"
    }

    /// What was done: `table audit.t: added columns a String, b UInt32`.
    public var summary: String {
        let list = added.map { "\($0.column.name) \($0.column.type)" }.joined(separator: ", ")
        let on = cluster.map { " on cluster \($0)" } ?? ""
        return "table \(table.qualifiedName)\(on): added column\(added.count == 1 ? "" : "s") \(list)"
    }

    /// The line that says so: `summary (the store had an older definition)`.
    public var note: String { summary + " (the store had an older definition)" }

    /// The statement listing a table's columns and types (TabSeparated output: name, type).
    /// Names are plain identifiers (checked when the DDL was parsed), so they sit in quotes as they are.
    public static func columnsQuery(_ table: TableSchema) -> String {
        "SELECT name, type FROM system.columns WHERE database = '\(table.database ?? "default")' AND table = '\(table.name)'"
    }

    /// Name → type from `columnsQuery`'s TabSeparated output.
    public static func parseColumns(_ output: Data) -> [String: String] {
        var columns: [String: String] = [:]
        for line in String(decoding: output, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            if fields.count >= 2 { columns[String(fields[0])] = String(fields[1]) }
        }
        return columns
    }

    /// Reads the store's columns of `table` (`read` runs a SELECT and returns its
    /// TabSeparated output), adds what it lacks (`alter` runs the ALTER) and returns the
    /// migration, or nil when nothing was missing. When the ALTER fails, the columns are
    /// read again: another process (a second server, another node of the cluster) that
    /// added them first is no failure.
    public static func apply(
        _ table: TableSchema, cluster: String?, ifNotExists: Bool,
        read: (String) throws(StorageError) -> Data, alter: (String) throws(StorageError) -> Void
    ) throws(PrepareError) -> TableMigration? {
        func plan() throws(PrepareError) -> TableMigration? {
            let stored: [String: String]
            do {
                stored = parseColumns(try read(columnsQuery(table)))
            } catch {
                throw .store(error)
            }
            guard !stored.isEmpty else { throw .store(StorageError("table \(table.qualifiedName) is not in the store's system.columns")) }
            do {
                return try TableMigration(table, stored: stored, cluster: cluster, ifNotExists: ifNotExists)
            } catch {
                throw .conflict(error)
            }
        }
        guard let migration = try plan() else { return nil }
        do {
            try alter(migration.statement)
        } catch {
            if (try? plan()) == .some(nil) { return nil }
            let what = "adding columns to \(table.qualifiedName): "
            throw .store(error.prefixed(what))
        }
        return migration
    }
}

/// A column the store's table has with another type than the DDL's. Never changed in
/// place (that would rewrite or lose data): the table is refused.
public struct ColumnConflict: Error, Equatable, CustomStringConvertible, Sendable {
    public let table: String
    public let column: String
    /// As `system.columns` writes it.
    public let storedType: String
    public let declaredType: ColumnType

    public var description: String {
        "table \(table) conflicts with its DDL: column \(column) is \(storedType.prefix(80)) in the store, \(declaredType) in the DDL (a column's type is never changed in place: align the plugin versions, or rename or drop the table)"
    }
}

/// Why `prepare` refused: a column conflict (our own words, naming the column) or the
/// store's error (its words may quote data).
public enum PrepareError: Error, CustomStringConvertible, Sendable {
    case conflict(ColumnConflict)
    case store(StorageError)

    public var description: String {
        switch self {
        case .conflict(let c): c.description
        case .store(let e): e.description
        }
    }

    /// As a `StorageError` (for callers that do not tell the two apart).
    public var storageError: StorageError {
        if case .store(let e) = self { return e }
        return StorageError(description)
    }
}
