import Foundation
import Synchronization
import InfraSightSchema

/// What `plugins list` shows for one file.
public struct PluginEntry: Sendable {
    public enum Status: String, Sendable { case loaded, disabled, error }

    public let path: String
    /// The name its file name gives (the loaded plugin reports the same); nil when the file
    /// name gives no valid name.
    public let name: String?
    /// Known once the file passed the checks that run none of its code.
    public let sha256: String?
    /// nil until the file is loaded: a plugin that is not enabled is not loaded unless asked
    /// (`plugins list --inspect`, `plugins info NAME`, a name on trace's command line).
    public let plugin: LoadedPlugin?
    public let enabled: Bool
    public let status: Status
    public let error: String?
}

extension PluginEntry {
    /// The entry of a file that passed the checks before loading. (In an extension, so
    /// that the memberwise initializer stays.)
    init(_ candidate: PluginCandidate, plugin: LoadedPlugin?, enabled: Bool, status: Status, error: String? = nil) {
        self.init(path: candidate.path, name: candidate.name, sha256: candidate.sha256, plugin: plugin, enabled: enabled, status: status, error: error)
    }
}

/// Every plugin file found in the plugin directories, checked, with whether the config
/// enables it. Enabling: `plugins.enabled` lists names; when absent, every plugin found is
/// enabled. Only enabled plugins are loaded (dlopened) by `discover`; the checks that run
/// none of a file's code (owner, mode, ELF, pins: see `PluginLoader`) apply to every file.
public struct PluginCatalog: Sendable {
    /// One per file, in search order.
    public var entries: [PluginEntry] { state.withLock { $0.entries } }
    /// The directories searched, in order (first found wins a name).
    public let searchedDirs: [String]
    /// Names the config enables that no file in the directories has.
    public let missingEnabled: [String]
    private let state: LockedState

    /// The entries, and the checked files not loaded yet (by entry index), so that a
    /// plugin asked for later is loaded from the descriptor that was checked.
    struct State {
        var entries: [PluginEntry]
        var pending: [Int: PluginCandidate]
        let loader: PluginLoader
        let config: InfraSightConfig

        /// Loads the pending candidate at `index` and records the outcome; `enabled` marks
        /// it as enabled (its options are then checked, as for any enabled plugin).
        mutating func load(_ index: Int, enabled: Bool) {
            guard let candidate = pending.removeValue(forKey: index) else { return }
            entries[index] = Self.entry(candidate, loader: loader, config: config, enabled: enabled)
        }

        static func entry(_ candidate: PluginCandidate, loader: PluginLoader, config: InfraSightConfig, enabled: Bool) -> PluginEntry {
            let plugin: LoadedPlugin
            do {
                plugin = try loader.load(candidate)
            } catch {
                return PluginEntry(candidate, plugin: nil, enabled: false, status: .error, error: error.reason)
            }
            if enabled {
                do {
                    _ = try PluginOptions.resolve(config: config, plugin: plugin)
                } catch {
                    return PluginEntry(candidate, plugin: plugin, enabled: true, status: .error, error: error.description)
                }
            }
            return PluginEntry(candidate, plugin: plugin, enabled: enabled, status: enabled ? .loaded : .disabled)
        }
    }

    /// The catalog is shared by value but loads plugins later on demand.
    final class LockedState: Sendable {
        private let state: Mutex<State>
        init(_ state: sending State) { self.state = Mutex(state) }
        func withLock<T: Sendable>(_ body: (inout State) -> T) -> T {
            state.withLock { body(&$0) }
        }
    }

    /// The directories to search: `--plugin-dir`s first, then the config's, then the
    /// directory of the running executable (so a development build finds its own plugins).
    public static func directories(config: InfraSightConfig, extraDirs: [String], executableDir: String?) -> [String] {
        var dirs: [String] = []
        for d in (extraDirs + config.pluginDirs).map(absolute) + [executableDir].compactMap({ $0 }) where !dirs.contains(d) {
            dirs.append(d)
        }
        return dirs
    }

