import Foundation
import InfraSightCore
import InfraSightPipelineProto
import InfraSightSchema
import InfraSightStorage
import Logging
import Synchronization

/// The server's side of storing: the tables agents declare, the batches they send, and
/// the ledger of stored batch ids that makes a resend idempotent.
///
/// Tables: an agent's Hello carries each table's DDL. It must parse and name a
/// MergeTree-family engine, in the agents' database, and not a table the server or
/// detection writes itself (`serverTables`); then `CREATE ... IF NOT EXISTS` is applied,
/// and a table the store already has gets the columns the DDL has and it lacks
/// (`TableMigration`: an agent of a newer release brings its new columns). A column present
/// with another type (after the store's own type mapping for an older server) refuses the
/// agent with a message naming the column. What a hello declared is that stream's own
/// (`Declaration`): its batches are checked against it alone, so a declaration only ever
/// adds columns to the store and never changes what another agent's batches are checked
/// against.
///
/// Batches: the rows are checked and rewritten for the store's table (`RowBinaryTranscoder`:
/// type mapping, derived columns the agent left out), inserted with the batch id as
/// `insert_deduplication_token`, and then recorded in `infrasight.pipeline_batches`. A
/// batch marked as a resend is first looked up there: when found, nothing is stored again.
/// (On a server without deduplication tokens, before 22.2, a crash between the insert and
/// the ledger row can still store a resent batch twice — except on a cluster, whose
/// replicated tables deduplicate the resent blocks themselves: see `ClusterStore`.)
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
    /// Declared table + identity + column signature → transcoder (shared by the streams
    /// whose declarations and batches are alike).
    private let transcoders = Mutex([String: RowBinaryTranscoder]())
    private let state = Mutex(Counters())
    private let queue = DispatchQueue(label: "infrasight-server-store", attributes: .concurrent)

    /// The only database agents' tables may live in (never `infrasight` or `system`).
    public let database: String
    /// Qualified name → what it is, for the tables the server and detection write
    /// themselves (alerts, the drift baseline, the ledger): no agent may declare one.
    public let serverTables: [String: String]
    /// Whether the store is a cluster, whose `<name>_local` tables are the shards of `<name>`.
    let clustered: Bool

    /// `serverTables`: qualified name → what it is (`detection's alerts`), for the tables
    /// the caller's own code writes (the ledger is added). `cluster`: the cluster `store`
    /// writes into, if any: the ledger is then held whole by every node (any server,
    /// through any node, finds a batch another one stored).
    public init(store: EventStore, database: String = "audit", serverTables: [String: String] = [:], cluster: ClusterStore? = nil,
                logger: Logger) throws(StorageError) {
        self.store = store
        self.database = database
        self.serverTables = serverTables.merging([Self.ledger.qualifiedName: "the server's ledger of stored batches"]) { a, _ in a }
        clustered = cluster != nil
        self.logger = logger
        if let cluster {
            do {
                ledger = try cluster.prepare([Self.ledger], placement: .everyNode, migrated: { _ in })[0]
            } catch {
                throw error.storageError
            }
        } else {
            ledger = try store.prepare([Self.ledger])[0]
        }
    }

    public var counters: Counters { state.withLock { $0 } }

    /// Runs blocking store work off the cooperative pool.
    func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// What one stream's hello declared: the only tables that stream may write, each
    /// with the columns its DDL gave them (all in the store with those types, checked
    /// when the hello was registered) and the derived columns it declared. Another
    /// stream's hello never changes it.
    public struct Declaration: Sendable {
        struct Table: Sendable {
            /// The table as this hello declared it (types as the store holds them).
            let schema: TableSchema
            /// Nil when the hello declared none (`DerivedColumns.undeclared` then applies).
            let derived: [DerivedColumn]?
            /// The columns and derivations, naming this declaration in the transcoder cache.
            let signature: String
        }
        var tables: [String: Table] = [:]
        public init() {}
        public var count: Int { tables.count }
        public func contains(_ table: String) -> Bool { tables[table] != nil }
    }

    /// Applies the DDL of a Hello and returns what the agent declared (the only tables
    /// it may write). Throws a refusal reason.
    public func register(_ hello: Infrasight_V1_Hello) async throws -> Declaration {
        try await blocking { try self.registerBlocking(hello) }
    }

    /// Most tables one agent may declare, and most columns in one table.
    static let maxTables = 256, maxColumns = 1000

    /// The table an agent declared, rebuilt from validated parts: plain identifiers,
    /// known types, the fixed engine grammar (`EngineClause`), in `database` only. The
    /// agent's text is parsed, never pasted.
    func declared(_ definition: Infrasight_V1_TableDefinition) throws(PipelineError) -> TableSchema {
        let label = String(definition.name.prefix(80))
        guard definition.ddl.utf8.count <= 64 << 10 else { throw PipelineError("the DDL of \(label) is over 64 KiB") }
        let parsed: TableSchema
        let engine: EngineClause
        do {
            parsed = try TableSchema(ddl: definition.ddl)
            engine = try EngineClause(parsing: parsed.tail, columns: parsed.columns.map(\.name))
        } catch {
            throw PipelineError("the DDL of \(label) is refused: \(error)")
        }
        guard parsed.qualifiedName == definition.name else {
            throw PipelineError("the DDL declared for \(label) creates \(parsed.qualifiedName)")
        }
        guard parsed.database == database else {
            throw PipelineError("table \(parsed.qualifiedName) is refused: agents' tables live in the database \(database)")
        }
        if let owner = serverTables[parsed.qualifiedName] {
            throw PipelineError("table \(parsed.qualifiedName) is refused: it is \(owner), which only the server writes")
        }
        // In a cluster `x_local` is the shard table of `x` (ClusterDDL): declaring it would
        // write a shard behind its Distributed table, the server's own tables' included.
        if clustered && parsed.name.hasSuffix("_local") {
            throw PipelineError("table \(parsed.qualifiedName) is refused: in a cluster, <name>_local is the shard table the server makes for <name>")
        }
        guard parsed.columns.count <= Self.maxColumns else { throw PipelineError("table \(parsed.qualifiedName) has over \(Self.maxColumns) columns") }
        // Partitioning and expiry are the server's (`storage.retention`, `storage.max_disk`):
        // an agent's would let it make a partition per row, or keep rows past the policy.
        let policy = engine.without("PARTITION BY").without("TTL")
        return TableSchema(database: database, name: parsed.name, columns: parsed.columns, ddl: "", tail: policy.canonical)
    }

    func registerBlocking(_ hello: Infrasight_V1_Hello) throws -> Declaration {
        guard hello.tables.count <= Self.maxTables else { throw PipelineError("the hello declares \(hello.tables.count) tables (at most \(Self.maxTables))") }
        var declaration = Declaration()
        for definition in hello.tables {
            let prepared = try prepareDeclared(try declared(definition))
            // This stream's own: one agent's derivations never apply to another's rows.
            let derived = try DerivedColumn.declared(in: definition, table: prepared)
            let signature = prepared.columns.map { "\($0.name) \($0.type)" }.joined(separator: ",") + "\u{1}" + (derived.map { "\($0)" } ?? "-")
            declaration.tables[prepared.qualifiedName] = .init(schema: prepared, derived: derived, signature: signature)
        }
        return declaration
    }

    /// Creates an agent's table, or adds to the store's table the columns the agent's DDL
    /// has and it lacks (one line in the log); every column must then exist in the store
    /// with the type of the DDL (after the store's own type mapping for an older server).
    /// A conflict refuses the agent naming the column; any other store error is logged
    /// and the agent told only that the table could not be prepared.
    func prepareDeclared(_ schema: TableSchema) throws -> TableSchema {
        do {
            return try store.prepare([schema]) { logger.notice("\($0.note)") }[0]
        } catch {
            switch error {
            case .conflict(let c):
                throw PipelineError("table \(c.table) conflicts with the agent's DDL: column \(c.column) is \(c.storedType.prefix(80)) on the server, \(c.declaredType) in the agent's DDL")
            case .store(let e):
                // The store's own words may quote data; they stay in the server's log.
                logger.error("creating or updating \(schema.qualifiedName) failed: \(e)")
                throw PipelineError("the server could not create or update table \(schema.qualifiedName) (its log has the store's reason)")
            }
        }
    }

    static func validID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 70) || ($0 >= 97 && $0 <= 102) || $0 == 45 }
    }

    /// The largest batch a server stores (agents seal batches at 4 MiB).
    public static let maxBatchBytes = 8 << 20

    /// Checks every count and size of a batch against what it carries, before any of
    /// them is used: a batch that lies is refused, not trusted.
    static func checkBounds(_ batch: Infrasight_V1_Batch, declared: Declaration) throws(BatchRefusal) {
        guard validID(batch.batchID) else { throw BatchRefusal("batch id '\(batch.batchID.prefix(80))' is not a UUID") }
        guard declared.contains(batch.table) else {
            throw BatchRefusal("batch for \(batch.table.prefix(200)), a table this agent did not declare in its hello")
        }
        guard (1...maxColumns).contains(batch.columns.count) else {
            throw BatchRefusal("batch has \(batch.columns.count) columns (1 to \(maxColumns) accepted)")
        }
        for column in batch.columns {
            guard isPlainIdentifier(column.name), column.type.utf8.count <= 64, ColumnType(parsing: column.type).isSupported else {
                throw BatchRefusal("column '\(column.name.prefix(60))' \(column.type.prefix(60)) is not a plain name with a supported type")
            }
        }
        guard batch.rows.count <= maxBatchBytes else { throw BatchRefusal("batch of \(batch.rows.count) bytes is over the limit of \(maxBatchBytes)") }
        // Every row takes at least one byte: more rows than bytes is a lie.
        guard batch.rowCount >= 1, batch.rowCount <= UInt64(batch.rows.count) else {
            throw BatchRefusal("batch claims \(batch.rowCount) rows in \(batch.rows.count) bytes")
        }
        guard batch.plugin.utf8.count <= 64, batch.plugin.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 }) else {
            throw BatchRefusal("plugin name '\(batch.plugin.prefix(64))' is not [a-z0-9_-], at most 64 bytes")
        }
    }

    /// Stores a batch (or finds it stored before) and returns the ack. Throws a
    /// `BatchRefusal` for a batch that can never be stored (undeclared table, malformed
    /// or lying rows, refused by the store): that batch's problem only, the stream goes
    /// on. Retries while the store is unavailable until `cancelled` says the agent left.
    public func store(_ batch: Infrasight_V1_Batch, agent: AgentIdentity, declared: Declaration) async throws -> Infrasight_V1_Ack {
        let cancelled = CancelFlag()
        return try await withTaskCancellationHandler {
            try await blocking { try self.storeBlocking(batch, agent: agent, declared: declared, cancelled: cancelled) }
        } onCancel: {
            cancelled.value.store(true, ordering: .relaxed)
        }
    }

    func storeBlocking(_ batch: Infrasight_V1_Batch, agent: AgentIdentity, declared: Declaration, cancelled: CancelFlag) throws -> Infrasight_V1_Ack {
        try Self.checkBounds(batch, declared: declared)
        let transcoder = try transcoder(for: batch, into: declared.tables[batch.table]!, agent: agent) // checked above
        let rowCount = Int(batch.rowCount) // bounded by the byte count above
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
            rows = try transcoder.transcode(batch.rows, rows: rowCount)
        } catch {
            throw BatchRefusal("batch \(batch.batchID) for \(batch.table): \(error)")
        }
        let data = Batch(table: transcoder.output, bytes: rows, rows: rowCount, id: batch.batchID, plugin: batch.plugin)
        try retrying(cancelled) { () throws(StorageError) in try self.store.insert(data) }
        let record = Batch(table: ledger, bytes: Self.ledgerRow(batch, agent: agent.id), rows: 1, id: "ledger-" + batch.batchID, plugin: "")
        try retrying(cancelled) { () throws(StorageError) in try self.store.insert(record) }
        ack.rowsStored = batch.rowCount
        state.withLock {
            $0.batchesStored += 1
            $0.rowsStored += batch.rowCount
            $0.rowsByTable[batch.table, default: 0] += batch.rowCount
        }
        return ack
    }

    /// The transcoder for this batch's columns into `declared`, the table as this stream
    /// declared it; with `agent.node`, `node_name` is written from it whatever the rows say.
    func transcoder(for batch: Infrasight_V1_Batch, into declared: Declaration.Table, agent: AgentIdentity) throws -> RowBinaryTranscoder {
        let key = [batch.table, declared.signature, agent.node.map { "=" + $0 } ?? "", batch.columns.map { "\($0.name) \($0.type)" }.joined(separator: ",")]
            .joined(separator: "\u{1}")
        return try transcoders.withLock { cache in
            if let cached = cache[key] { return cached }
            let table = declared.schema
            var constants: [String: String] = [:]
            if let node = agent.node, table.index(of: "node_name") != nil { constants["node_name"] = node }
            do {
                let made = try RowBinaryTranscoder(
                    input: batch.columns.map { Column(name: $0.name, type: ColumnType(parsing: $0.type)) }, table: table, derived: declared.derived,
                    constants: constants)
                // Bounded: one entry per declaration, identity and column list seen.
                if cache.count >= 4096 { cache.removeAll() }
                cache[key] = made
                return made
            } catch {
                throw BatchRefusal("batch for \(batch.table): \(error)")
            }
        }
    }

    /// Retries `work` while the store is unavailable; other store errors are thrown.
    func retrying<T>(_ cancelled: CancelFlag, _ work: () throws(StorageError) -> T) throws -> T {
        let retry = StoreRetry(
            onUnavailable: { error, first in
                guard !cancelled.value.load(ordering: .relaxed) else { return CancellationError() }
                if first {
                    self.logger.warning("\(error); holding the agent's batches until it is back")
                    self.state.withLock { $0.storeAvailable = false }
                }
                self.state.withLock { $0.storeRetries += 1 }
                // A full disk: the oldest rows go so the agents' newer batches fit.
                if error.isNoSpace { self.store.diskBudget?.relieve(bytes: 4 << 20) }
                return nil
            },
            onRecovered: {
                self.state.withLock { $0.storeAvailable = true }
                self.logger.notice("store available again: \(self.store.summary)")
            })
        do {
            return try retry.run(work)
        } catch let error as StorageError {
            // The store's words may quote stored data: they stay in this log.
            logger.error("the store refused a batch: \(error)")
            throw BatchRefusal("the store refused the batch (the server's log has its reason)")
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

/// Who sent a batch, as far as the server can tell.
public struct AgentIdentity: Sendable, Equatable {
    /// The agent's id: the name its credentials prove, else what its hello says.
    public let id: String
    /// The node name the agent's credentials prove (a per-agent token's name or its
    /// certificate's), or nil when agents are trusted to name themselves.
    public let provenNode: String?
    /// The node name every row of the agent is stored with, whatever the row says: the
    /// proven one, or a self-named agent's own while the server lists per-agent tokens
    /// (so its rows cannot claim a listed node). Nil: each row's own.
    public let node: String?

    public init(id: String, provenNode: String?, node: String? = nil) {
        self.id = id
        self.provenNode = provenNode
        self.node = provenNode ?? node
    }
}

/// One batch is refused (malformed, lying, for an undeclared table, refused by the
/// store): the server says why and reads on; the agent sets that batch aside.
public struct BatchRefusal: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
