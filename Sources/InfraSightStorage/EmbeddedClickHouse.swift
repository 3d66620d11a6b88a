import CChdbADBC
import Foundation
import Glibc

/// The ClickHouse engine in-process (chdb), on one data directory. One process may hold a
/// data directory at a time (ClickHouse locks it). Thread-safe: statements are serialized.
public final class EmbeddedClickHouse: @unchecked Sendable {
    public let dataDir: String
    private let driver: UnsafeMutablePointer<AdbcDriver>
    private var database = AdbcDatabase()
    private var connection = AdbcConnection()
    private let lock = NSLock()

    public init(dataDir: String, library: String? = nil) throws(StorageError) {
        self.dataDir = dataDir
        do {
            try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        } catch {
            throw StorageError("cannot create data directory \(dataDir): \(error.localizedDescription)")
        }
        let initialize = try ChdbLibrary.load(configured: library)
        driver = .allocate(capacity: 1)
        driver.initialize(to: AdbcDriver())
        var error = AdbcError()
        try Self.check(initialize(IS_ADBC_VERSION_1_1_0, driver, &error), &error, "initialising the chdb driver")
        try Self.check(driver.pointee.DatabaseNew(&database, &error), &error, "creating the database")
        try Self.check(driver.pointee.DatabaseSetOption(&database, "uri", "chdb://\(dataDir)", &error), &error, "setting the data directory")
        do {
            try Self.check(driver.pointee.DatabaseInit(&database, &error), &error, "opening \(dataDir)")
        } catch {
            if error.description.contains("Cannot lock file") {
                throw StorageError("data directory \(dataDir) is in use by another process")
            }
            throw error
        }
        try Self.check(driver.pointee.ConnectionNew(&connection, &error), &error, "creating a connection")
        try Self.check(driver.pointee.ConnectionInit(&connection, &database, &error), &error, "connecting")
    }

    deinit {
        close()
        driver.deallocate()
    }

    private var closed = false

    /// Closes the engine; later statements fail with "closed". Call it on the main thread
    /// before the process exits: chdb's own exit handlers and a release of the engine on
    /// another thread during exit deadlock on chdb's locks (seen with `server`, whose gRPC
    /// tasks held the last reference).
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        var error = AdbcError()
        _ = driver.pointee.ConnectionRelease(&connection, &error)
        Self.release(&error)
        _ = driver.pointee.DatabaseRelease(&database, &error)
        Self.release(&error)
    }

    static func release(_ error: inout AdbcError) {
        if let release = error.release { release(&error) }
        error = AdbcError()
    }

    static func check(_ status: AdbcStatusCode, _ error: inout AdbcError, _ what: String) throws(StorageError) {
        defer { release(&error) }
        guard status != IS_ADBC_STATUS_OK else { return }
        var message = error.message.map { String(cString: $0) } ?? "ADBC status \(status)"
        if message.hasPrefix("[chdb] ") { message.removeFirst(7) }
        // ClickHouse appends a stack trace after the first line in some builds.
        message = message.split(separator: "\n").first.map(String.init) ?? message
        throw StorageError("\(what): \(message)")
    }

    /// Runs one statement and returns its result as Arrow batches (empty for statements
    /// without output).
    @discardableResult
    public func execute(_ sql: String) throws(StorageError) -> ArrowResult {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { throw StorageError("embedded ClickHouse at \(dataDir) is closed") }
        var error = AdbcError()
        var statement = AdbcStatement()
        try Self.check(driver.pointee.StatementNew(&connection, &statement, &error), &error, "creating a statement")
        defer {
            _ = driver.pointee.StatementRelease(&statement, &error)
            Self.release(&error)
        }
        try Self.check(driver.pointee.StatementSetSqlQuery(&statement, sql, &error), &error, "query")
        var stream = ArrowArrayStream()
        var rows: Int64 = -1
        try Self.check(driver.pointee.StatementExecuteQuery(&statement, &stream, &rows, &error), &error, "query")
        return ArrowResult(consuming: &stream, affectedRows: rows)
    }
}
