import Foundation
import InfraSightSchema

/// Filters the host applies to every plugin's BPF program (set in read-only data before
/// load, so unwanted events never reach user space). At most `HostFilters.maxEntries`
/// values per list.
public struct HostFilters: Equatable, Sendable {
    public static let maxEntries = 16
    public static let commLength = 16
    public var includePids: [UInt32] = []
    public var excludePids: [UInt32] = []
    public var includeUids: [UInt32] = []
    public var excludeUids: [UInt32] = []
    public var includeComms: [String] = []
    public var excludeComms: [String] = []
    /// Exclude the agent's own process (default true: tracing ourselves feeds back).
    public var excludeSelf = true

    public init() {}

    static let options: [PluginOptionInfo] = [
        .init(name: "include_pids", type: "int-list", description: "trace only these process ids", defaultValue: nil),
        .init(name: "exclude_pids", type: "int-list", description: "never trace these process ids", defaultValue: nil),
        .init(name: "include_uids", type: "int-list", description: "trace only these user ids", defaultValue: nil),
        .init(name: "exclude_uids", type: "int-list", description: "never trace these user ids", defaultValue: nil),
        .init(name: "include_comms", type: "string-list", description: "trace only these command names (comm, at most 15 bytes)", defaultValue: nil),
        .init(name: "exclude_comms", type: "string-list", description: "never trace these command names", defaultValue: nil),
        .init(name: "exclude_self", type: "bool", description: "exclude infrasight's own process", defaultValue: "true"),
        .init(name: "ring_buffer_kb", type: "int",
              description: "size of each of the plugin's ring buffers in KiB: a power of two from 4 to 1048576 (a burst larger than the ring is dropped, and counted as kernel drops)",
              defaultValue: nil),
    ]
}

/// A plugin's options from the config, checked against what the host and the plugin
/// accept, split into the host's filters and the JSON handed to the plugin's init.
public struct PluginOptions: Equatable, Sendable {
    public var filters = HostFilters()
    /// `ring_buffer_kb` in bytes; nil keeps the sizes the plugin's BPF object declares.
    public var ringBufferBytes: UInt32?
    /// The bounds of `ring_buffer_kb`: one page, and 1 GiB.
    public static let ringBufferKB = 4...(1 << 20)
    public var pluginJSON = "{}"

    /// Defaults: the host's default filters, no plugin options.
    public init() {}

    /// Every option a plugin accepts: the host's filters, then its own.
    public static func accepted(by plugin: LoadedPlugin) -> [PluginOptionInfo] {
        HostFilters.options + plugin.options
    }

