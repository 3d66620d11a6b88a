import Foundation
import InfraSightCore
import InfraSightSchema
import Synchronization

/// Storage counters of one plugin, readable from any thread.
public final class StorageCounters: Sendable {
    public let plugin: String
    /// Rows the store confirmed.
    public let stored = Atomic<UInt64>(0)
    /// Rows dropped because the batch queue was full (the store is slower than the kernel).
    public let queueDrops = Atomic<UInt64>(0)
    /// Rows dropped because the store refused their batch or stayed unreachable past the
    /// retry budget.
    public let storeDrops = Atomic<UInt64>(0)
    /// Batches that found the store's disk full and waited while the disk budget made room
    /// (stored later, or counted in `storeDrops` when the retry budget ran out).
    public let spaceWaits = Atomic<UInt64>(0)
    public init(plugin: String) { self.plugin = plugin }
}

/// Turns rows into RowBinary batches per table and stores them from a sink thread.
///
/// The dispatcher thread calls `consume` (encode into the table's open batch, no lock, no
/// allocation) and `tick` (seal batches that are old enough); a batch is sealed at
/// `maxRows` or when its first row is `maxDelay` old, then queued. The queue is bounded in
/// bytes: a batch that does not fit is dropped and its rows counted as queue drops for its
/// plugin. The sink thread stores batches in order, retrying an unavailable store with
/// backoff (for at most `retryBudget` per batch, then the rows are counted as store drops).
///
/// Unchecked Sendable: the open batches (`register`, `consume`, `tick`, and `finish`'s
/// last seal) are the dispatcher thread's alone; what the sink and other threads share
/// is under `WorkQueue`'s and `shared`'s locks or atomic.
public final class BatchWriter: RowConsumer, @unchecked Sendable {
    final class OpenBatch {
        let table: TableSchema
        let encodings: UnsafeMutablePointer<RowBuffer.Encoding>
        let encoder = RowBinaryEncoder(capacity: 1 << 20)
        let counters: StorageCounters
        var firstRowAt: UInt64 = 0

        /// `table`: the store's view of the plugin's `source` table: the same columns in the
        /// same order, possibly with other types, or with some left out.
        init(source: TableSchema, table: TableSchema, counters: StorageCounters) {
            self.table = table
            self.counters = counters
            encodings = .allocate(capacity: source.columns.count)
            for (i, c) in source.columns.enumerated() {
                let stored = table.columns.first { $0.name == c.name }
                (encodings + i).initialize(to: stored.map { RowBuffer.Encoding($0.type) } ?? .omitted)
            }
        }

        deinit { encodings.deallocate() }
    }

    let store: EventStore
    let maxRows: Int
    let maxBytes: Int
    let maxDelayNs: UInt64
    let queueMaxBytes: Int
    let retryBudget: TimeInterval
    private var open: [OpenBatch] = []
    /// Per plugin (registered before `start`).
    public var counters: [String: StorageCounters] { shared.withLock { $0.counters } }

    private let queue: WorkQueue<Batch>
    /// What the sink thread and the others share.
    private struct Shared {
        var counters: [String: StorageCounters] = [:]
        /// Total time in successful inserts and the rows they stored.
        var insertNanoseconds: UInt64 = 0
        var insertedRows: UInt64 = 0
    }
    private let shared = Mutex(Shared())
    public let inserts = Atomic<UInt64>(0)
    /// For mean insert latency and batch size: seconds and rows over `inserts`.
    public var insertTiming: (seconds: Double, rows: UInt64, inserts: UInt64) {
        shared.withLock { (Double($0.insertNanoseconds) / 1e9, $0.insertedRows, inserts.load(ordering: .relaxed)) }
    }
    private let onError: @Sendable (String) -> Void

    /// `maxBytes`: a batch is also sealed when its encoding reaches this size (the agent
    /// keeps batches under the gRPC message limit).
    public init(store: EventStore, maxRows: Int, maxBytes: Int = .max, maxDelayMs: Int, queueMaxBytes: Int,
                retryBudget: TimeInterval = 60, onError: @escaping @Sendable (String) -> Void) {
        self.store = store
        self.maxRows = maxRows
        self.maxBytes = maxBytes
        maxDelayNs = UInt64(maxDelayMs) * 1_000_000
        self.queueMaxBytes = queueMaxBytes
        self.retryBudget = retryBudget
        self.onError = onError
        // A batch larger than the whole queue is still taken when nothing else waits.
        queue = WorkQueue(maxCost: queueMaxBytes, takesOversizedWhenEmpty: true) { $0.bytes.count }
    }

