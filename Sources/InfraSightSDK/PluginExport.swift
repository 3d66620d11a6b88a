import CInfraSightABI
import Foundation
import Synchronization

/// Builds the C descriptor for `module` once and returns it; call it from the plugin's
/// exported entry symbol:
///
/// ```swift
/// @_cdecl("infrasight_plugin_entry")
/// public func entry() -> UnsafeRawPointer { exportProbeModule(MyProbe.self) }
/// ```
///
/// The descriptor and everything it points to are allocated once and never freed, as the
/// ABI requires. One plugin library exports one module.
public func exportProbeModule<M: ProbeModule>(_ module: M.Type) -> UnsafeRawPointer {
    let made = exported.withLock { e in
        if e.descriptor == nil {
            e.type = module
            e.descriptor = makeDescriptor(module)
        }
        return e
    }
    return UnsafeRawPointer(made.descriptor!)
}

/// What the library exports, set once by `exportProbeModule`. Unchecked: C memory,
/// written only under `exported`'s lock; the descriptor is never changed once made.
private struct Exported: @unchecked Sendable {
    var descriptor: UnsafeMutablePointer<is_plugin_descriptor>?
    var type: (any ProbeModule.Type)?
    /// The last init failure, kept alive as the ABI promises (until the next init).
    var lastInitError: UnsafeMutablePointer<CChar>?
}
private let exported = Mutex(Exported())

/// A plugin instance behind the opaque `is_plugin_instance *`.
private final class Instance {
    let module: any ProbeModule
    var lastError: UnsafeMutablePointer<CChar>?
    init(_ module: any ProbeModule) { self.module = module }

    func fail(_ message: String) {
        free(lastError)
        lastError = strdup(message)
    }
}

/// A string that lives as long as the process.
private func forever(_ s: String) -> UnsafePointer<CChar> { UnsafePointer(strdup(s)!) }

