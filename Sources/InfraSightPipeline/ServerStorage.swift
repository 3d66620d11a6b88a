import Foundation
import InfraSightPipelineProto
import InfraSightSchema
import InfraSightStorage
import Logging
import Synchronization

/// The server's side of storing: the tables agents declare, the batches they send, and
/// the ledger of stored batch ids that makes a resend idempotent.
///
/// Tables: an agent's Hello carries each table's DDL. It must parse, name a
/// MergeTree-family engine, and agree with the table the store already has (every column
/// present with the same type, after the store's own type mapping for an older server);
/// then `CREATE ... IF NOT EXISTS` is applied. A conflict refuses the agent with a message
/// naming the column.
///
/// Batches: the rows are checked and rewritten for the store's table (`RowBinaryTranscoder`:
/// type mapping, derived columns the agent left out), inserted with the batch id as
/// `insert_deduplication_token`, and then recorded in `infrasight.pipeline_batches`. A
/// batch marked as a resend is first looked up there: when found, nothing is stored again.
/// (On a server without deduplication tokens, before 22.2, a crash between the insert and
/// the ledger row can still store a resent batch twice.)
///
/// While the store is unavailable a batch is retried (backoff to 5 s) until it is stored
/// or its agent goes away: the stream does not read further, so HTTP/2 flow control
/// pushes back on the agent, whose spool holds the rest. Memory stays bounded by one batch
/// per connected agent plus the transport's windows.
public final class ServerStorage: Sendable {
    public struct Counters: Sendable {
        public var batchesStored: UInt64 = 0
        public var rowsStored: UInt64 = 0
        public var duplicateBatches: UInt64 = 0
        public var storeRetries: UInt64 = 0
        public var rowsByTable: [String: UInt64] = [:]
        public var storeAvailable = true
    }

    public let store: EventStore
    let logger: Logger
    static let ledger = TableSchema(
        database: "infrasight", name: "pipeline_batches",
        columns: [
            Column(name: "batch_id", type: .string), Column(name: "agent_id", type: .string),
            Column(name: "table_name", type: .string), Column(name: "rows", type: .uint64),
            Column(name: "stored_at", type: .dateTime),
        ],
        ddl: "", tail: "ENGINE = ReplacingMergeTree() ORDER BY batch_id")
    let ledger: TableSchema
    private struct Tables {
        /// Qualified name → the table as the store holds it.
        var stored: [String: TableSchema] = [:]
        /// Table + column signature → transcoder.
        var transcoders: [String: RowBinaryTranscoder] = [:]
    }
    private let tables = Mutex(Tables())
    private let state = Mutex(Counters())
    private let queue = DispatchQueue(label: "infrasight-server-store", attributes: .concurrent)

    public init(store: EventStore, logger: Logger) throws(StorageError) {
        self.store = store
        self.logger = logger
        ledger = try store.prepare([Self.ledger])[0]
    }

    public var counters: Counters { state.withLock { $0 } }

    /// Runs blocking store work off the cooperative pool.
    func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Applies the DDL of a Hello. Throws a refusal reason.
    public func register(_ hello: Infrasight_V1_Hello) async throws -> [String] {
        try await blocking { try self.registerBlocking(hello) }
    }

    func registerBlocking(_ hello: Infrasight_V1_Hello) throws -> [String] {
        var names: [String] = []
        for definition in hello.tables {
            let schema: TableSchema
            do {
                schema = try TableSchema(ddl: definition.ddl)
            } catch {
                throw PipelineError("the DDL of \(definition.name) does not parse: \(error)")
            }
            guard schema.qualifiedName == definition.name else {
                throw PipelineError("the DDL declared for \(definition.name) creates \(schema.qualifiedName)")
            }
            let identifier = { (s: String) in !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } && s.unicodeScalars.allSatisfy(\.isASCII) }
            guard identifier(schema.name), schema.database.map(identifier) ?? true else {
                throw PipelineError("table name \(definition.name) is not a plain identifier")
            }
            let tail = schema.tail.trimmingCharacters(in: .whitespacesAndNewlines)
            guard tail.range(of: #"^ENGINE\s*=\s*(Replicated|Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing)?MergeTree\b"#, options: .regularExpression) != nil,
                !tail.contains(";")
            else {
                throw PipelineError("table \(definition.name): only MergeTree-family engines are accepted (got \(tail.prefix(60)))")
            }
            let prepared = try store.prepare([schema])[0]
            try checkAgainstStore(prepared)
            tables.withLock { $0.stored[prepared.qualifiedName] = prepared }
            names.append(prepared.qualifiedName)
        }
        return names
    }

