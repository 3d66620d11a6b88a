import CChdbADBC
import Foundation
import Glibc
import InfraSightCore

/// The ClickHouse engine in-process (chdb), on one data directory. One process may hold a
/// data directory at a time (ClickHouse locks it). Thread-safe: statements are serialized
/// per session.
///
/// Two sessions (ADBC connections; chdb keeps SET and temporary tables per connection,
/// measured with 26.9): the program's own, for DDL, inserts and its lookups, and a guarded
/// one for statements from outside the program, opened on first use with `SET readonly =
/// 1`. On that session ClickHouse refuses every write, DDL, table function and setting
/// change, and a statement cannot lower `readonly` again (measured: "Cannot modify
/// 'readonly' setting in readonly mode"); the program's session is untouched. (chdb's
/// ADBC option `adbc.connection.readonly` sets `readonly = 2`, which still lets
/// `INSERT INTO FUNCTION file(...)` through, so it is not used.)
public final class EmbeddedClickHouse: @unchecked Sendable {
    public let dataDir: String
    private let driver: UnsafeMutablePointer<AdbcDriver>
    private var database = AdbcDatabase()
    private var connection = AdbcConnection()
    private let lock = NSLock()
    private var guardedConnection = AdbcConnection()
    private var guardedOpen = false
    /// Taken after `lock` when both are needed (close), so a long user query never holds
    /// up the program's inserts.
    private let guardedLock = NSLock()
    /// A third session, the program's own, for the detection rules (`runRules`): evaluating
    /// rules on a stored batch never waits on the next insert. Taken after `guardedLock`.
    private var rulesConnection = AdbcConnection()
    private var rulesOpen = false
    private let rulesLock = NSLock()

