import ArgumentParser
import InfraSightCore
import Logging

/// What `trace`, `run` and `agent` share: choose the plugins, report the refused ones.
struct PluginSelection {
    let config: InfraSightConfig
    let plugins: [LoadedPlugin]

    /// `names`: the plugins named on the command line, or nil for the enabled ones.
    init(source: PluginSourceOptions, names: [String]?, logger: Logger) throws {
        config = try source.loadConfig()
        let catalog = source.catalog(config)
        do {
            plugins = try catalog.active(names: names)
        } catch {
            throw failure(error.description)
        }
        for e in catalog.entries where e.status == .error && (names == nil || names!.contains(e.name ?? "")) {
            logger.warning("\(e.path): \(e.error ?? "error")")
        }
        guard !plugins.isEmpty else { throw failure("no plugin enabled; searched: \(catalog.searchedDirs.joined(separator: ", "))") }
    }

    /// Loads and attaches the plugins; reports the ones that fail and says which started.
    func start(consumer: RowConsumer, logger: Logger) throws -> ProbeRuntime {
        let runtime: ProbeRuntime
        do {
            runtime = try ProbeRuntime(plugins: plugins, config: config, enricher: Enricher(nodeName: config.nodeName), consumer: consumer, logger: logger)
        } catch {
            throw failure("\(error)")
        }
        for f in runtime.failures { logger.error("plugin \(f.plugin): \(f.reason)") }
        return runtime
    }

    static func names(_ list: String?) -> [String]? {
        list.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }
}
