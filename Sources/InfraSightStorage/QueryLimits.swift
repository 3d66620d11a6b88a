import InfraSightCore

/// Bounds on every statement from outside the program (query socket, console,
/// `rules test`), fixed on the engine before `readonly = 1`, so no statement can raise
/// them: under `readonly = 1` ClickHouse refuses every setting change, `SET` or `SETTINGS`.
///
/// The engine enforces each while the statement runs, before a result is materialised:
/// `max_execution_time` stops a scan of `system.numbers` after `seconds`;
/// `max_result_rows`/`max_result_bytes` (with `result_overflow_mode = 'throw'`) stop a
/// result growing past them; `max_memory_usage` stops a statement's working memory.
public struct QueryLimits: Equatable, Sendable {
    /// `storage.query_timeout`: wall-clock seconds a statement may run.
    public var seconds: Int
    /// `storage.query_max_result_rows`.
    public var maxResultRows: Int
    /// `storage.query_max_result_bytes`: uncompressed bytes of the result's blocks.
    public var maxResultBytes: Int
    /// `storage.query_max_memory`: bytes of working memory per statement.
    public var maxMemoryBytes: Int
    /// Statements that may run at once (one engine session each); more wait their turn.
    public var concurrency: Int

    public init(seconds: Int = 60, maxResultRows: Int = 1_000_000, maxResultBytes: Int = 256 << 20, maxMemoryBytes: Int = 2 << 30, concurrency: Int = 4) {
        self.seconds = seconds
        self.maxResultRows = maxResultRows
        self.maxResultBytes = maxResultBytes
        self.maxMemoryBytes = maxMemoryBytes
        self.concurrency = concurrency
    }

    /// The limits a config file's `storage:` section asks for (defaults where it is silent).
    public init(_ storage: StorageConfig) {
        self.init()
        if let v = storage.queryTimeout { seconds = v }
        if let v = storage.queryMaxResultRows { maxResultRows = v }
        if let v = storage.queryMaxResultBytes { maxResultBytes = v }
        if let v = storage.queryMaxMemory { maxMemoryBytes = v }
    }

    /// The settings, in the order they are set, each before `readonly = 1`, with their
    /// values as the engine reports them (`getSetting`) and takes them in a URL.
    public var settings: [(name: String, value: String)] {
        [
            ("max_execution_time", String(seconds)),
            ("timeout_overflow_mode", "throw"),
            ("max_result_rows", String(maxResultRows)),
            ("max_result_bytes", String(maxResultBytes)),
            ("result_overflow_mode", "throw"),
            ("max_memory_usage", String(maxMemoryBytes)),
        ]
    }
}
