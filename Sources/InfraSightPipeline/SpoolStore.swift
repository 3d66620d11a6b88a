import Foundation
import InfraSightCore
import InfraSightPipelineProto
import InfraSightSchema
import InfraSightStorage

/// The agent's store: a sealed batch goes into the write-ahead `BatchSpool` (on disk
/// before it is sent) and the `AgentSender` streams it from there. A batch the spool
/// cannot take (full) is refused, and the batch writer counts its rows as dropped for
/// its plugin.
///
/// Tables are sent without the columns their plugin declares derived (`DerivedColumn`,
/// e.g. latency_ms from latency_ns) when their source is sent and the store side can
/// compute them (`DerivedColumns.derivable`): they would cost bytes for nothing. The
/// hello tells the server which ones (`definition(of:derived:)`).
public final class SpoolStore: EventStore, Sendable {
    public let spool: BatchSpool
    /// Called after every batch that entered the spool (wakes the sender).
    let onAppend: @Sendable () -> Void
    /// Per table (qualified name): the plugin's declarations; nil for the behaviour of
    /// agents before plugins declared them (`DerivedColumns.undeclared(in:)`).
    let derived: [String: [DerivedColumn]]?

    /// `derived`: every table's derived columns as its plugin declares them
    /// (`LoadedPlugin.derivedColumns`); a table without an entry leaves nothing out.
    public init(spool: BatchSpool, derived: [String: [DerivedColumn]], onAppend: @escaping @Sendable () -> Void) {
        self.spool = spool
        self.derived = derived
        self.onAppend = onAppend
    }

    /// Leaves out what agents before declared derived columns left out, and sends a hello
    /// without declarations to match: for callers that do not pass the plugins' ones yet.
    public init(spool: BatchSpool, onAppend: @escaping @Sendable () -> Void) {
        self.spool = spool
        self.derived = nil
        self.onAppend = onAppend
    }

    public var summary: String { "spool \(spool.directory)" }

    /// The columns of `table` a batch leaves out, given its plugin's declarations: each
    /// derivable one whose source the batch keeps.
    public static func leftOut(of table: TableSchema, derived: [DerivedColumn]) -> [DerivedColumn] {
        DerivedColumns.derivable(derived, in: table)
    }

    /// The hello's definition of `table`: its DDL, and the derived columns its batches
    /// leave out (`leftOut(of:derived:)`), which the server computes.
    public static func definition(of table: TableSchema, derived: [DerivedColumn]) -> Infrasight_V1_TableDefinition {
        var definition = Infrasight_V1_TableDefinition()
        definition.name = table.qualifiedName
        definition.ddl = table.statement
        definition.derivedColumns = leftOut(of: table, derived: derived).map(Infrasight_V1_DerivedColumn.init)
        return definition
    }

    public func prepare(_ tables: [TableSchema]) throws(StorageError) -> [TableSchema] { spooled(tables) }

    /// The tables as the spool holds their rows: without the columns the server derives.
    public func spooled(_ tables: [TableSchema]) -> [TableSchema] {
        tables.map { t in
            let omitted = Set(Self.leftOut(of: t, derived: derived.map { $0[t.qualifiedName] ?? [] } ?? DerivedColumns.undeclared(in: t)).map(\.column))
            return TableSchema(database: t.database, name: t.name, columns: t.columns.filter { !omitted.contains($0.name) }, ddl: t.ddl, tail: t.tail)
        }
    }

    public func insert(_ batch: Batch) throws(StorageError) {
        var message = Infrasight_V1_Batch()
        message.batchID = batch.id
        message.table = batch.table.qualifiedName
        message.columns = batch.table.columns.map { c in
            var column = Infrasight_V1_Column()
            column.name = c.name
            column.type = c.type.description
            return column
        }
        message.rows = batch.bytes
        message.rowCount = UInt64(batch.rows)
        message.plugin = batch.plugin
        let stored: Infrasight_V1_Batch?
        do {
            stored = try spool.append(message)
        } catch {
            throw StorageError("\(error)")
        }
        guard stored != nil else {
            throw StorageError("the spool is full (\(spool.maxBytes >> 20) MiB at \(spool.directory)): batch dropped")
        }
        onAppend()
    }

    public func query(_ sql: String, format: String) throws(StorageError) -> Data {
        throw StorageError("the agent does not answer queries; ask the server's store")
    }
}

extension Infrasight_V1_DerivedColumn {
    /// The wire form of a declaration.
    public init(_ derived: DerivedColumn) {
        self.init()
        column = derived.column
        source = derived.source
        kind = derived.kindName
        codeTable = derived.codeTable ?? ""
    }
}

extension DerivedColumn {
    /// The declarations of a hello's table definition, as the server must take them from
    /// an agent it does not trust: each of a known kind, all fitting `table` and
    /// computable here (`DerivedColumns.problem`), else a one-line reason. Nil when the
    /// definition declares none (an agent from before declarations).
    public static func declared(in definition: Infrasight_V1_TableDefinition, table: TableSchema) throws(PipelineError) -> [DerivedColumn]? {
        guard !definition.derivedColumns.isEmpty else { return nil }
        guard definition.derivedColumns.count <= table.columns.count else {
            throw PipelineError("table \(table.qualifiedName): \(definition.derivedColumns.count) derived columns declared for \(table.columns.count) columns")
        }
        var declared: [DerivedColumn] = []
        for d in definition.derivedColumns {
            guard isPlainIdentifier(d.column), isPlainIdentifier(d.source), d.codeTable.isEmpty || isPlainIdentifier(d.codeTable) else {
                throw PipelineError("table \(table.qualifiedName): a derived column names '\(d.column.prefix(64))', '\(d.source.prefix(64))' or '\(d.codeTable.prefix(64))', not plain names")
            }
            guard let parsed = DerivedColumn(column: d.column, source: d.source, kindName: d.kind, codeTable: d.codeTable) else {
                throw PipelineError("table \(table.qualifiedName): derived column \(d.column.prefix(64)) has the unknown kind '\(d.kind.prefix(64))'")
            }
            declared.append(parsed)
        }
        if let why = DerivedColumns.problem(declared, in: table) {
            throw PipelineError("table \(table.qualifiedName): the agent's derived columns cannot be computed here: \(why)")
        }
        return declared
    }
}