    /// Registers a channel's tables with the store's schemas (same order as the plugin's).
    public func register(_ channel: PluginChannel, storeTables: [TableSchema]) {
        let c = shared.withLock { s in
            let c = s.counters[channel.plugin.name] ?? StorageCounters(plugin: channel.plugin.name)
            s.counters[channel.plugin.name] = c
            return c
        }
        for (row, table) in zip(channel.rows, storeTables) {
            row.consumerSlot = open.count
            open.append(OpenBatch(source: row.schema, table: table, counters: c))
        }
    }

    public func start() {
        queue.start(name: "infrasight-sink") { [unowned self] batch in
            let c = counters[batch.plugin]
            if store(batch) {
                c?.stored.add(UInt64(batch.rows), ordering: .relaxed)
            } else {
                c?.storeDrops.add(UInt64(batch.rows), ordering: .relaxed)
            }
        }
    }

    public func consume(_ row: RowBuffer, from channel: PluginChannel) {
        let batch = open[row.consumerSlot]
        if batch.encoder.rows == 0 { batch.firstRowAt = MonotonicClock.nanoseconds() }
        batch.encoder.encode(row, as: batch.encodings)
        if batch.encoder.rows >= maxRows || batch.encoder.count >= maxBytes { seal(batch) }
    }

    /// Seals batches whose first row is old enough. Dispatcher thread.
    public func tick() {
        let now = MonotonicClock.nanoseconds()
        for batch in open where batch.encoder.rows > 0 && now &- batch.firstRowAt >= maxDelayNs {
            seal(batch)
        }
    }

    private func seal(_ open: OpenBatch) {
        let rows = open.encoder.rows
        let bytes = Data(open.encoder.buffer)
        open.encoder.clear()
        let batch = Batch(table: open.table, bytes: bytes, rows: rows, id: UUID().uuidString, plugin: open.counters.plugin)
        if !queue.offer(batch) { open.counters.queueDrops.add(UInt64(rows), ordering: .relaxed) }
    }

    /// Queues a ready-made batch, as `seal` does (tests): counted under `counters`.
    public func enqueueForTesting(_ batch: Batch, counters: StorageCounters) throws(StorageError) {
        shared.withLock { $0.counters[batch.plugin] = counters }
        guard queue.offer(batch) else { throw StorageError("the batch queue is full or finishing") }
    }

    /// Rows and bytes waiting for the store (the batch being stored included).
    public var backlog: (batches: Int, bytes: Int) {
        let b = queue.backlog
        return (b.items, b.cost)
    }

    /// Seals every open batch and waits until the sink has stored (or given up on) all of
    /// them. After `timeout`, batches still waiting are counted as store drops and the
    /// batch being retried is abandoned at its next attempt.
    public func finish(timeout: TimeInterval) {
        for batch in open where batch.encoder.rows > 0 { seal(batch) }
        for batch in queue.finish(timeout: timeout) {
            counters[batch.plugin]?.storeDrops.add(UInt64(batch.rows), ordering: .relaxed)
        }
    }

    /// Inserts with retries while the store is unavailable; false when the batch is lost.
    private func store(_ batch: Batch) -> Bool {
        let started = Date()
        var waitedForSpace = false
        let retry = StoreRetry(
            onUnavailable: { error, first in
                let giveUp = self.queue.abandoned || Date().timeIntervalSince(started) > self.retryBudget
                if giveUp { return GaveUp(seconds: Int(Date().timeIntervalSince(started)), last: error) }
                if first { self.onError("\(error); retrying") }
                if error.isNoSpace {
                    // A full disk: the oldest rows go so this (newer) batch fits.
                    if !waitedForSpace { self.counters[batch.plugin]?.spaceWaits.add(1, ordering: .relaxed) }
                    waitedForSpace = true
                    self.store.diskBudget?.relieve(bytes: 4 * batch.bytes.count)
                }
                return nil
            },
            onRecovered: { self.onError("store available again; batch of \(batch.rows) rows into \(batch.table.qualifiedName) stored") })
        do {
            try retry.run { () throws(StorageError) in
                let began = MonotonicClock.nanoseconds()
                try store.insert(batch)
                let took = MonotonicClock.nanoseconds() &- began
                shared.withLock { s in
                    s.insertNanoseconds &+= took
                    s.insertedRows &+= UInt64(batch.rows)
                }
            }
            inserts.add(1, ordering: .relaxed)
            return true
        } catch let gaveUp as GaveUp {
            onError("\(batch.rows) rows for \(batch.table.qualifiedName) dropped after retrying for \(gaveUp.seconds) s: \(gaveUp.last)")
            return false
        } catch {
            onError("\(batch.rows) rows for \(batch.table.qualifiedName) refused: \(error)")
            return false
        }
    }
}

/// The retry budget of a batch ran out (or the writer was abandoned) while the store was down.
private struct GaveUp: Error {
    let seconds: Int
    let last: StorageError
}