    /// Opens (or creates) `dataDir`, mode 0700: it is tightened in place when an older
    /// version left it looser, if it is empty or already a ClickHouse data directory (has
    /// `metadata`) or holds only the agent's `spool`.
    public init(dataDir: String, library: String? = nil) throws(StorageError) {
        self.dataDir = dataDir
        do {
            try PrivateDirectory.prepare(dataDir) { $0.isEmpty || $0.contains("metadata") || $0 == ["spool"] }
        } catch {
            throw StorageError("data directory: \(error)")
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
        guardedLock.lock()
        rulesLock.lock()
        defer {
            rulesLock.unlock()
            guardedLock.unlock()
            lock.unlock()
        }
        guard !closed else { return }
        closed = true
        var error = AdbcError()
        if guardedOpen {
            _ = driver.pointee.ConnectionRelease(&guardedConnection, &error)
            Self.release(&error)
        }
        if rulesOpen {
            _ = driver.pointee.ConnectionRelease(&rulesConnection, &error)
            Self.release(&error)
        }
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

    /// Runs one statement of the program's own and returns its result as Arrow batches
    /// (empty for statements without output).
    @discardableResult
    public func execute(_ sql: String) throws(StorageError) -> ArrowResult {
        lock.lock()
        defer { lock.unlock() }
        return try result(of: sql, on: &connection)
    }

    /// Runs one statement from outside the program on the read-only session and returns
    /// its result as Arrow batches, `parameters` bound to its `{name:Type}` placeholders.
    public func executeReadOnly(_ sql: String, parameters: [String: String] = [:]) throws(StorageError) -> ArrowResult {
        guardedLock.lock()
        defer { guardedLock.unlock() }
        try openGuarded()
        try bind(parameters)
        return try result(of: sql, on: &guardedConnection)
    }

    /// Runs one statement without reading a result: the engine then produces the output
    /// itself, so an `INTO OUTFILE` clause is honoured (through the Arrow result it is
    /// ignored and no file is written, measured with 26.9). On the read-only session when
    /// `readOnly`, where `parameters` are bound to its `{name:Type}` placeholders.
    public func run(_ sql: String, readOnly: Bool, parameters: [String: String] = [:]) throws(StorageError) {
        let held = readOnly ? guardedLock : lock
        held.lock()
        defer { held.unlock() }
        if readOnly {
            try openGuarded()
            try bind(parameters)
            _ = try statement(sql, on: &guardedConnection, stream: nil)
        } else {
            _ = try statement(sql, on: &connection, stream: nil)
        }
    }

    /// Runs one of the program's statements on the rules session (opened on first use) and
    /// returns its result as Arrow batches.
    @discardableResult
    public func executeRules(_ sql: String) throws(StorageError) -> ArrowResult {
        rulesLock.lock()
        defer { rulesLock.unlock() }
        try openRules()
        return try result(of: sql, on: &rulesConnection)
    }

    /// Like `executeRules`, without reading a result, so `INTO OUTFILE` is honoured.
    public func runRules(_ sql: String) throws(StorageError) {
        rulesLock.lock()
        defer { rulesLock.unlock() }
        try openRules()
        _ = try statement(sql, on: &rulesConnection, stream: nil)
    }

    /// Opens the rules session once (caller holds `rulesLock`).
    private func openRules() throws(StorageError) {
        guard !closed else { throw StorageError("embedded ClickHouse at \(dataDir) is closed") }
        guard !rulesOpen else { return }
        var adbcError = AdbcError()
        try Self.check(driver.pointee.ConnectionNew(&rulesConnection, &adbcError), &adbcError, "creating the rules connection")
        try Self.check(driver.pointee.ConnectionInit(&rulesConnection, &database, &adbcError), &adbcError, "connecting the rules session")
        rulesOpen = true
    }

    /// Sets each query parameter on the read-only session (caller holds `guardedLock`),
    /// the one way chdb takes them (measured in 26.9: `SET param_x` binds `{x:T}` under
    /// `readonly = 1`; a `SETTINGS` clause in the query does not). The value goes in a
    /// string literal, escaped twice: for the literal, and for the escaped text form in
    /// which the engine then reads the parameter. Names were checked by `ReadOnlyQuery`.
    private func bind(_ parameters: [String: String]) throws(StorageError) {
        for (name, value) in parameters.sorted(by: { $0.key < $1.key }) {
            precondition(ReadOnlyQuery.isParameterName(name), "unchecked parameter name")
            let literal = sqlStringLiteral(ReadOnlyQuery.escapedParameter(value))
            _ = try result(of: "SET param_\(name) = \(literal)", on: &guardedConnection)
        }
    }

    /// Opens the read-only session once (caller holds `guardedLock`) and checks that the
    /// engine reports `readonly = 1` on it before anything else runs there.
    private func openGuarded() throws(StorageError) {
        guard !closed else { throw StorageError("embedded ClickHouse at \(dataDir) is closed") }
        guard !guardedOpen else { return }
        var adbcError = AdbcError()
        var fresh = AdbcConnection()
        try Self.check(driver.pointee.ConnectionNew(&fresh, &adbcError), &adbcError, "creating the read-only connection")
        do {
            try Self.check(driver.pointee.ConnectionInit(&fresh, &database, &adbcError), &adbcError, "connecting the read-only session")
            _ = try result(of: "SET readonly = 1", on: &fresh)
            let setting = try result(of: "SELECT toString(getSetting('readonly'))", on: &fresh)
            guard setting.rows.first?.first == .bytes(Array("1".utf8)) else {
                throw StorageError("it reports readonly = \(setting.tsv.trimmingCharacters(in: .whitespacesAndNewlines)), not 1")
            }
        } catch {
            _ = driver.pointee.ConnectionRelease(&fresh, &adbcError)
            Self.release(&adbcError)
            throw StorageError("cannot open a read-only session on \(dataDir): \(error)")
        }
        guardedConnection = fresh
        guardedOpen = true
    }

    /// One statement on `connection` (its lock held), its result read into Arrow values.
    private func result(of sql: String, on connection: inout AdbcConnection) throws(StorageError) -> ArrowResult {
        var stream = ArrowArrayStream()
        let rows = try statement(sql, on: &connection, stream: &stream)
        return ArrowResult(consuming: &stream, affectedRows: rows)
    }

    /// Executes one statement; `stream` receives the result when given. Returns the
    /// affected row count (-1 when the engine has none).
    private func statement(_ sql: String, on connection: inout AdbcConnection, stream: UnsafeMutablePointer<ArrowArrayStream>?) throws(StorageError) -> Int64 {
        guard !closed else { throw StorageError("embedded ClickHouse at \(dataDir) is closed") }
        var error = AdbcError()
        var statement = AdbcStatement()
        try Self.check(driver.pointee.StatementNew(&connection, &statement, &error), &error, "creating a statement")
        defer {
            _ = driver.pointee.StatementRelease(&statement, &error)
            Self.release(&error)
        }
        try Self.check(driver.pointee.StatementSetSqlQuery(&statement, sql, &error), &error, "query")
        var rows: Int64 = -1
        try Self.check(driver.pointee.StatementExecuteQuery(&statement, stream, &rows, &error), &error, "query")
        return rows
    }
}