    /// `path` made absolute (against the working directory) and standardized.
    static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        return (full as NSString).standardizingPath
    }

    /// The directory holding the running executable.
    public static var executableDir: String? {
        guard let path = Bundle.main.executablePath else { return nil }
        return ((path as NSString).resolvingSymlinksInPath as NSString).deletingLastPathComponent
    }

    /// Plugin files of a directory: `*.so`; in the executable's own directory, which holds
    /// other libraries too, only `libinfrasight-*.so`.
    static func pluginFiles(in dir: String, isExecutableDir: Bool) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.filter { name in
            name.hasSuffix(".so") && (!isExecutableDir || name.hasPrefix("libinfrasight-"))
        }.sorted().map { "\(dir)/\($0)" }
    }

    /// Checks every plugin file and loads the enabled ones; with `inspect`, loads the
    /// others too (still disabled) so that their version and tables can be shown.
    public static func discover(config: InfraSightConfig, extraDirs: [String], executableDir: String? = PluginCatalog.executableDir, inspect: Bool = false) -> PluginCatalog {
        let executableDir = executableDir.map(absolute)
        let dirs = directories(config: config, extraDirs: extraDirs, executableDir: executableDir)
        var loader = PluginLoader(pluginDirs: dirs, config: config)
        var entries: [PluginEntry] = [], pending: [Int: PluginCandidate] = [:]
        let explicit = Set((extraDirs + config.pluginDirs).map(absolute))
        for dir in dirs {
            for file in pluginFiles(in: dir, isExecutableDir: !explicit.contains(dir)) {
                do {
                    let candidate = try loader.check(file)
                    let enabled = config.enabledPlugins?.contains(candidate.name) ?? true
                    if enabled || inspect {
                        entries.append(State.entry(candidate, loader: loader, config: config, enabled: enabled))
                    } else {
                        pending[entries.count] = candidate
                        entries.append(PluginEntry(candidate, plugin: nil, enabled: false, status: .disabled))
                    }
                } catch {
                    let name = PluginLoader.expectedName(fileName: (file as NSString).lastPathComponent)
                    entries.append(PluginEntry(path: file, name: PluginLoader.invalidName(name) == nil ? name : nil, sha256: nil, plugin: nil, enabled: false, status: .error, error: error.reason))
                }
            }
        }
        let found = Set(entries.compactMap(\.name))
        let missing = (config.enabledPlugins ?? []).filter { !found.contains($0) }
        let state = State(entries: entries, pending: pending, loader: loader, config: config)
        return PluginCatalog(searchedDirs: dirs, missingEnabled: missing, state: LockedState(state))
    }

    /// Runs every loader check on one file, loading it even when it is not enabled (the
    /// checks that run none of its code come first), and checks that no other file in the
    /// plugin directories has its name.
    public static func verify(file: String, config: InfraSightConfig, extraDirs: [String]) throws(PluginLoadError) -> LoadedPlugin {
        var loader = PluginLoader(pluginDirs: directories(config: config, extraDirs: extraDirs, executableDir: nil), config: config)
        let plugin = try loader.load(file)
        do {
            _ = try PluginOptions.resolve(config: config, plugin: plugin)
        } catch {
            throw PluginLoadError(path: file, reason: error.description)
        }
        // Names are unique across the plugin directories: the first file found with a name
        // loads, later ones are refused as duplicates.
        func real(_ path: String) -> String {
            guard let resolved = realpath(path, nil) else { return absolute(path) }
            defer { free(resolved) }
            return String(cString: resolved)
        }
        let path = real(file)
        let installed = discover(config: config, extraDirs: extraDirs).entries
        if let mine = installed.first(where: { real($0.path) == path }) {
            if mine.status == .error, let error = mine.error { throw PluginLoadError(path: file, reason: error) }
        } else if let other = installed.first(where: { $0.name == plugin.name }) {
            throw PluginLoadError(path: file, reason: "a plugin named \(plugin.name) is already installed at \(other.path); of two with one name only the first found loads")
        }
        return plugin
    }

    /// The error for enabled plugins that were not found, naming the directories searched.
    public var missingError: String? {
        guard !missingEnabled.isEmpty else { return nil }
        let names = missingEnabled.joined(separator: ", ")
        return "enabled plugin\(missingEnabled.count == 1 ? "" : "s") \(names) not found; searched: \(searchedDirs.joined(separator: ", "))"
    }

    /// The plugins to run: the loaded, enabled ones, or exactly `names` when given (a
    /// plugin named on the command line runs even when the config does not enable it: it
    /// is loaded now, from the descriptor that was checked, and counts as enabled).
    public func active(names: [String]?) throws(CatalogError) -> [LoadedPlugin] {
        if let names {
            return try names.map { name throws(CatalogError) in
                let entry = try self.entry(named: name, enable: true)
                guard let plugin = entry.plugin, entry.status != .error else {
                    throw CatalogError("plugin \(name) cannot be used: \(entry.error ?? "error")")
                }
                return plugin
            }
        }
        if let missing = missingError { throw CatalogError(missing) }
        return entries.filter { $0.status == .loaded }.compactMap(\.plugin)
    }

    /// The entry of the plugin called `name`, loaded if it was not (a disabled plugin
    /// stays disabled unless `enable`). Of several files with the name, a usable one.
    public func entry(named name: String, enable: Bool = false) throws(CatalogError) -> PluginEntry {
        let entry = state.withLock { state -> PluginEntry? in
            let named = state.entries.indices.filter { state.entries[$0].name == name }
            guard let index = named.first(where: { state.entries[$0].status != .error }) ?? named.first else { return nil }
            state.load(index, enabled: enable)
            return state.entries[index]
        }
        guard let entry else { throw CatalogError("plugin \(name) not found; searched: \(searchedDirs.joined(separator: ", "))") }
        return entry
    }
}

public struct CatalogError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
