import Foundation
import Glibc
import InfraSightCore
import InfraSightSchema
import Synchronization

/// The default store: embedded ClickHouse on a data directory.
///
/// Inserts write the batch's RowBinary to a file under the data directory and run
/// `INSERT INTO t (cols) FROM INFILE ... FORMAT RowBinary` (measured ~3x faster than
/// inline JSON). Query output is formatted by ClickHouse itself: the statement runs with
/// `INTO OUTFILE tmp FORMAT name` appended, any format; SHOW statements (whose
/// `INTO OUTFILE` chdb leaves empty) and the program's own non-SELECT statements come back
/// through Arrow and are printed as TSV.
///
/// Scratch files (batches, query output) live in DATA/infrasight-tmp, mode 0700; batch
/// files are created 0600.
public final class EmbeddedStore: EventStore, Sendable {
    public let engine: EmbeddedClickHouse
    /// How long rows are kept: applied as TTL by `prepare`.
    public let retention = StoreRetention()
    /// How much disk it may use: kept by dropping the oldest parts (`storage.max_disk`).
    public let budget = StoreBudget()
    let scratch: String
    private let sequence = Atomic<Int>(0)

    public init(dataDir: String, library: String?, limits: QueryLimits = QueryLimits()) throws(StorageError) {
        engine = try EmbeddedClickHouse(dataDir: dataDir, library: library, limits: limits)
        scratch = "\(dataDir)/infrasight-tmp"
        do {
            // Its name is this program's, inside the data directory: tightened whatever it holds.
            try PrivateDirectory.prepare(scratch) { _ in true }
        } catch {
            throw StorageError("scratch \(error)")
        }
        budget.store = self
        budget.ballast = "\(dataDir)/infrasight-reserve"
    }

    public var summary: String { "embedded ClickHouse at \(engine.dataDir)" }

    public func close() { engine.close() }

    public func prepare(_ tables: [TableSchema], migrated: (TableMigration) -> Void) throws(PrepareError) -> [TableSchema] {
        let prepared = tables.map { budget.creating($0.withDeduplicationWindow) }
        do {
            for db in Set(tables.compactMap(\.database)).sorted() {
                try engine.execute("CREATE DATABASE IF NOT EXISTS `\(db)`")
            }
            for t in prepared { try engine.execute(t.statement) }
        } catch {
            throw .store(error)
        }
        for t in prepared {
            if let migration = try migrate(t, onCluster: nil) { migrated(migration) }
            if let line = try ColumnCodecs.apply(t, read: { (sql: String) throws(StorageError) -> Data in try query(sql, format: "TabSeparated") },
                                                  alter: { (sql: String) throws(StorageError) in _ = try query(sql, format: "TabSeparated") }) {
                retention.notice(line)
            }
        }
        try retention.apply(prepared,
                            read: { (sql: String) throws(StorageError) -> Data in try query(sql, format: "TabSeparated") },
                            alter: { (sql: String) throws(StorageError) in _ = try query(sql, format: "TabSeparated") })
        budget.register(prepared)
        return prepared
    }

    /// A new path in the scratch directory (nothing is created).
    func scratchFile(_ suffix: String) -> String {
        "\(scratch)/\(getpid())-\(sequence.add(1, ordering: .relaxed).newValue).\(suffix)"
    }

    /// Writes `data` to a new scratch file, mode 0600 whatever the umask, and returns its
    /// path. O_EXCL: an existing file at that path is an error, never overwritten.
    func writeScratch(_ data: Data, suffix: String) throws(StorageError) -> String {
        let file = scratchFile(suffix)
        do {
            try PrivateFile.create(file, contents: data)
        } catch {
            throw error.errno == ENOSPC ? .noSpace(error.description) : StorageError(error.description)
        }
        return file
    }

    /// A full file system (ENOSPC writing the batch file, or ClickHouse's NOT_ENOUGH_SPACE)
    /// is `StorageError.noSpace`: retryable once the budget made room.
    public func insert(_ batch: Batch) throws(StorageError) {
        do {
            try insertOnce(batch)
        } catch {
            // The batch file's own ENOSPC (typed), or the engine's code (never its words).
            if error.isNoSpace { throw error }
            if StorageError.saysNoSpace(error.description) { throw .noSpace(error.description) }
            throw error
        }
    }

