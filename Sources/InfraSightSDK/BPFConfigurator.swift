import CInfraSightABI
import Glibc

/// Sets read-only data (`const volatile` globals) of the plugin's BPF object before load.
/// Valid only inside `configureBPF`.
public struct BPFConfigurator {
    let raw: UnsafePointer<is_bpf_configurator>

    /// Sets the global `name` to the bytes of `value`; the sizes must match exactly.
    public func set<T: BitwiseCopyable>(_ name: String, to value: T) throws {
        var copy = value
        let rc = withUnsafeBytes(of: &copy) { buffer in
            raw.pointee.set_rodata(raw.pointee.host, name, buffer.baseAddress, buffer.count)
        }
        if rc != 0 {
            throw ProbeError(rc == -ENOENT ? "BPF object has no read-only variable \(name)" : "cannot set \(name): size mismatch")
        }
    }
}
