import ArgumentParser
import Logging

@main
struct InfraSight: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infrasight",
        abstract: "An eBPF auditing tracer: process launches, file opens, permission changes and more, with the user and container behind them.",
        subcommands: [RunCommand.self, AgentCommand.self, ServerCommand.self, TraceCommand.self, QueryCommand.self, SchemaCommand.self, PluginsCommand.self])

    static func bootstrapLogging() {
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label) }
    }
}
