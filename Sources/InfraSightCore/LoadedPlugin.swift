import CInfraSightABI
import InfraSightSchema

/// A plugin that passed every loader check: a view of its C descriptor. The descriptor
/// is owned by the plugin image, which is never unloaded, so the pointer stays valid.
public final class LoadedPlugin: @unchecked Sendable {
    public let path: String
    public let sha256: String
    let descriptor: UnsafePointer<is_plugin_descriptor>
    public let name: String
    public let version: String
    public let summary: String
    public let abi: String
    public let tables: [TableSchema]
    public let options: [PluginOptionInfo]

    init(path: String, sha256: String, descriptor: UnsafePointer<is_plugin_descriptor>, tables: [TableSchema]) {
        self.path = path
        self.sha256 = sha256
        self.descriptor = descriptor
        let d = descriptor.pointee
        name = String(cString: d.name)
        version = d.version.map { String(cString: $0) } ?? ""
        summary = d.description.map { String(cString: $0) } ?? ""
        abi = "\(d.abi_major).\(d.abi_minor)"
        self.tables = tables
        var options: [PluginOptionInfo] = []
        if let list = d.options {
            for i in 0..<Int(d.option_count) {
                let o = list[i]
                guard let name = o.name else { continue }
                options.append(
                    PluginOptionInfo(
                        name: String(cString: name), type: o.type.map { String(cString: $0) } ?? "string",
                        description: o.description.map { String(cString: $0) } ?? "",
                        defaultValue: o.default_value.map { String(cString: $0) }))
            }
        }
        self.options = options
    }

    /// Creates a plugin instance (the plugin's `create`) with its resolved options.
    public func createInstance(options: PluginOptions) throws(RuntimeError) -> OpaquePointer {
        var error: UnsafePointer<CChar>?
        guard let instance = options.pluginJSON.withCString({ descriptor.pointee.create!($0, &error) }) else {
            throw RuntimeError("refused its options: \(error.map { String(cString: $0) } ?? "unknown error")")
        }
        return instance
    }

    /// The embedded BPF object, empty when the plugin has none.
    public var bpfObject: UnsafeRawBufferPointer {
        let d = descriptor.pointee
        guard let bytes = d.bpf_object, d.bpf_object_size > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: bytes, count: d.bpf_object_size)
    }
}

/// One option a plugin declares, or one the host applies to every plugin.
public struct PluginOptionInfo: Equatable, Sendable {
    public let name: String
    public let type: String
    public let description: String
    public let defaultValue: String?
}
