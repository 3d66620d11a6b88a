import Foundation
import InfraSightCore
import InfraSightStorage
import InfraSightTestSupport
import Testing

/// The one retry loop (`StoreRetry`, `Backoff`) as the sink uses it: a store that stays
/// down past a batch's retry budget costs that batch, counted as store drops and said in
/// one line; a store that comes back in time loses nothing (StorageTests).
@Suite struct StoreRetryTests {
    @Test func aBatchWhoseStoreStaysDownPastTheBudgetIsCountedAsStoreDrops() throws {
        let server = try ClickHouseServer()
        let store = try HTTPStore(url: server.url)
        let tables = try store.prepare([StorageTests.typesTable])
        let errors = ErrorLog()
        let writer = BatchWriter(store: store, maxRows: 1000, maxDelayMs: 50, queueMaxBytes: 64 << 20, retryBudget: 1, onError: { errors.add($0) })
        let counters = StorageCounters(plugin: "test")
        writer.start()
        server.stop()
        try writer.enqueueForTesting(StorageTests.batch(StorageTests.typedRows(), as: tables[0]), counters: counters)
        writer.finish(timeout: 30)
        #expect(counters.stored.load(ordering: .relaxed) == 0)
        #expect(counters.storeDrops.load(ordering: .relaxed) == 4)
        #expect(errors.lines.contains { $0.hasPrefix("unavailable: ") && $0.hasSuffix("; retrying") }, "\(errors.lines)")
        #expect(errors.lines.contains { $0.hasPrefix("4 rows for audit.types_test dropped after retrying for 1 s: unavailable: ") }, "\(errors.lines)")
    }

    @Test func backoffDoublesWithJitterUpToItsMaximumAndResets() {
        var backoff = Backoff(initial: 0.5, maximum: 3)
        let waits = (0..<5).map { _ in backoff.next() }
        for (wait, base) in zip(waits, [0.5, 1, 2, 3, 3]) { #expect(wait >= base * 0.8 && wait <= base * 1.2, "\(waits)") }
        backoff.reset()
        let first = backoff.next()
        #expect(first >= 0.4 && first <= 0.6)
    }
}