    private func insertOnce(_ batch: Batch) throws(StorageError) {
        let file = try writeScratch(batch.bytes, suffix: "rowbinary")
        defer { unlink(file) }
        let result = try engine.execute(
            "INSERT INTO \(batch.table.qualifiedName) \(batch.table.columnList) FROM INFILE \(sqlStringLiteral(file)) SETTINGS input_format_binary_read_json_as_string = 1, insert_deduplication_token = \(sqlStringLiteral(batch.id)) FORMAT RowBinary")
        // 0 rows: a batch id stored before (the deduplication token matched).
        if result.affectedRows > 0 && result.affectedRows != Int64(batch.rows) {
            throw StorageError("inserted \(result.affectedRows) of \(batch.rows) rows into \(batch.table.qualifiedName)")
        }
    }

    /// A value for inside single quotes.

    public func query(_ text: String, format: String) throws(StorageError) -> Data {
        let q = UserQuery(text)
        let format = q.format ?? format
        guard ReadOnlyQuery.isFormatName(format) else {
            throw StorageError("'\(format)' is not a ClickHouse format name (letters, digits and _ only)")
        }
        if q.isSelect { return try formatted(q.sql, format: format) }
        let result = try engine.execute(q.sql)
        return try Self.tsv(result, format: format, keyword: q.keyword)
    }

    /// Runs `query` on a read-only session (`QueryLimits` fixed, `readonly = 1`), after
    /// `FunctionGuard` has checked the engine's own parse of it on that session, with the
    /// same parameters bound.
    public func readOnlyQuery(_ query: ReadOnlyQuery) throws(StorageError) -> Data {
        let functions = try functionGuard()
        return try engine.withReadOnlySession(parameters: query.parameters) { session throws(StorageError) -> Data in
            // On a line of its own: a trailing `--` comment in the statement ends there.
            let ast = try session.execute("EXPLAIN AST\n\(query.sql)\n")
            try functions.check(ast: Self.strings(ast).compactMap(\.first).joined(separator: "\n"))
            if query.readsThroughArrow { return try Self.tsv(try session.execute(query.sql), format: query.format, keyword: query.keyword) }
            let file = scratchFile("out")
            defer { unlink(file) }
            let statement = "\(query.sql)\nINTO OUTFILE \(sqlStringLiteral(file)) FORMAT \(query.format)"
            // The scratch file's name is unique to this statement: it finds it among the
            // running ones, from the program's own session.
            let engine = self.engine
            let cap = engine.limits.maxResultBytes
            // The output, not only the engine's blocks, is bounded: a constant or
            // LowCardinality column counts its value once in `max_result_bytes` while the
            // format writes it on every row (400 MB from `repeat('x', 1000000) FROM
            // numbers(400)` under a 256 MiB limit). Past the cap the statement is stopped.
            let stop: @Sendable () -> Void = { engine.kill(containing: file) }
            let watch = OutputWatch(file: file, cap: cap, stop: stop)
            defer { watch.stop() }
            let run = { () throws(StorageError) in try session.run(statement) }
            do throws(StorageError) {
                if let cancellation = query.cancellation {
                    try cancellation.whileRunning(stop: stop, run)
                } else {
                    try run()
                }
            } catch {
                if watch.exceeded { throw Self.tooLarge(cap) }
                throw error
            }
            var st = stat()
            if watch.exceeded || (stat(file, &st) == 0 && Int(st.st_size) > cap) { throw Self.tooLarge(cap) }
            return try Self.output(file)
        }
    }

