import ArgumentParser
import InfraSightCore

/// Options of every command that loads plugins.
struct PluginSourceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE"))
    var config: String?

    @Option(name: .customLong("plugin-dir"), help: ArgumentHelp("Also search DIR for plugins (repeatable; searched first).", valueName: "DIR"))
    var pluginDirs: [String] = []

    /// The config, or an ExitCode after printing the one-line error.
    func loadConfig() throws -> InfraSightConfig {
        do {
            return try InfraSightConfig.load(path: config)
        } catch {
            throw failure(error.description, code: 2)
        }
    }

    func catalog(_ config: InfraSightConfig) -> PluginCatalog {
        PluginCatalog.discover(config: config, extraDirs: pluginDirs)
    }
}
