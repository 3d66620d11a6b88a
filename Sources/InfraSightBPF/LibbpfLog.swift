import CLibbpf
import Foundation
import Synchronization

/// Collects libbpf's messages so a load failure can show the end of the verifier log
/// instead of printing libbpf's chatter to stderr. Thread-safe.
enum LibbpfLog {
    private struct State {
        var lines: [String] = []
        var installed = false
    }
    private static let state = Mutex(State())

    static func install() {
        let first = state.withLock { s in
            defer { s.installed = true }
            return !s.installed
        }
        guard first else { return }
        _ = libbpf_set_print { level, format, args in
            guard let format, let args else { return 0 }
            var buffer = [CChar](repeating: 0, count: 1024)
            let n = vsnprintf(&buffer, buffer.count, format, args)
            guard n > 0 else { return 0 }
            let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            LibbpfLog.append(text)
            return n
        }
    }

    static func append(_ text: String) {
        state.withLock { s in
            for line in text.split(separator: "\n") where !line.isEmpty {
                s.lines.append(String(line))
            }
            if s.lines.count > 2000 { s.lines.removeFirst(s.lines.count - 1000) }
        }
    }

    /// Takes the collected lines and clears the buffer.
    static func drain() -> [String] {
        state.withLock { s in
            defer { s.lines.removeAll() }
            return s.lines
        }
    }
}