    /// The output a statement wrote to `file` with `INTO OUTFILE`.
    static func output(_ file: String) throws(StorageError) -> Data {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw StorageError("the query ran but its output \(file) cannot be read")
        }
        return data
    }

    static func tooLarge(_ cap: Int) -> StorageError {
        StorageError("the result is larger than \(cap) bytes (storage.query_max_result_bytes); narrow it (LIMIT, fewer or shorter columns)")
    }

    /// Watches a statement's output file from a thread of its own and calls `stop` once
    /// when it grows past `cap` bytes.
    final class OutputWatch: Sendable {
        private let done = Atomic<Bool>(false)
        private let over = Atomic<Bool>(false)
        private let finished = DispatchSemaphore(value: 0)

        init(file: String, cap: Int, stop: @escaping @Sendable () -> Void) {
            Thread.detachNewThread { [self] in
                defer { finished.signal() }
                var st = stat()
                while !done.load(ordering: .acquiring) {
                    if stat(file, &st) == 0 && Int(st.st_size) > cap {
                        over.store(true, ordering: .releasing)
                        stop()
                        return
                    }
                    usleep(20_000)
                }
            }
        }

        var exceeded: Bool { over.load(ordering: .acquiring) }

        func stop() {
            done.store(true, ordering: .releasing)
            finished.wait()
        }
    }

    private let functions = Mutex<FunctionGuard?>(nil)

    /// The engine's function lists, read once, on the program's own session (their ~1,900
    /// rows would pass a low `query_max_result_rows`).
    func functionGuard() throws(StorageError) -> FunctionGuard {
        try functions.withLock { (functions: inout FunctionGuard?) throws(StorageError) -> FunctionGuard in
            if let functions { return functions }
            let made = try FunctionGuard(
                catalogRows: Self.strings(try engine.execute(FunctionGuard.catalogSQL())),
                combinators: Self.strings(try engine.execute(FunctionGuard.combinatorsSQL)),
                tableFunctions: Self.strings(try engine.execute(FunctionGuard.tableFunctionsSQL)))
            functions = made
            return made
        }
    }

    /// Each row's values as text (strings as they are, numbers printed).
    public static func strings(_ result: ArrowResult) -> [[String]] {
        result.rows.map { row in
            row.map { value in
                switch value {
                case .bytes(let b): String(decoding: b, as: UTF8.self)
                case .int(let v): String(v)
                case .uint(let v): String(v)
                case .double(let v): String(v)
                case .bool(let v): v ? "1" : "0"
                case .null: ""
                case .unsupported(let what): what
                }
            }
        }
    }

    /// Runs the program's own `sql` with `INTO OUTFILE <scratch file> FORMAT <format>` appended (on a new
    /// line, so a trailing `--` comment cannot swallow it) and returns the file's bytes.
    /// The engine refuses to write over an existing file, so the fresh name is never
    /// anything but its own output.
    func formatted(_ sql: String, format: String) throws(StorageError) -> Data {
        let file = scratchFile("out")
        defer { unlink(file) }
        try engine.run("\(sql)\nINTO OUTFILE \(sqlStringLiteral(file)) FORMAT \(format)", readOnly: false)
        return try Self.output(file)
    }

    /// Output that came back through Arrow, as TSV; any other format is refused.
    static func tsv(_ result: ArrowResult, format: String, keyword: String) throws(StorageError) -> Data {
        guard format == "TSV" || format == "TabSeparated" || result.columns.isEmpty else {
            throw StorageError("--format \(format) needs a SELECT query; \(keyword) output is TSV only")
        }
        return Data(result.tsv.utf8)
    }
}

extension EmbeddedStore: BudgetedStore {
    public var diskBudget: StoreBudget? { budget }

    /// Through Arrow, in memory: on a full disk an answer written to a file would be lost.
    func budgetQuery(_ sql: String) throws(StorageError) -> String {
        try engine.execute(sql).tsv
    }

    func fileSystem() throws(StorageError) -> (used: Int64, total: Int64)? {
        var fs = statvfs()
        guard statvfs(engine.dataDir, &fs) == 0 else {
            throw StorageError("cannot read the file system of \(engine.dataDir): \(String(cString: strerror(errno)))")
        }
        let unit = Int64(fs.f_frsize)
        return ((Int64(fs.f_blocks) - Int64(fs.f_bfree)) * unit, Int64(fs.f_blocks) * unit)
    }

    /// The embedded engine drops a part at once (`old_parts_lifetime` is 0 there).
    var dropsParts: Bool { true }
    var keepsInactiveParts: Bool { false }
}
