import ArgumentParser
import Foundation
import Logging

@main
struct InfraSight: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infrasight",
        abstract: "An eBPF auditing tracer: process launches, file opens, permission changes and more, with the user and container behind them.",
        subcommands: [RunCommand.self, AgentCommand.self, ServerCommand.self, TraceCommand.self, QueryCommand.self, QueriesCommand.self, RulesCommand.self, SchemaCommand.self, PluginsCommand.self, DoctorCommand.self])

    /// A command-line mistake (unknown option, bad value, failed validation) is one line on
    /// stderr, `infrasight: MESSAGE (see --help)`, and exit status 64 (EX_USAGE), as every other error
    /// a user can cause; ArgumentParser's own default adds a usage block. `--help` and
    /// errors thrown while a command runs go through ArgumentParser unchanged.
    static func main() {
        // Everything this process creates holds or describes captured events (the
        // embedded data files, scratch batches, query output, the agent's spool, the query
        // socket): private to its owner, whatever umask the process was started with.
        umask(0o077)
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            guard exitCode(for: error) != .success else { exit(withError: error) }
            let text = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            printError("\(text) (see --help)")
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        do {
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    static func bootstrapLogging() {
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label) }
    }
}
