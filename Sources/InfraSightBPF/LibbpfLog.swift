import CLibbpf
import Foundation

/// Collects libbpf's messages so a load failure can show the end of the verifier log
/// instead of printing libbpf's chatter to stderr. Thread-safe.
enum LibbpfLog {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var lines: [String] = []
    nonisolated(unsafe) private static var installed = false

    static func install() {
        lock.lock()
        defer { lock.unlock() }
        guard !installed else { return }
        installed = true
        _ = libbpf_set_print { level, format, args in
            guard let format, let args else { return 0 }
            var buffer = [CChar](repeating: 0, count: 1024)
            let n = vsnprintf(&buffer, buffer.count, format, args)
            guard n > 0 else { return 0 }
            let text = String(cString: buffer)
            LibbpfLog.append(text)
            return n
        }
    }

    static func append(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        for line in text.split(separator: "\n") where !line.isEmpty {
            lines.append(String(line))
        }
        if lines.count > 2000 { lines.removeFirst(lines.count - 1000) }
    }

    /// Takes the collected lines and clears the buffer.
    static func drain() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        let out = lines
        lines.removeAll()
        return out
    }
}
