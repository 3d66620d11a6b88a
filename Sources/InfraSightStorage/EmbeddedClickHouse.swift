import CChdbADBC
import Foundation
import Synchronization
import Glibc
import InfraSightCore

/// The ClickHouse engine in-process (chdb), on one data directory. One process may hold a
/// data directory at a time (ClickHouse locks it). Thread-safe: statements are serialized
/// per session.
///
/// Sessions (ADBC connections; chdb keeps SET and temporary tables per connection,
/// measured with 26.9): the program's own, for DDL, inserts and its lookups, and a few
/// guarded ones for statements from outside the program (`QueryLimits.concurrency`, so
/// one slow statement does not hold up the others), each opened on first use with the
/// limits of `QueryLimits` and then `SET readonly = 1`. On those sessions ClickHouse
/// refuses every write, DDL and setting change, and a statement can neither lower
/// `readonly` nor raise a limit (measured: "Cannot modify 'readonly' setting in readonly
/// mode"); the program's session is untouched. `readonly` is not enough on its own: 26.9
/// runs the scalar `file('/etc/shadow')` under it, and table functions like `numbers()`;
/// `FunctionGuard` decides which functions run. (chdb's
/// ADBC option `adbc.connection.readonly` sets `readonly = 2`, which still lets
/// `INSERT INTO FUNCTION file(...)` through, so it is not used.)
public final class EmbeddedClickHouse: @unchecked Sendable {
    public let dataDir: String
    private let driver: UnsafeMutablePointer<AdbcDriver>
    private var database = AdbcDatabase()
    private var connection = AdbcConnection()
    private let lock = NSLock()
    /// Limits fixed on each read-only session before `readonly = 1`.
    public let limits: QueryLimits
    /// The read-only sessions; each lock is taken after `lock` when both are needed
    /// (close), so a long user query never holds up the program's inserts.
    private let guardedSessions: [GuardedSession]
    /// Round-robin start for a caller that finds every read-only session busy.
    private let nextGuarded = NSLock()
    private var guardedTurn = 0
    /// A third session, the program's own, for the detection rules (`runRules`): evaluating
    /// rules on a stored batch never waits on the next insert. Taken after the read-only sessions' locks.
    private var rulesConnection = AdbcConnection()
    private var rulesOpen = false
    private let rulesLock = NSLock()

    /// Opens (or creates) `dataDir`, mode 0700: it is tightened in place when an older
    /// version left it looser, if it is empty or already a ClickHouse data directory (has
    /// `metadata`) or holds only the agent's `spool`.
    public init(dataDir: String, library: String? = nil, limits: QueryLimits = QueryLimits()) throws(StorageError) {
        self.dataDir = dataDir
        self.limits = limits
        guardedSessions = (0..<max(1, limits.concurrency)).map { _ in GuardedSession() }
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
        Self.open.withLock { engines in
            engines.removeAll { $0.engine == nil }
            engines.append(WeakEngine(engine: self))
        }
        if !Self.exitHookInstalled.exchange(true, ordering: .relaxed) {
            // Registered after chdb is loaded, so it runs before chdb's own exit handlers
            // (they run in reverse order of registration).
            on_exit({ status, _ in EmbeddedClickHouse.exitWithEnginesOpen(status) }, nil)
        }
    }

    deinit {
        close()
        driver.deallocate()
    }

    /// The engines not released yet (a process may hold one for its whole life: a test
    /// suite's shared store, a benchmark's).
    private struct WeakEngine { weak var engine: EmbeddedClickHouse? }
    private static let open = Mutex<[WeakEngine]>([])
    private static let exitHookInstalled = Atomic<Bool>(false)
    /// Set by `close` (read at exit without taking `lock`, which a running query holds).
    private let isClosed = Atomic<Bool>(false)

    /// At exit, before chdb's own exit handlers: when an engine is still open, the
    /// process ends here, its output flushed, with the status it was exiting with.
    ///
    /// Left to them, chdb's exit handlers freed the engine while its background threads
    /// still worked on the open database, and the process died with SIGSEGV after every
    /// test had passed (core: `__run_exit_handlers` → chdb → `operator delete`); closing
    /// the engine from an exit handler instead hung (chdb's release waits on its threads
    /// while the exiting thread holds the exit locks). Every row an insert returned for is
    /// already on disk (MergeTree writes parts synchronously), so ending now loses
    /// nothing. A program that closed its engines (every command does, before it
    /// returns) exits normally.
    static func exitWithEnginesOpen(_ status: Int32) {
        let anyOpen = open.withLock { list in list.contains { $0.engine.map { !$0.isClosed.load(ordering: .relaxed) } ?? false } }
        guard anyOpen else { return }
        fflush(nil)
        _exit(status)
    }

