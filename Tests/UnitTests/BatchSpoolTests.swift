import Foundation
import InfraSightPipeline
import InfraSightPipelineProto
import InfraSightTestSupport
import Testing

@Suite struct BatchSpoolTests {
    func batch(_ id: String, rows: UInt64 = 10, bytes: Int = 100) -> Infrasight_V1_Batch {
        .with {
            $0.batchID = id
            $0.table = "audit.tracing_events"
            $0.columns = [.with { $0.name = "pid"; $0.type = "UInt32" }]
            $0.rows = Data(repeating: 7, count: bytes)
            $0.rowCount = rows
            $0.plugin = "tracing"
        }
    }

    @Test func batchesComeBackInOrderUntilAcknowledged() throws {
        let spool = try BatchSpool(directory: try makeTempDir(prefix: "spool"), maxBytes: 1 << 20)
        let a = try #require(try spool.append(batch("a")))
        let b = try #require(try spool.append(batch("b")))
        _ = try spool.append(batch("c"))
        #expect(a.sequence < b.sequence)
        #expect(spool.pending().map(\.batchID) == ["a", "b", "c"])
        spool.acknowledge(sequence: b.sequence)
        #expect(spool.pending().map(\.batchID) == ["a", "c"])
        #expect(spool.pending().first == a)
    }

    @Test func aNewSpoolOnTheSameDirectoryResendsWhatWasNotAcknowledged() throws {
        let dir = try makeTempDir(prefix: "spool")
        do {
            let spool = try BatchSpool(directory: dir, maxBytes: 1 << 20)
            let first = try #require(try spool.append(batch("one")))
            _ = try spool.append(batch("two"))
            spool.acknowledge(sequence: first.sequence)
        } // the agent dies here
        #expect(FileManager.default.createFile(atPath: "\(dir)/00000000000000000099.batch.tmp", contents: Data([1, 2]))) // a torn write
        let restarted = try BatchSpool(directory: dir, maxBytes: 1 << 20)
        #expect(restarted.pending().map(\.batchID) == ["two"])
        let three = try #require(try restarted.append(batch("three")))
        #expect(restarted.pending().map(\.batchID) == ["two", "three"])
        #expect(three.sequence == 3)
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/00000000000000000099.batch.tmp"))
    }

    /// A full spool keeps the newest: the oldest batches go to make room, counted per
    /// plugin; only a batch larger than the whole spool is refused.
    @Test func aFullSpoolDropsTheOldestAndCountsThem() throws {
        var sample = batch("b10", rows: 5, bytes: 200)
        sample.sequence = 10
        let size = try sample.serializedData().count
        let dir = try makeTempDir(prefix: "spool")
        let spool = try BatchSpool(directory: dir, maxBytes: 4 * size + size / 2)
        for i in 10..<30 { #expect(try spool.append(batch("b\(i)", rows: 5, bytes: 200)) != nil) }
        #expect(spool.pending().map(\.batchID) == ["b26", "b27", "b28", "b29"])
        #expect(spool.droppedBatches == 16)
        #expect(spool.droppedRows == 80)
        #expect(spool.evictedRows == ["tracing": 80])
        #expect(spool.usedBytes <= 4 * size + size / 2)
        // What is on disk is what is indexed: the evicted files are gone.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".batch") }.count == 4)
        // A rejected batch goes before any queued one.
        let rejected = try #require(spool.reject(sequence: spool.pending()[0].sequence, rows: 5))
        #expect(try spool.append(batch("b30", rows: 5, bytes: 200)) != nil)
        #expect(!FileManager.default.fileExists(atPath: rejected))
        #expect(spool.pending().map(\.batchID) == ["b27", "b28", "b29", "b30"])
        // Larger than the whole spool: refused, counted.
        #expect(try spool.append(batch("huge", rows: 7, bytes: 8 * size)) == nil)
        #expect(spool.droppedRows == 87)
        #expect(spool.pending().count == 4)
    }

    @Test func anUnreadableFileIsSetAsideAndCounted() throws {
        let dir = try makeTempDir(prefix: "spool")
        let spool = try BatchSpool(directory: dir, maxBytes: 1 << 20)
        let good = try #require(try spool.append(batch("good")))
        let bad = try #require(try spool.append(batch("bad")))
        try Data([0xFF, 0xFF, 0xFF]).write(to: URL(fileURLWithPath: String(format: "%@/%020llu.batch", dir, bad.sequence)))
        #expect(spool.pending().map(\.batchID) == ["good"])
        #expect(spool.corruptFiles == 1)
        #expect(FileManager.default.fileExists(atPath: String(format: "%@/%020llu.batch.corrupt", dir, bad.sequence)))
        #expect(good.batchID == "good")
    }
}
