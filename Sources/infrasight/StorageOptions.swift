import ArgumentParser
import Foundation
import InfraSightCore
import InfraSightStorage
import Logging

/// `--data-dir DIR | --clickhouse-url URL`: where rows are stored and queried.
struct StorageOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: ArgumentHelp("Embedded ClickHouse data directory (default: /var/lib/infrasight as root, else ~/.local/share/infrasight).", valueName: "DIR"))
    var dataDir: String?

    @Option(name: .customLong("clickhouse-url"), help: ArgumentHelp("A ClickHouse server instead of the embedded engine: http(s)://user:password@host:8123/ (or set INFRASIGHT_CLICKHOUSE_URL, which keeps the password out of ps).", valueName: "URL"))
    var clickHouseURL: String?

    func validate() throws {
        if dataDir != nil && clickHouseURL != nil {
            throw ValidationError("--data-dir and --clickhouse-url are alternatives; give one")
        }
    }

    /// The server URL from the flag, the environment or the config, if any.
    func serverURL(_ config: InfraSightConfig) -> String? {
        if dataDir != nil { return nil }
        if let clickHouseURL { return clickHouseURL }
        if let env = ProcessInfo.processInfo.environment["INFRASIGHT_CLICKHOUSE_URL"], !env.isEmpty { return env }
        return config.storage.clickHouseURL
    }

    func resolvedDataDir(_ config: InfraSightConfig) -> String {
        let dir = dataDir ?? config.storage.dataDir ?? StorageConfig.defaultDataDir
        return dir.hasPrefix("/") ? dir : FileManager.default.currentDirectoryPath + "/" + dir
    }

    /// Runs a read-only query built by `make`: through the query socket of a process that
    /// holds the embedded store, else on the store opened here; a refusal or store error
    /// is one line and exit 1.
    func readOnly(_ config: InfraSightConfig, _ make: () throws(StorageError) -> ReadOnlyQuery) throws -> Data {
        do {
            let query = try make()
            if serverURL(config) == nil,
                let answer = try QueryServer.ask(dataDir: resolvedDataDir(config), sql: query.sql, format: query.format, parameters: query.parameters)
            {
                return answer
            }
            let store = try open(config)
            defer { store.close() }
            return try store.readOnlyQuery(query)
        } catch let error as StorageError {
            throw failure(error.description)
        }
    }

    /// Opens the store, or throws an ExitCode after printing one line. The store keeps
    /// `storage.retention` for the tables it prepares, and says each change through `notice`.
    /// `budgeted`: the store keeps `storage.max_disk` (for the processes that write: run,
    /// server); others (queries, `schema apply`) never drop data.
    func open(_ config: InfraSightConfig, budgeted: Bool = false, notice: @escaping @Sendable (String) -> Void = { _ in }) throws -> EventStore {
        do {
            let limits = QueryLimits(config.storage)
            let retention: StoreRetention
            let budget: StoreBudget
            let store: EventStore
            if let url = serverURL(config) {
                let http = try HTTPStore(url: url, limits: limits)
                (store, retention, budget) = (http, http.retention, http.budget)
            } else {
                let embedded = try EmbeddedStore(dataDir: resolvedDataDir(config), library: config.storage.chdbLibrary, limits: limits)
                (store, retention, budget) = (embedded, embedded.retention, embedded.budget)
            }
            retention.policy = RetentionPolicy(config.storage)
            retention.notice = notice
            if budgeted {
                budget.limit = config.storage.maxDisk
                budget.sparesExistingTables = !config.storage.maxDiskConfigured
                // What retention keeps forever, the budget keeps too.
                budget.exempt = Set(config.storage.tableRetention.filter { $0.value == nil }.keys)
                budget.notice = notice
            }
            return store
        } catch {
            throw failure(error.description)
        }
    }
}

/// With embedded ClickHouse, answers `infrasight query` on DATA_DIR/query.sock while this
/// process holds the data directory; a failure to listen is a warning, not an error.
func startQueryServer(_ store: EventStore, logger: Logger, unavailable: String) -> QueryServer? {
    guard let embedded = store as? EmbeddedStore else { return nil }
    do {
        let server = try QueryServer(store: store, dataDir: embedded.engine.dataDir)
        server.start()
        return server
    } catch {
        logger.warning("\(unavailable): \(error)")
        return nil
    }
}