    private var closed = false

    /// Closes the engine; later statements fail with "closed". Call it on the main thread
    /// before the process exits: chdb's own exit handlers and a release of the engine on
    /// another thread during exit deadlock on chdb's locks (seen with `server`, whose gRPC
    /// tasks held the last reference).
    public func close() {
        lock.lock()
        for session in guardedSessions { session.lock.lock() }
        rulesLock.lock()
        defer {
            rulesLock.unlock()
            for session in guardedSessions.reversed() { session.lock.unlock() }
            lock.unlock()
        }
        guard !closed else { return }
        closed = true
        isClosed.store(true, ordering: .relaxed)
        var error = AdbcError()
        for session in guardedSessions { closeSession(session) }
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

    /// One read-only session, its connection used only with `lock` held.
    final class GuardedSession: @unchecked Sendable {
        let lock = NSLock()
        var connection = AdbcConnection()
        var open = false
        /// Parameter names bound on this connection since it was opened.
        var namesBound = Set<String>()
    }

    /// A session that has bound more parameter names than this is closed after its
    /// statement (and opened afresh on next use): chdb keeps every `param_` setting a
    /// session was given, and each one slows every later statement there.
    static let maxParameterNames = 256

    /// A read-only session lent to `body`: statements from outside the program run there,
    /// with `parameters` bound to their `{name:Type}` placeholders.
    public struct ReadOnlySession {
        let engine: EmbeddedClickHouse
        let session: GuardedSession

        /// Runs `sql` and returns its result as Arrow batches.
        public func execute(_ sql: String) throws(StorageError) -> ArrowResult {
            try engine.result(of: sql, on: &session.connection)
        }

        /// Runs `sql` without reading a result: the engine then produces the output itself,
        /// so an `INTO OUTFILE` clause is honoured (through the Arrow result it is ignored
        /// and no file is written, measured with 26.9).
        public func run(_ sql: String) throws(StorageError) {
            _ = try engine.statement(sql, on: &session.connection, stream: nil)
        }
    }

    /// Calls `body` with a free read-only session (opened with the limits on first use),
    /// `parameters` bound; waits for one when all are busy.
    public func withReadOnlySession<T>(parameters: [String: String] = [:], _ body: (ReadOnlySession) throws(StorageError) -> T) throws(StorageError) -> T {
        let session = takeGuardedSession()
        defer { session.lock.unlock() }
        try openGuarded(session)
        try bind(parameters, on: session)
        defer { unbind(parameters, on: session) }
        return try body(ReadOnlySession(engine: self, session: session))
    }

    /// Sets the statement's parameters back to '' (the next asker on this session does
    /// not read them), and closes a session that has bound too many names, or when that fails.
    private func unbind(_ parameters: [String: String], on session: GuardedSession) {
        guard !parameters.isEmpty else { return }
        var failed = false
        for name in parameters.keys.sorted() where !failed {
            do {
                _ = try result(of: "SET param_\(name) = ''", on: &session.connection)
            } catch {
                failed = true
            }
        }
        guard failed || session.namesBound.count > Self.maxParameterNames else { return }
        closeSession(session)
    }

    /// Releases a read-only session's connection, if open (its lock held); the next use
    /// opens it afresh.
    private func closeSession(_ session: GuardedSession) {
        guard session.open else { return }
        var adbcError = AdbcError()
        _ = driver.pointee.ConnectionRelease(&session.connection, &adbcError)
        Self.release(&adbcError)
        session.connection = AdbcConnection()
        session.open = false
        session.namesBound = []
    }

    /// A free session, its lock held: the first not in use, else the next in turn (waited for).
    private func takeGuardedSession() -> GuardedSession {
        for session in guardedSessions where session.lock.try() { return session }
        nextGuarded.lock()
        guardedTurn = (guardedTurn + 1) % guardedSessions.count
        let session = guardedSessions[guardedTurn]
        nextGuarded.unlock()
        session.lock.lock()
        return session
    }

    /// Runs one statement from outside the program on a read-only session and returns
    /// its result as Arrow batches, `parameters` bound to its `{name:Type}` placeholders.
    public func executeReadOnly(_ sql: String, parameters: [String: String] = [:]) throws(StorageError) -> ArrowResult {
        try withReadOnlySession(parameters: parameters) { session throws(StorageError) in try session.execute(sql) }
    }

    /// Runs one statement without reading a result: the engine then produces the output
    /// itself, so an `INTO OUTFILE` clause is honoured. The program's own statement unless
    /// `readOnly`: then on a read-only session, `parameters` bound.
    public func run(_ sql: String, readOnly: Bool, parameters: [String: String] = [:]) throws(StorageError) {
        if readOnly {
            try withReadOnlySession(parameters: parameters) { session throws(StorageError) in try session.run(sql) }
            return
        }
        lock.lock()
        defer { lock.unlock() }
        _ = try statement(sql, on: &connection, stream: nil)
    }

    /// Stops the running statements whose text contains `marker` (a scratch file's path,
    /// unique to one statement), without waiting for them to end. A failure is left to the
    /// statement's own limits (`QueryLimits.seconds`), which stop it anyway.
    public func kill(containing marker: String) {
        do {
            // Split in two, so this statement's own text does not hold the marker.
            let half = marker.index(marker.startIndex, offsetBy: marker.count / 2)
            try execute("KILL QUERY WHERE position(query, concat(\(sqlStringLiteral(String(marker[..<half]))), \(sqlStringLiteral(String(marker[half...]))))) > 0 ASYNC")
        } catch {
            FileHandle.standardError.write(Data("infrasight: warning: cannot stop an abandoned query: \(error)\n".utf8))
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

    /// Sets each query parameter on a read-only session (its lock held), the one way chdb
    /// takes them (measured in 26.9: `SET param_x` binds `{x:T}` under `readonly = 1`; a
    /// `SETTINGS` clause in the query does not). The value goes in a string literal,
    /// escaped twice: for the literal, and for the escaped text form in which the engine
    /// then reads the parameter. Names were checked by `ReadOnlyQuery`.
    private func bind(_ parameters: [String: String], on session: GuardedSession) throws(StorageError) {
        for (name, value) in parameters.sorted(by: { $0.key < $1.key }) {
            precondition(ReadOnlyQuery.isParameterName(name), "unchecked parameter name")
            let literal = sqlStringLiteral(ReadOnlyQuery.escapedParameter(value))
            session.namesBound.insert(name)
            _ = try result(of: "SET param_\(name) = \(literal)", on: &session.connection)
        }
    }

    /// Opens a read-only session once (its lock held): the limits first, then `readonly =
    /// 1`, and checks that the engine reports both before anything else runs there.
    private func openGuarded(_ session: GuardedSession) throws(StorageError) {
        guard !closed else { throw StorageError("embedded ClickHouse at \(dataDir) is closed") }
        guard !session.open else { return }
        var adbcError = AdbcError()
        var fresh = AdbcConnection()
        try Self.check(driver.pointee.ConnectionNew(&fresh, &adbcError), &adbcError, "creating the read-only connection")
        do {
            try Self.check(driver.pointee.ConnectionInit(&fresh, &database, &adbcError), &adbcError, "connecting the read-only session")
            for setting in limits.settings {
                // A number as it is; a word (`throw`) as a string literal.
                let literal = Int(setting.value) != nil ? setting.value : sqlStringLiteral(setting.value)
                _ = try result(of: "SET \(setting.name) = \(literal)", on: &fresh)
            }
            _ = try result(of: "SET readonly = 1", on: &fresh)
            let names = ["readonly"] + limits.settings.map(\.name)
            let reported = try result(of: "SELECT " + names.map { "toString(getSetting('\($0)'))" }.joined(separator: ", "), on: &fresh)
            let expected = ["1"] + limits.settings.map(\.value)
            let got = reported.rows.first?.map { value -> String in
                if case .bytes(let b) = value { return String(decoding: b, as: UTF8.self) }
                return "\(value)"
            } ?? []
            guard got == expected else {
                throw StorageError("it reports \(zip(names, got).map { "\($0) = \($1)" }.joined(separator: ", ")), not \(zip(names, expected).map { "\($0) = \($1)" }.joined(separator: ", "))")
            }
        } catch {
            _ = driver.pointee.ConnectionRelease(&fresh, &adbcError)
            Self.release(&adbcError)
            throw StorageError("cannot open a read-only session on \(dataDir): \(error)")
        }
        session.connection = fresh
        session.open = true
    }

    /// One statement on `connection` (its lock held), its result read into Arrow values.
    fileprivate func result(of sql: String, on connection: inout AdbcConnection) throws(StorageError) -> ArrowResult {
        var stream = ArrowArrayStream()
        let rows = try statement(sql, on: &connection, stream: &stream)
        return ArrowResult(consuming: &stream, affectedRows: rows)
    }

    /// Executes one statement; `stream` receives the result when given. Returns the
    /// affected row count (-1 when the engine has none).
    fileprivate func statement(_ sql: String, on connection: inout AdbcConnection, stream: UnsafeMutablePointer<ArrowArrayStream>?) throws(StorageError) -> Int64 {
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
