import ArgumentParser
import InfraSightContainers
import InfraSightCore
import Logging

/// What `trace`, `run` and `agent` share: choose the plugins, report the refused ones.
struct PluginSelection {
    let config: InfraSightConfig
    let plugins: [LoadedPlugin]

    /// `names`: the plugins named on the command line, or nil for the enabled ones.
    init(source: PluginSourceOptions, names: [String]?, logger: Logger) throws {
        config = try source.loadConfig()
        // Plugins named on the command line are the enabled ones for this run: the others
        // are not loaded at all (a plugin's code runs only when it is wanted).
        var selecting = config
        if let names { selecting.enabledPlugins = names }
        let catalog = source.catalog(selecting)
        do {
            plugins = try catalog.active(names: names)
        } catch {
            throw failure(error.description)
        }
        // Refused files are worth a warning only when they were wanted.
        let wanted = selecting.enabledPlugins
        for e in catalog.entries where e.status == .error && (wanted == nil || wanted!.contains(e.name ?? "")) {
            logger.warning("\(e.path): \(e.error ?? "error")")
        }
        guard !plugins.isEmpty else { throw failure("no plugin enabled; searched: \(catalog.searchedDirs.joined(separator: ", "))") }
        // A required plugin whose file was refused stops the process here; one that cannot
        // start on this kernel stops it in ProbeRuntime.
        let running = Set(plugins.map(\.name))
        for name in config.requiredPlugins where (names ?? [name]).contains(name) && !running.contains(name) {
            let why = catalog.entries.first { $0.name == name }?.error ?? "not found; searched: \(catalog.searchedDirs.joined(separator: ", "))"
            throw failure("required plugin \(name) (plugins.required): \(why)")
        }
    }

    /// Loads and attaches the plugins; reports the ones that fail and says which started.
    func start(consumer: RowConsumer, logger: Logger) throws -> ProbeRuntime {
        let runtime: ProbeRuntime
        let docker = DockerEngineSource.find(hostRoot: config.hostRoot, configured: config.dockerSocket)
        // dockerd keeps its containers in containerd's namespace moby too, without their
        // image and labels: with dockerd's own API at hand, containerd is not asked there.
        let containerd = ContainerdSource.find(hostRoot: config.hostRoot, configured: config.containerdSocket,
                                               namespaces: docker == nil ? ContainerdSource.allNamespaces : ["k8s.io", "default"])
        let runtimes: [any ContainerMetadataSource] = [docker as (any ContainerMetadataSource)?, containerd].compactMap { $0 }
        let enricher = Enricher(nodeName: config.nodeName, hostRoot: config.hostRoot, containerSources: runtimes,
                                containerWait: Double(config.containerMetadataWaitMs) / 1000)
        do {
            runtime = try ProbeRuntime(plugins: plugins, config: config, enricher: enricher, consumer: consumer, logger: logger)
        } catch {
            throw failure("\(error)")
        }
        CgroupNames.attach(to: enricher.cgroups, logger: logger)
        if !enricher.cgroups.available {
            logger.notice("no cgroup2 mount found under \(config.hostRoot): cgroup_name and container_id stay empty")
        }
        if enricher.containers.sources.isEmpty {
            logger.notice("no container runtime socket (docker.sock, podman.sock, containerd.sock) under \(config.hostRoot): container_image and labels stay empty")
        }
        // Follow the runtimes' events before saying "started": a container created right
        // after start-up is then named at its creation, however short its life.
        for source in enricher.containers.startWatching(readyWithin: 5) {
            logger.notice("\(source.description): not following its container events yet; containers are looked up at their first row until it does")
        }
        return runtime
    }

    static func names(_ list: String?) -> [String]? {
        list.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }
}
