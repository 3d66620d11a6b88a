import ArgumentParser
import Foundation
import InfraSightCore
import InfraSightStorage

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Run SQL against the store and print the result (TSV by default, like clickhouse-client).",
        discussion: """
            With the embedded engine this works while `infrasight run` holds the data directory and when \
            nothing is running. While it runs, it answers over a unix socket there, to root and the \
            directory's owner only, one read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) \
            run with ClickHouse's readonly = 1; INTO OUTFILE and functions that reach files, other servers \
            or programs (file, url, s3, executable, ...) are refused.
            """)

    @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE")) var config: String?
    @OptionGroup var storage: StorageOptions
    @Option(help: "Any ClickHouse output format (TSV, TSVWithNames, JSONEachRow, PrettyCompact, CSV, ...).") var format = "TSV"
    @Argument(help: "The SQL statement.") var sql: String

    func run() throws {
        let config = try loadConfig(self.config)
        // Through the socket of a running process, a statement crosses from the caller to
        // that process (root's, usually): it is checked and runs read-only. Opened here, the
        // store is the caller's own: the embedded files they can already read and write, or
        // a server under their ClickHouse credentials. Nothing is crossed, so any statement
        // runs, as with clickhouse-local or clickhouse-client (set-up and maintenance need it).
        var output: Data
        do {
            if storage.serverURL(config) == nil,
                let answer = try QueryServer.ask(dataDir: storage.resolvedDataDir(config), sql: sql, format: format)
            {
                output = answer
            } else {
                let store = try storage.open(config)
                defer { store.close() }
                output = try store.query(sql, format: format)
            }
        } catch let error as StorageError {
            throw failure(error.description)
        }
        FileHandle.standardOutput.write(output)
    }
}