    public static func resolve(config: InfraSightConfig, plugin: LoadedPlugin) throws(ConfigError) -> PluginOptions {
        let file = config.source ?? "<defaults>"
        var out = PluginOptions()
        var json: [String: OptionValue] = [:]
        let values = config.pluginOptions[plugin.name] ?? [:]
        for key in values.keys.sorted() {
            let value = values[key]!
            let path = "plugins.options.\(plugin.name).\(key)"
            guard let option = accepted(by: plugin).first(where: { $0.name == key }) else {
                let names = accepted(by: plugin).map(\.name).joined(separator: ", ")
                throw ConfigError(file: file, "unknown key \(path) (plugin \(plugin.name) accepts: \(names))")
            }
            guard let kind = OptionKind(rawValue: option.type) else {
                throw ConfigError(file: file, "\(path): plugin \(plugin.name) declares the option with a type the host does not know (\(option.type))")
            }
            let converted = try convert(value, to: kind, at: path, file: file)
            switch (key, converted) {
            case ("include_pids", .intList(let l)): out.filters.includePids = try ids(l, path, file)
            case ("exclude_pids", .intList(let l)): out.filters.excludePids = try ids(l, path, file)
            case ("include_uids", .intList(let l)): out.filters.includeUids = try ids(l, path, file)
            case ("exclude_uids", .intList(let l)): out.filters.excludeUids = try ids(l, path, file)
            case ("include_comms", .stringList(let l)): out.filters.includeComms = try comms(l, path, file)
            case ("exclude_comms", .stringList(let l)): out.filters.excludeComms = try comms(l, path, file)
            case ("exclude_self", .bool(let b)): out.filters.excludeSelf = b
            case ("ring_buffer_kb", .int(let kb)):
                guard ringBufferKB.contains(kb), kb & (kb - 1) == 0 else {
                    throw ConfigError(file: file, "\(path) must be a power of two from \(ringBufferKB.lowerBound) to \(ringBufferKB.upperBound) (KiB), not \(kb)")
                }
                out.ringBufferBytes = UInt32(kb * 1024)
            default: json[key] = converted
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            out.pluginJSON = String(decoding: try encoder.encode(json), as: UTF8.self)
        } catch {
            throw ConfigError(file: file, "plugins.options.\(plugin.name) cannot be written as JSON: \(error)")
        }
        return out
    }

    /// An option's value, converted to its declared kind.
    enum OptionValue: Encodable, Equatable {
        case int(Int), bool(Bool), string(String), intList([Int]), stringList([String])

        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .int(let v): try c.encode(v)
            case .bool(let v): try c.encode(v)
            case .string(let v): try c.encode(v)
            case .intList(let v): try c.encode(v)
            case .stringList(let v): try c.encode(v)
            }
        }
    }

    static func convert(_ value: ConfigValue, to kind: OptionKind, at path: String, file: String) throws(ConfigError) -> OptionValue {
        func text(_ v: ConfigValue) -> String? {
            switch v {
            case .string(let s): s
            case .int(let i): String(i)
            case .bool(let b): String(b)
            default: nil
            }
        }
        func list<T>(_ what: String, _ one: String, _ element: (ConfigValue) -> T?) throws(ConfigError) -> [T] {
            guard case .list(let items) = value else { throw ConfigError(file: file, "\(path) must be a list of \(what)") }
            var out: [T] = []
            for (i, item) in items.enumerated() {
                guard let v = element(item) else { throw ConfigError(file: file, "\(path)[\(i)] must be \(one)") }
                out.append(v)
            }
            return out
        }
        switch (kind, value) {
        case (.int, .int(let i)): return .int(i)
        case (.int, _): throw ConfigError(file: file, "\(path) must be an integer")
        case (.bool, .bool(let b)): return .bool(b)
        case (.bool, _): throw ConfigError(file: file, "\(path) must be true or false")
        case (.string, _):
            guard let s = text(value) else { throw ConfigError(file: file, "\(path) must be a string") }
            return .string(s)
        case (.intList, _):
            return .intList(try list("integers", "an integer") { if case .int(let i) = $0 { i } else { nil } })
        case (.stringList, _):
            return .stringList(try list("strings", "a string", text))
        }
    }

    static func ids(_ list: [Int], _ path: String, _ file: String) throws(ConfigError) -> [UInt32] {
        guard list.count <= HostFilters.maxEntries else { throw ConfigError(file: file, "\(path) has more than \(HostFilters.maxEntries) entries") }
        var out: [UInt32] = []
        for (i, n) in list.enumerated() {
            guard let id = UInt32(exactly: n) else { throw ConfigError(file: file, "\(path)[\(i)] is not a valid id") }
            out.append(id)
        }
        return out
    }

    static func comms(_ list: [String], _ path: String, _ file: String) throws(ConfigError) -> [String] {
        guard list.count <= HostFilters.maxEntries else { throw ConfigError(file: file, "\(path) has more than \(HostFilters.maxEntries) entries") }
        for (i, s) in list.enumerated() {
            guard !s.isEmpty, s.utf8.count < HostFilters.commLength else {
                throw ConfigError(file: file, "\(path)[\(i)] must be 1 to \(HostFilters.commLength - 1) bytes (the kernel's comm length)")
            }
        }
        return list
    }
}
