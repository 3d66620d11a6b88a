import ArgumentParser
import InfraSightCore

/// Options of every command that loads plugins.
struct PluginSourceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE"))
    var config: String?

    @Option(name: .customLong("plugin-dir"), help: ArgumentHelp("Also search DIR for plugins (repeatable; searched first).", valueName: "DIR"))
    var pluginDirs: [String] = []

    /// The config, or an ExitCode after printing the one-line error.
    func loadConfig() throws -> InfraSightConfig { try infrasight.loadConfig(config) }

    func catalog(_ config: InfraSightConfig) -> PluginCatalog {
        PluginCatalog.discover(config: config, extraDirs: pluginDirs)
    }
}

/// The config file at `path` (or the default), or an ExitCode after printing its one-line
/// error (exit 2): every command reads its config this way.
func loadConfig(_ path: String?) throws -> InfraSightConfig {
    do {
        return try InfraSightConfig.load(path: path)
    } catch {
        throw failure(error.description, code: 2)
    }
}