private func makeDescriptor<M: ProbeModule>(_ module: M.Type) -> UnsafeMutablePointer<is_plugin_descriptor> {
    let object = module.bpfObject
    var objectPointer: UnsafePointer<UInt8>?
    if !object.isEmpty {
        let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: object.count)
        bytes.initialize(from: object, count: object.count)
        objectPointer = UnsafePointer(bytes)
    }

    // Every struct_size is the C sizeof (Swift's stride): the host walks arrays by it.
    let tables = UnsafeMutablePointer<is_table_descriptor>.allocate(capacity: max(1, module.tables.count))
    for (i, table) in module.tables.enumerated() {
        let name = (try? ColumnIndex(table).schema.qualifiedName) ?? table.name
        let derived = module.derivedColumns(of: table)
        let list = UnsafeMutablePointer<is_derived_column>.allocate(capacity: max(1, derived.count))
        for (j, d) in derived.enumerated() {
            list[j] = is_derived_column(
                struct_size: UInt32(MemoryLayout<is_derived_column>.stride), kind: d.kind, column: forever(d.column),
                source: forever(d.source), code_table: d.codeTable.map(forever))
        }
        tables[i] = is_table_descriptor(
            struct_size: UInt32(MemoryLayout<is_table_descriptor>.stride), name: forever(name), ddl: forever(table.text),
            derived_columns: UnsafePointer(list), derived_column_count: UInt32(derived.count))
    }
    let options = UnsafeMutablePointer<is_option_descriptor>.allocate(capacity: max(1, module.options.count))
    for (i, option) in module.options.enumerated() {
        options[i] = is_option_descriptor(
            struct_size: UInt32(MemoryLayout<is_option_descriptor>.stride), name: forever(option.name),
            type: forever(option.kind.rawValue), description: forever(option.description),
            default_value: option.defaultValue.map(forever))
    }

    let descriptor = UnsafeMutablePointer<is_plugin_descriptor>.allocate(capacity: 1)
    descriptor.initialize(
        to: is_plugin_descriptor(
            magic: IS_PLUGIN_MAGIC,
            abi_major: UInt16(IS_PLUGIN_ABI_MAJOR),
            abi_minor: UInt16(IS_PLUGIN_ABI_MINOR),
            struct_size: UInt32(MemoryLayout<is_plugin_descriptor>.stride),
            name: forever(module.name),
            version: forever(module.version),
            description: forever(module.summary),
            bpf_object: objectPointer,
            bpf_object_size: object.count,
            tables: UnsafePointer(tables),
            table_count: UInt32(module.tables.count),
            options: UnsafePointer(options),
            option_count: UInt32(module.options.count),
            create: { json, errorOut in
                createInstance(json: json, log: .none, errorOut: errorOut)
            },
            configure_bpf: { instance, configurator in
                guard let instance, let configurator else { return -EINVAL }
                let box = Unmanaged<Instance>.fromOpaque(UnsafeRawPointer(instance)).takeUnretainedValue()
                do {
                    try box.module.configureBPF(BPFConfigurator(raw: configurator))
                    return 0
                } catch {
                    box.fail("\(error)")
                    return -EINVAL
                }
            },
            decode: { instance, record, size, writer in
                guard let instance, let record, let writer else { return IS_DECODE_ERROR }
                let box = Unmanaged<Instance>.fromOpaque(UnsafeRawPointer(instance)).takeUnretainedValue()
                switch box.module.decode(RawRecord(UnsafeRawBufferPointer(start: record, count: size)), into: RowWriter(writer)) {
                case .row: return IS_DECODE_ROW
                case .skip: return IS_DECODE_SKIP
                case .malformed: return IS_DECODE_ERROR
                }
            },
            last_error: { instance in
                guard let instance else { return nil }
                let box = Unmanaged<Instance>.fromOpaque(UnsafeRawPointer(instance)).takeUnretainedValue()
                return UnsafePointer(box.lastError)
            },
            create_with_input: { input, errorOut in
                guard let input else { return createInstance(json: nil, log: .none, errorOut: errorOut) }
                // The host's struct, read only as far as its struct_size goes (see the header).
                let size = Int(UnsafeRawPointer(input).loadUnaligned(as: UInt32.self))
                var copy = is_create_input()
                withUnsafeMutableBytes(of: &copy) { $0.copyMemory(from: UnsafeRawBufferPointer(start: input, count: min(size, $0.count))) }
                let logEnd = MemoryLayout<is_create_input>.offset(of: \.log)! + MemoryLayout<UnsafeRawPointer>.size
                let log = size >= logEnd ? ProbeLog(owner: copy.owner, function: copy.log) : .none
                let jsonEnd = MemoryLayout<is_create_input>.offset(of: \.options_json)! + MemoryLayout<UnsafeRawPointer>.size
                return createInstance(json: size >= jsonEnd ? copy.options_json : nil, log: log, errorOut: errorOut)
            },
            stop: { instance in
                guard let instance else { return }
                Unmanaged<Instance>.fromOpaque(UnsafeRawPointer(instance)).takeUnretainedValue().module.stop()
            }))
    return descriptor
}

/// Creates the exported module from the options JSON (`{}` when nil); on failure points
/// `errorOut` at the message, kept until the next failure.
private func createInstance(json: UnsafePointer<CChar>?, log: ProbeLog, errorOut: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> OpaquePointer? {
    guard let type = exported.withLock({ $0.type }) else { return nil }
    do {
        let options = try ProbeOptions(json: json.map { String(cString: $0) } ?? "{}", log: log)
        let module = try type.init(options: options)
        return OpaquePointer(Unmanaged.passRetained(Instance(module)).toOpaque())
    } catch {
        let message = strdup("\(error)")
        exported.withLock { e in
            free(e.lastInitError)
            e.lastInitError = message
        }
        errorOut?.pointee = UnsafePointer(message)
        return nil
    }
}
