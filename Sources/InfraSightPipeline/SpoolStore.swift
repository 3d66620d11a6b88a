import Foundation
import InfraSightPipelineProto
import InfraSightSchema
import InfraSightStorage

/// The agent's store: a sealed batch goes into the write-ahead `BatchSpool` (on disk
/// before it is sent) and the `AgentSender` streams it from there. A batch the spool
/// cannot take (full) is refused, and the batch writer counts its rows as dropped for
/// its plugin.
///
/// Tables are sent without the columns the server derives (`DerivedColumns`: latency_ms,
/// wall_time_dt, ptrace request_name, each next to the column it comes from): they would
/// cost bytes for nothing.
public final class SpoolStore: EventStore, @unchecked Sendable {
    public let spool: BatchSpool
    /// Called after every batch that entered the spool (wakes the sender).
    let onAppend: @Sendable () -> Void

    public init(spool: BatchSpool, onAppend: @escaping @Sendable () -> Void) {
        self.spool = spool
        self.onAppend = onAppend
    }

    public var summary: String { "spool \(spool.directory)" }

    public func prepare(_ tables: [TableSchema]) throws(StorageError) -> [TableSchema] {
        tables.map { t in
            let names = Set(t.columns.map(\.name))
            let kept = t.columns.filter { c in DerivedColumns.source(of: c.name, in: t.qualifiedName).map { !names.contains($0) } ?? true }
            return TableSchema(database: t.database, name: t.name, columns: kept, ddl: t.ddl, tail: t.tail)
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
