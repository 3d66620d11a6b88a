import Foundation
import Glibc
import InfraSightCore
import InfraSightPipelineProto
import SwiftProtobuf

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
public final class BatchSpool: @unchecked Sendable {
    public let directory: String
    public let maxBytes: Int
    private let lock = NSLock()
    private var index: [(sequence: UInt64, bytes: Int)] = []
    private var nextSequence: UInt64 = 1
    public private(set) var usedBytes = 0
    public private(set) var droppedRows: UInt64 = 0
    public private(set) var droppedBatches: UInt64 = 0
    /// Rows of spooled batches the spool dropped, oldest first, to take newer ones (part
    /// of `droppedRows`), per plugin.
    public var evictedRows: [String: UInt64] {
        lock.lock()
        defer { lock.unlock() }
        return evicted
    }
    private var evicted: [String: UInt64] = [:]
    private var evictedAny = false
    /// Told once, at the first batch dropped to make room (set before use).
    public var onFirstEviction: @Sendable (String) -> Void = { _ in }
    public private(set) var corruptFiles: UInt64 = 0
    /// Batches the server refused (malformed, refused by its store), set aside as
    /// `<sequence>.batch.rejected` for a person to look at, and their rows.
    public private(set) var rejectedBatches: UInt64 = 0
    public private(set) var rejectedRows: UInt64 = 0
    /// Rejected files deleted to keep them within a quarter of the spool limit.
    public private(set) var rejectedDeleted: UInt64 = 0
    /// Rejected files kept, oldest first (they count against `maxBytes`).
    private var rejected: [(path: String, bytes: Int)] = []
    /// The last sequence found on disk at start-up: those batches may have reached the
    /// server before the restart, so they are sent marked as resends.
    public let recoveredThrough: UInt64

    public init(directory: String, maxBytes: Int) throws {
        self.directory = directory
        self.maxBytes = maxBytes
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
        for name in names where name.hasSuffix(".batch") {
            guard let seq = UInt64(name.dropLast(".batch".count)) else { continue }
            index.append((seq, size(name)))
        }
        for name in names where name.hasSuffix(".tmp") { unlink("\(directory)/\(name)") }
        for name in names.sorted() where name.hasSuffix(".batch.rejected") {
            rejected.append(("\(directory)/\(name)", size(name)))
        }
        // Both queued and set-aside batches count against the spool limit.
        usedBytes = index.reduce(0) { $0 + $1.bytes } + rejected.reduce(0) { $0 + $1.bytes }
        index.sort { $0.sequence < $1.sequence }
        nextSequence = (index.last?.sequence ?? 0) + 1
        recoveredThrough = index.last?.sequence ?? 0
    }

    func path(_ sequence: UInt64) -> String { String(format: "%@/%020llu.batch", directory, sequence) }

    /// Stores a batch (its `sequence` is assigned here) and returns it, or nil when the
    /// spool is full (the rows are counted as dropped).
    @discardableResult
    public func append(_ batch: Infrasight_V1_Batch) throws -> Infrasight_V1_Batch? {
        lock.lock()
        defer { lock.unlock() }
        var stored = batch
        stored.sequence = nextSequence
        let data: Data = try stored.serializedData()
        guard data.count <= maxBytes else {
            droppedRows += batch.rowCount
            droppedBatches += 1
            return nil
        }
        makeRoom(for: data.count)
        let final = path(nextSequence)
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
        index.append((nextSequence, data.count))
        usedBytes += data.count
        nextSequence += 1
        return stored
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
        lock.lock()
        defer { lock.unlock() }
        var out: [(sequence: UInt64, bytes: Int)] = []
        for entry in index where entry.sequence > sequence {
            out.append(entry)
            if out.count == limit { break }
        }
        return out
    }

    /// One batch, or nil when it is not in the spool (acknowledged, or moved aside as
    /// `.corrupt` because it could not be read back).
    public func read(_ sequence: UInt64) -> Infrasight_V1_Batch? {
        let file = path(sequence)
        lock.lock()
        let known = index.contains { $0.sequence == sequence }
        lock.unlock()
        guard known else { return nil }
        if let data = FileManager.default.contents(atPath: file), let batch = try? Infrasight_V1_Batch(serializedBytes: data) {
            return batch
        }
        lock.lock()
        corruptFiles += 1
        forget(sequence)
        lock.unlock()
        rename(file, file + ".corrupt")
        return nil
    }

    /// Bytes on disk.
    public var bytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return usedBytes
    }

    /// The server stored the batch with this sequence: it leaves the spool.
    public func acknowledge(sequence: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        guard forget(sequence) else { return }
        unlink(path(sequence))
    }

    /// The server refused the batch with this sequence for good: it leaves the queue and is
    /// kept aside as `.rejected` (within a quarter of the spool limit, oldest deleted
    /// first). Returns the rejected file's path, or nil when the batch was not queued.
    @discardableResult
    public func reject(sequence: UInt64, rows: UInt64) -> String? {
        lock.lock()
        defer { lock.unlock() }
        guard let i = index.firstIndex(where: { $0.sequence == sequence }) else { return nil }
        let bytes = index[i].bytes
        forget(sequence)
        let aside = path(sequence) + ".rejected"
        rejectedBatches += 1
        rejectedRows += rows
        guard rename(path(sequence), aside) == 0 else {
            unlink(path(sequence))
            return nil
        }
        _ = Self.syncDirectory(directory) // the move aside survives a crash (else it is resent and refused again)
        rejected.append((aside, bytes))
        usedBytes += bytes
        var kept = rejected.reduce(0) { $0 + $1.bytes }
        while kept > maxBytes / 4, let oldest = rejected.first {
            unlink(oldest.path)
            rejected.removeFirst()
            kept -= oldest.bytes
            usedBytes -= oldest.bytes
            rejectedDeleted += 1
        }
        return rejected.last?.path == aside ? aside : nil
    }

    /// Drops the oldest data until `bytes` more fit (under `lock`): rejected files first
    /// (they will never be sent), then the oldest queued batches. A batch in flight that
    /// goes here may still be acknowledged: `acknowledge` then finds nothing to do.
    private func makeRoom(for bytes: Int) {
        while usedBytes + bytes > maxBytes, let oldest = rejected.first {
            unlink(oldest.path)
            rejected.removeFirst()
            usedBytes -= oldest.bytes
            rejectedDeleted += 1
        }
        while usedBytes + bytes > maxBytes, let oldest = index.first {
            let file = path(oldest.sequence)
            // Its rows and plugin, for the counts (a file that cannot be read counts its batch only).
            let batch = FileManager.default.contents(atPath: file).flatMap { try? Infrasight_V1_Batch(serializedBytes: $0) }
            if !evictedAny {
                evictedAny = true
                onFirstEviction("the spool is full (\(maxBytes >> 20) MiB at \(directory)): its oldest batches are dropped to keep the newest (counted as spool evicted)")
            }
            droppedBatches += 1
            if let batch {
                droppedRows += batch.rowCount
                evicted[batch.plugin, default: 0] += batch.rowCount
            }
            forget(oldest.sequence)
            unlink(file)
        }
    }

    @discardableResult
    private func forget(_ sequence: UInt64) -> Bool {
        guard let i = index.firstIndex(where: { $0.sequence == sequence }) else { return false }
        usedBytes -= index[i].bytes
        index.remove(at: i)
        return true
    }

    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return index.count
    }
}

public struct SpoolError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
