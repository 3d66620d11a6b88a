import ArgumentParser
import Foundation
import InfraSightCore
import InfraSightStorage

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Run SQL against the store and print the result (TSV by default, like clickhouse-client).",
        discussion: """
            With the embedded engine this works while `infrasight run` holds the data directory \
            (it answers read-only queries over a unix socket there) and when nothing is running.
            """)

    @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE")) var config: String?
    @OptionGroup var storage: StorageOptions
    @Option(help: "Any ClickHouse output format (TSV, TSVWithNames, JSONEachRow, PrettyCompact, CSV, ...).") var format = "TSV"
    @Argument(help: "The SQL statement.") var sql: String

    func run() throws {
        let config: InfraSightConfig
        do {
            config = try InfraSightConfig.load(path: self.config)
        } catch {
            throw failure(error.description, code: 2)
        }
        var output: Data
        do {
            if storage.serverURL(config) == nil,
                let answer = try QueryServer.ask(dataDir: storage.resolvedDataDir(config), sql: sql, format: format)
            {
                output = answer
            } else {
                let store = try storage.open(config)
                output = try store.query(sql, format: format)
                store.close()
            }
        } catch let error as StorageError {
            throw failure(error.description)
        }
        FileHandle.standardOutput.write(output)
    }
}
