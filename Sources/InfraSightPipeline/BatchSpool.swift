import Foundation
import Glibc
import InfraSightCore
import InfraSightPipelineProto
import SwiftProtobuf
import Synchronization

/// The agent's write-ahead spool: every batch is on disk before it is sent, and leaves
/// only when the server acknowledges it, so neither a server outage nor an agent crash
/// (kill -9) loses it. After a restart, `pending` returns what was never acknowledged,
/// in the order it was produced.
///
/// One file per batch, `<sequence>.batch` (the serialized `Batch` message), written to a
/// temporary name, synced and renamed, so a crash leaves a whole file or none. The spool
/// is bounded by `maxBytes`. When a new batch does not fit, the oldest data goes first, as
/// in the store (`storage.max_disk`): batches set aside as rejected, then the oldest
/// unacknowledged batches, until it fits; their rows are counted in `droppedRows` and
/// per plugin in `evictedRows`. Only a batch larger than the whole spool is refused
/// (counted the same). A file that cannot be read back is moved aside as `.corrupt` and
/// counted.
/// Thread-safe.
public final class BatchSpool: Sendable {
    public let directory: String
    public let maxBytes: Int
    /// The spool's counters, one consistent copy (the metrics thread reads them while the
    /// sender and the writer change them).
    public struct Counters: Sendable {
        /// Bytes on disk: queued and set-aside batches.
        public var usedBytes = 0
        /// Rows (and batches) the spool limit forced out: the oldest spooled, or a batch
        /// larger than the spool.
        public var droppedRows: UInt64 = 0
        public var droppedBatches: UInt64 = 0
        /// Rows of spooled batches dropped, oldest first, to take newer ones (part of
        /// `droppedRows`), per plugin.
        public var evictedRows: [String: UInt64] = [:]
        public var corruptFiles: UInt64 = 0
        /// Batches the server refused (malformed, refused by its store), set aside as
        /// `<sequence>.batch.rejected` for a person to look at, and their rows.
        public var rejectedBatches: UInt64 = 0
        public var rejectedRows: UInt64 = 0
        /// Rejected files deleted to keep them within a quarter of the spool limit.
        public var rejectedDeleted: UInt64 = 0
    }
    /// Everything that changes, under one lock.
    private struct State {
        var counters = Counters()
        /// Queued batches, oldest first.
        var index: [(sequence: UInt64, bytes: Int)] = []
        var nextSequence: UInt64 = 1
        var evictedAny = false
        /// Rejected files kept, oldest first (they count against `maxBytes`).
        var rejected: [(path: String, bytes: Int)] = []

        @discardableResult
        mutating func forget(_ sequence: UInt64) -> Bool {
            guard let i = index.firstIndex(where: { $0.sequence == sequence }) else { return false }
            counters.usedBytes -= index[i].bytes
            index.remove(at: i)
            return true
        }

        /// Deletes the oldest rejected file.
        mutating func deleteOldestRejected() {
            let oldest = rejected.removeFirst()
            unlink(oldest.path)
            counters.usedBytes -= oldest.bytes
            counters.rejectedDeleted += 1
        }
    }
    private let state: Mutex<State>
    /// Told once, at the first batch dropped to make room.
    private let onFirstEviction: @Sendable (String) -> Void

    public var counters: Counters { state.withLock { $0.counters } }
    public var usedBytes: Int { counters.usedBytes }
    public var droppedRows: UInt64 { counters.droppedRows }
    public var droppedBatches: UInt64 { counters.droppedBatches }
    public var evictedRows: [String: UInt64] { counters.evictedRows }
    public var corruptFiles: UInt64 { counters.corruptFiles }
    public var rejectedBatches: UInt64 { counters.rejectedBatches }
    public var rejectedRows: UInt64 { counters.rejectedRows }
    public var rejectedDeleted: UInt64 { counters.rejectedDeleted }
    /// The last sequence found on disk at start-up: those batches may have reached the
    /// server before the restart, so they are sent marked as resends.
    public let recoveredThrough: UInt64

    public init(directory: String, maxBytes: Int, onFirstEviction: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        self.onFirstEviction = onFirstEviction
        // Batches are captured events: the directory is 0700 (tightened in place when an
        // older version made it 0755 and it holds only spool files) and every file 0600.
        do {
            try PrivateDirectory.prepare(directory) { names in
                names.allSatisfy { name in [".batch", ".tmp", ".rejected", ".corrupt"].contains { name.hasSuffix($0) } }
            }
        } catch {
            throw SpoolError("spool \(error)")
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        func size(_ name: String) -> Int {
            (try? FileManager.default.attributesOfItem(atPath: "\(directory)/\(name)")[.size] as? Int) ?? 0
        }
        var found = State()
        for name in names where name.hasSuffix(".batch") {
            guard let seq = UInt64(name.dropLast(".batch".count)) else { continue }
            found.index.append((seq, size(name)))
        }
        for name in names where name.hasSuffix(".tmp") { unlink("\(directory)/\(name)") }
        for name in names.sorted() where name.hasSuffix(".batch.rejected") {
            found.rejected.append(("\(directory)/\(name)", size(name)))
        }
        // Both queued and set-aside batches count against the spool limit.
        found.counters.usedBytes = found.index.reduce(0) { $0 + $1.bytes } + found.rejected.reduce(0) { $0 + $1.bytes }
        found.index.sort { $0.sequence < $1.sequence }
        found.nextSequence = (found.index.last?.sequence ?? 0) + 1
        recoveredThrough = found.index.last?.sequence ?? 0
        state = Mutex(found)
    }

    func path(_ sequence: UInt64) -> String { String(format: "%@/%020llu.batch", directory, sequence) }

    /// Stores a batch (its `sequence` is assigned here) and returns it, or nil when the
    /// spool is full (the rows are counted as dropped).
    @discardableResult
    public func append(_ batch: Infrasight_V1_Batch) throws -> Infrasight_V1_Batch? {
        try state.withLock { s in
            var stored = batch
            stored.sequence = s.nextSequence
            let data: Data = try stored.serializedData()
            guard data.count <= maxBytes else {
                s.counters.droppedRows += batch.rowCount
                s.counters.droppedBatches += 1
                return nil
            }
            makeRoom(for: data.count, in: &s)
            let final = path(s.nextSequence)
            let temporary = final + ".tmp"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw SpoolError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
            let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd)
            close(fd)
            guard written == data.count, synced == 0, rename(temporary, final) == 0 else {
                unlink(temporary)
                throw SpoolError("cannot write \(final) (disk full?)")
            }
            // The rename is an entry in the directory: until the directory itself is synced, a
            // crash can lose it, and with it a batch the agent has counted as spooled.
            guard Self.syncDirectory(directory) else {
                let e = errno
                unlink(final)
                throw SpoolError("cannot sync spool directory \(directory): \(String(cString: strerror(e)))")
            }
            s.index.append((s.nextSequence, data.count))
            s.counters.usedBytes += data.count
            s.nextSequence += 1
            return stored
        }
    }

