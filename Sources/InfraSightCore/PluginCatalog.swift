import Foundation
import InfraSightSchema

/// What `plugins list` shows for one file.
public struct PluginEntry: Sendable {
    public enum Status: String, Sendable { case loaded, disabled, error }

    public let path: String
    public let plugin: LoadedPlugin?
    public let enabled: Bool
    public let status: Status
    public let error: String?

    public var name: String? { plugin?.name }
}

/// Every plugin file found in the plugin directories, loaded and checked, with whether the
/// config enables it. Enabling: `plugins.enabled` lists names; when absent, every plugin
/// found is enabled.
public struct PluginCatalog: Sendable {
    public let entries: [PluginEntry]
    /// The directories searched, in order (first found wins a name).
    public let searchedDirs: [String]
    /// Names the config enables that no directory holds.
    public let missingEnabled: [String]

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

    public static func discover(config: InfraSightConfig, extraDirs: [String], executableDir: String? = PluginCatalog.executableDir) -> PluginCatalog {
        let executableDir = executableDir.map(absolute)
        let dirs = directories(config: config, extraDirs: extraDirs, executableDir: executableDir)
        var loader = PluginLoader(pluginDirs: dirs, pins: config.pins)
        var entries: [PluginEntry] = []
        let explicit = Set((extraDirs + config.pluginDirs).map(absolute))
        for dir in dirs {
            for file in pluginFiles(in: dir, isExecutableDir: !explicit.contains(dir)) {
                do {
                    let plugin = try loader.load(file)
                    let enabled = config.enabledPlugins?.contains(plugin.name) ?? true
                    if enabled {
                        do {
                            _ = try PluginOptions.resolve(config: config, plugin: plugin)
                        } catch {
                            entries.append(PluginEntry(path: file, plugin: plugin, enabled: true, status: .error, error: error.description))
                            continue
                        }
                    }
                    entries.append(PluginEntry(path: file, plugin: plugin, enabled: enabled, status: enabled ? .loaded : .disabled, error: nil))
                } catch {
                    entries.append(PluginEntry(path: file, plugin: nil, enabled: false, status: .error, error: error.reason))
                }
            }
        }
        let found = Set(entries.compactMap(\.name))
        let missing = (config.enabledPlugins ?? []).filter { !found.contains($0) }
        return PluginCatalog(entries: entries, searchedDirs: dirs, missingEnabled: missing)
    }

    /// Runs every loader check on one file (its own directory counts as a plugin directory),
    /// and checks that no other file in the plugin directories has its name.
    public static func verify(file: String, config: InfraSightConfig, extraDirs: [String]) throws(PluginLoadError) -> LoadedPlugin {
        let own = (absolute(file) as NSString).deletingLastPathComponent
        var dirs = directories(config: config, extraDirs: extraDirs, executableDir: nil)
        dirs.append(own)
        var loader = PluginLoader(pluginDirs: dirs, pins: config.pins)
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
    /// plugin named on the command line runs even when the config does not enable it).
    public func active(names: [String]?) throws(CatalogError) -> [LoadedPlugin] {
        if let names {
            return try names.map { name throws(CatalogError) in
                guard let entry = entries.first(where: { $0.name == name }) else {
                    throw CatalogError("plugin \(name) not found; searched: \(searchedDirs.joined(separator: ", "))")
                }
                guard let plugin = entry.plugin, entry.status != .error else {
                    throw CatalogError("plugin \(name) cannot be used: \(entry.error ?? "error")")
                }
                return plugin
            }
        }
        if let missing = missingError { throw CatalogError(missing) }
        return entries.filter { $0.status == .loaded }.compactMap(\.plugin)
    }
}

public struct CatalogError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
