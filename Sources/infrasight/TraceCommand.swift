import ArgumentParser
import Dispatch
import Foundation
import Glibc
import InfraSightCore
import Logging

extension TracePrinter.Format: ExpressibleByArgument {}

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Print live events from the enabled plugins (JSON lines or a table); a summary per plugin on exit.")

    @OptionGroup var source: PluginSourceOptions
    @Option(help: ArgumentHelp("Plugins to run, comma-separated (default: the enabled ones).", valueName: "a,b"))
    var plugins: String?
    @Option(help: ArgumentHelp("Stop after SECONDS.", valueName: "SECONDS")) var duration: Double?
    @Option(help: "Output format: json (one object per line) or table.") var format: TracePrinter.Format = .json

    func validate() throws {
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
    }

    func run() throws {
        InfraSight.bootstrapLogging()
        let logger = Logger(label: "infrasight")
        let selection = try PluginSelection(source: source, names: PluginSelection.names(plugins), logger: logger)
        let printer = TracePrinter(format: format)
        let runtime = try selection.start(consumer: printer, logger: logger)
        let deadline = duration.map { Date().addingTimeInterval($0) }
        try Lifecycle.run([
            LoopService("dispatcher", stop: { runtime.stop() }) {
                logger.notice("started: \(runtime.probes.map(\.name).joined(separator: ", "))")
                runtime.run(until: deadline) { printer.flush() }
                printer.flush()
            },
        ], logger: logger)
        for probe in runtime.probes {
            printError(SummaryLine(probe: probe, then: [("rows", probe.channel.counters.rows.load(ordering: .relaxed))]).text)
        }
        if let containers = SummaryLine.containers(runtime) { printError(containers.text) }
    }
}