    /// fsync on the directory, so the names created or renamed in it survive a crash.
    static func syncDirectory(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }

    /// Every batch not acknowledged yet, oldest first.
    public func pending() -> [Infrasight_V1_Batch] {
        entries(after: 0, limit: .max).compactMap { read($0.sequence) }
    }

    /// Up to `limit` batches after `sequence`, oldest first: their sequences and sizes.
    public func entries(after sequence: UInt64, limit: Int) -> [(sequence: UInt64, bytes: Int)] {
        state.withLock { s in
            var out: [(sequence: UInt64, bytes: Int)] = []
            for entry in s.index where entry.sequence > sequence {
                out.append(entry)
                if out.count == limit { break }
            }
            return out
        }
    }

    /// One batch, or nil when it is not in the spool (acknowledged, or moved aside as
    /// `.corrupt` because it could not be read back).
    public func read(_ sequence: UInt64) -> Infrasight_V1_Batch? {
        let file = path(sequence)
        guard state.withLock({ s in s.index.contains { $0.sequence == sequence } }) else { return nil }
        if let data = FileManager.default.contents(atPath: file), let batch = try? Infrasight_V1_Batch(serializedBytes: data) {
            return batch
        }
        state.withLock { s in
            s.counters.corruptFiles += 1
            s.forget(sequence)
        }
        rename(file, file + ".corrupt")
        return nil
    }

    /// Bytes on disk.
    public var bytes: Int { state.withLock { $0.counters.usedBytes } }

    /// The server stored the batch with this sequence: it leaves the spool.
    public func acknowledge(sequence: UInt64) {
        state.withLock { s in
            guard s.forget(sequence) else { return }
            unlink(path(sequence))
        }
    }

    /// The server refused the batch with this sequence for good: it leaves the queue and is
    /// kept aside as `.rejected` (within a quarter of the spool limit, oldest deleted
    /// first). Returns the rejected file's path, or nil when the batch was not queued.
    @discardableResult
    public func reject(sequence: UInt64, rows: UInt64) -> String? {
        state.withLock { s in
            guard let i = s.index.firstIndex(where: { $0.sequence == sequence }) else { return nil }
            let bytes = s.index[i].bytes
            s.forget(sequence)
            let aside = path(sequence) + ".rejected"
            s.counters.rejectedBatches += 1
            s.counters.rejectedRows += rows
            guard rename(path(sequence), aside) == 0 else {
                unlink(path(sequence))
                return nil
            }
            _ = Self.syncDirectory(directory) // the move aside survives a crash (else it is resent and refused again)
            s.rejected.append((aside, bytes))
            s.counters.usedBytes += bytes
            while s.rejected.reduce(0, { $0 + $1.bytes }) > maxBytes / 4, !s.rejected.isEmpty {
                s.deleteOldestRejected()
            }
            return s.rejected.last?.path == aside ? aside : nil
        }
    }

    /// Drops the oldest data until `bytes` more fit: rejected files first (they will never
    /// be sent), then the oldest queued batches. A batch in flight that goes here may
    /// still be acknowledged: `acknowledge` then finds nothing to do.
    private func makeRoom(for bytes: Int, in s: inout State) {
        while s.counters.usedBytes + bytes > maxBytes, !s.rejected.isEmpty {
            s.deleteOldestRejected()
        }
        while s.counters.usedBytes + bytes > maxBytes, let oldest = s.index.first {
            let file = path(oldest.sequence)
            // Its rows and plugin, for the counts (a file that cannot be read counts its batch only).
            let batch = FileManager.default.contents(atPath: file).flatMap { try? Infrasight_V1_Batch(serializedBytes: $0) }
            if !s.evictedAny {
                s.evictedAny = true
                onFirstEviction("the spool is full (\(maxBytes >> 20) MiB at \(directory)): its oldest batches are dropped to keep the newest (counted as spool evicted)")
            }
            s.counters.droppedBatches += 1
            if let batch {
                s.counters.droppedRows += batch.rowCount
                s.counters.evictedRows[batch.plugin, default: 0] += batch.rowCount
            }
            s.forget(oldest.sequence)
            unlink(file)
        }
    }

    public var count: Int { state.withLock { $0.index.count } }
}

public struct SpoolError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