    /// Every column of the table as prepared must exist in the store with that type.
    func checkAgainstStore(_ table: TableSchema) throws {
        let sql = "SELECT name, type FROM system.columns WHERE database = '\(table.database ?? "default")' AND table = '\(table.name)'"
        let data = try store.query(sql, format: "TabSeparated")
        var existing: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            if fields.count >= 2 { existing[String(fields[0])] = String(fields[1]) }
        }
        for column in table.columns {
            guard let type = existing[column.name] else {
                throw PipelineError("table \(table.qualifiedName) on the server has no column \(column.name) (\(column.type)) that the agent's DDL declares; add it on the server (ALTER TABLE ... ADD COLUMN) or align the plugin versions")
            }
            guard ColumnType(parsing: type) == column.type else {
                throw PipelineError("table \(table.qualifiedName) conflicts with the agent's DDL: column \(column.name) is \(type) on the server, \(column.type) in the agent's DDL")
            }
        }
    }

    static func validID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 64 && id.allSatisfy { $0.isHexDigit || $0 == "-" }
    }

    /// Stores a batch (or finds it stored before) and returns the ack. Throws a
    /// `PipelineError` for a batch that can never be stored (unknown table, malformed
    /// rows); retries while the store is unavailable until `cancelled` says the agent left.
    public func store(_ batch: Infrasight_V1_Batch, agent: String) async throws -> Infrasight_V1_Ack {
        let cancelled = CancelFlag()
        return try await withTaskCancellationHandler {
            try await blocking { try self.storeBlocking(batch, agent: agent, cancelled: cancelled) }
        } onCancel: {
            cancelled.value.store(true, ordering: .relaxed)
        }
    }

    func storeBlocking(_ batch: Infrasight_V1_Batch, agent: String, cancelled: CancelFlag) throws -> Infrasight_V1_Ack {
        guard Self.validID(batch.batchID) else { throw PipelineError("batch id '\(batch.batchID.prefix(80))' is not a UUID") }
        let transcoder = try transcoder(for: batch)
        var ack = Infrasight_V1_Ack()
        ack.batchID = batch.batchID
        if batch.resend {
            let found = try retrying(cancelled) { () throws(StorageError) -> Data in
                try self.store.query("SELECT count() FROM \(self.ledger.qualifiedName) WHERE batch_id = '\(batch.batchID)'", format: "TabSeparated")
            }
            if String(decoding: found, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) != "0" {
                ack.duplicate = true
                state.withLock { $0.duplicateBatches += 1 }
                return ack
            }
        }
        let rows: Data
        do {
            rows = try transcoder.transcode(batch.rows, rows: Int(batch.rowCount))
        } catch {
            throw PipelineError("batch \(batch.batchID) for \(batch.table): \(error)")
        }
        let data = Batch(table: transcoder.output, bytes: rows, rows: Int(batch.rowCount), id: batch.batchID, plugin: batch.plugin)
        try retrying(cancelled) { () throws(StorageError) in try self.store.insert(data) }
        let record = Batch(table: ledger, bytes: Self.ledgerRow(batch, agent: agent), rows: 1, id: "ledger-" + batch.batchID, plugin: "")
        try retrying(cancelled) { () throws(StorageError) in try self.store.insert(record) }
        ack.rowsStored = batch.rowCount
        state.withLock {
            $0.batchesStored += 1
            $0.rowsStored += batch.rowCount
            $0.rowsByTable[batch.table, default: 0] += batch.rowCount
        }
        return ack
    }

    func transcoder(for batch: Infrasight_V1_Batch) throws -> RowBinaryTranscoder {
        let key = batch.table + "\u{1}" + batch.columns.map { "\($0.name) \($0.type)" }.joined(separator: ",")
        return try tables.withLock { t in
            if let cached = t.transcoders[key] { return cached }
            guard let table = t.stored[batch.table] else {
                throw PipelineError("batch for \(batch.table), a table the agent did not declare in its hello")
            }
            do {
                let made = try RowBinaryTranscoder(input: batch.columns.map { Column(name: $0.name, type: ColumnType(parsing: $0.type)) }, table: table)
                t.transcoders[key] = made
                return made
            } catch {
                throw PipelineError("batch for \(batch.table): \(error)")
            }
        }
    }

    /// Retries `work` while the store is unavailable; other store errors are thrown.
    func retrying<T>(_ cancelled: CancelFlag, _ work: () throws(StorageError) -> T) throws -> T {
        var delay = 0.2
        var reported = false
        while true {
            do {
                let result = try work()
                if reported {
                    state.withLock { $0.storeAvailable = true }
                    logger.notice("store available again: \(store.summary)")
                }
                return result
            } catch {
                guard error.retryable else { throw PipelineError("the store refused: \(error)") }
                guard !cancelled.value.load(ordering: .relaxed) else { throw CancellationError() }
                if !reported {
                    logger.warning("\(error); holding the agent's batches until it is back")
                    state.withLock { $0.storeAvailable = false }
                    reported = true
                }
                state.withLock { $0.storeRetries += 1 }
                Thread.sleep(forTimeInterval: delay * Double.random(in: 0.8...1.2))
                delay = min(delay * 2, 5)
            }
        }
    }

    static func ledgerRow(_ batch: Infrasight_V1_Batch, agent: String) -> Data {
        var out = Data()
        for text in [batch.batchID, agent, batch.table] { RowBinaryTranscoder.appendString(text.utf8, to: &out) }
        RowBinaryTranscoder.append(batch.rowCount, 8, to: &out)
        RowBinaryTranscoder.append(UInt64(UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))), 4, to: &out)
        return out
    }
}

/// Set when the agent whose batch is being stored went away.
final class CancelFlag: Sendable {
    let value = Atomic<Bool>(false)
}
