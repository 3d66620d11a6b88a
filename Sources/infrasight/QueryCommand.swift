import ArgumentParser
import Foundation
import InfraSightCore
import InfraSightStorage

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Run SQL against the store and print the result (TSV by default, like clickhouse-client).",
        discussion: """
            One read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS), run with ClickHouse's \
            readonly = 1; INTO OUTFILE and functions that reach files, other servers or programs (file, url, \
            s3, executable, ...) are refused. With the embedded engine this works while `infrasight run` \
            holds the data directory (it answers over a unix socket there, to root and the directory's \
            owner) and when nothing is running.
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
        // The same checks and readonly session whether a running process answers or the
        // store is opened here: the command is a read-only tool either way (a stopped store
        // opened by root is no less worth protecting from a pasted statement, and DDL has
        // `schema apply`).
        var output: Data
        do {
            if storage.serverURL(config) == nil,
                let answer = try QueryServer.ask(dataDir: storage.resolvedDataDir(config), sql: sql, format: format)
            {
                output = answer
            } else {
                let query = try ReadOnlyQuery(sql, format: format)
                let store = try storage.open(config)
                defer { store.close() }
                output = try store.readOnlyQuery(query)
            }
        } catch let error as StorageError {
            throw failure(error.description)
        }
        FileHandle.standardOutput.write(output)
    }
}
