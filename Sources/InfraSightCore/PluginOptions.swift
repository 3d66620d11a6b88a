import Foundation

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
        var json: [String: Any] = [:]
        let values = config.pluginOptions[plugin.name] ?? [:]
        for key in values.keys.sorted() {
            let value = values[key]!
            let path = "plugins.options.\(plugin.name).\(key)"
            guard let option = accepted(by: plugin).first(where: { $0.name == key }) else {
                let names = accepted(by: plugin).map(\.name).joined(separator: ", ")
                throw ConfigError(file: file, "unknown key \(path) (plugin \(plugin.name) accepts: \(names))")
            }
            let converted = try convert(value, to: option.type, at: path, file: file)
            switch key {
            case "include_pids": out.filters.includePids = try ids(converted, path, file)
            case "exclude_pids": out.filters.excludePids = try ids(converted, path, file)
            case "include_uids": out.filters.includeUids = try ids(converted, path, file)
            case "exclude_uids": out.filters.excludeUids = try ids(converted, path, file)
            case "include_comms": out.filters.includeComms = try comms(converted, path, file)
            case "exclude_comms": out.filters.excludeComms = try comms(converted, path, file)
            case "exclude_self": out.filters.excludeSelf = converted as! Bool
            case "ring_buffer_kb":
                let kb = converted as! Int
                guard ringBufferKB.contains(kb), kb & (kb - 1) == 0 else {
                    throw ConfigError(file: file, "\(path) must be a power of two from \(ringBufferKB.lowerBound) to \(ringBufferKB.upperBound) (KiB), not \(kb)")
                }
                out.ringBufferBytes = UInt32(kb * 1024)
            default: json[key] = converted
            }
        }
        let data = try! JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        out.pluginJSON = String(decoding: data, as: UTF8.self)
        return out
    }

    static func convert(_ value: ConfigValue, to type: String, at path: String, file: String) throws(ConfigError) -> Any {
        func scalar(_ v: ConfigValue, _ type: String) -> Any? {
            switch (v, type) {
            case (.int(let i), "int"): return i
            case (.bool(let b), "bool"): return b
            case (.string(let s), "string"): return s
            case (.int(let i), "string"): return String(i)
            case (.bool(let b), "string"): return String(b)
            default: return nil
            }
        }
        switch type {
        case "int-list", "string-list":
            let element = String(type.dropLast("-list".count))
            guard case .list(let items) = value else { throw ConfigError(file: file, "\(path) must be a list of \(element == "int" ? "integers" : "strings")") }
            var out: [Any] = []
            for (i, item) in items.enumerated() {
                guard let v = scalar(item, element) else { throw ConfigError(file: file, "\(path)[\(i)] must be \(element == "int" ? "an integer" : "a string")") }
                out.append(v)
            }
            return out
        default:
            guard let v = scalar(value, type) else {
                let what = ["int": "an integer", "bool": "true or false", "string": "a string"][type] ?? type
                throw ConfigError(file: file, "\(path) must be \(what)")
            }
            return v
        }
    }

    static func ids(_ value: Any, _ path: String, _ file: String) throws(ConfigError) -> [UInt32] {
        let list = value as! [Any]
        guard list.count <= HostFilters.maxEntries else { throw ConfigError(file: file, "\(path) has more than \(HostFilters.maxEntries) entries") }
        var out: [UInt32] = []
        for (i, v) in list.enumerated() {
            guard let n = v as? Int, n >= 0, n <= Int(UInt32.max) else { throw ConfigError(file: file, "\(path)[\(i)] is not a valid id") }
            out.append(UInt32(n))
        }
        return out
    }

    static func comms(_ value: Any, _ path: String, _ file: String) throws(ConfigError) -> [String] {
        let list = value as! [Any]
        guard list.count <= HostFilters.maxEntries else { throw ConfigError(file: file, "\(path) has more than \(HostFilters.maxEntries) entries") }
        var out: [String] = []
        for (i, v) in list.enumerated() {
            let s = v as! String
            guard !s.isEmpty, s.utf8.count < HostFilters.commLength else {
                throw ConfigError(file: file, "\(path)[\(i)] must be 1 to \(HostFilters.commLength - 1) bytes (the kernel's comm length)")
            }
            out.append(s)
        }
        return out
    }
}
