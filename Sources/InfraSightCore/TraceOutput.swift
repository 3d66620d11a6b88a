import Foundation
import Glibc
import InfraSightSchema

/// Writes rows to a file descriptor (stdout for `trace`) as JSON lines or a table. Output
/// is buffered and written when the buffer fills or on `flush()`.
///
/// Unchecked Sendable: the dispatcher thread's own (it consumes and flushes); `trace`
/// hands it to that thread and touches it no more.
public final class TracePrinter: RowConsumer, @unchecked Sendable {
    public enum Format: String, CaseIterable, Sendable { case json, table }

    let format: Format
    let fd: Int32
    var json = JSONRowEncoder()
    var headerPrinted = false
    /// The plugin columns of each table, found once (the table view is per row).
    var pluginColumns: [String: [Int]] = [:]

    public init(format: Format, fd: Int32 = STDOUT_FILENO) {
        self.format = format
        self.fd = fd
    }

    public func consume(_ row: RowBuffer, from channel: PluginChannel) {
        switch format {
        case .json:
            json.encode(row)
        case .table:
            appendTableLine(row)
        }
        if json.buffer.count > 48 * 1024 { flush() }
    }

    public func flush() {
        guard !json.buffer.isEmpty else { return }
        json.buffer.withUnsafeBytes { bytes in
            var off = 0
            while off < bytes.count {
                let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
                if n <= 0 {
                    if n < 0, errno == EINTR { continue }
                    break // a closed pipe: the reader is gone; drop the output, keep counting
                }
                off += n
            }
        }
        json.clear()
    }

    /// The human view: time, table, pid, comm, uid, return code, latency, then the
    /// plugin's own columns as name=value.
    func appendTableLine(_ row: RowBuffer) {
        var line = ""
        if !headerPrinted {
            headerPrinted = true
            line += pad("TIME", 23) + " " + pad("TABLE", 16) + " " + pad("PID", 7) + " " + pad("COMM", 16) + " " + pad("UID", 6) + " " + pad("RET", 6) + " " + pad("LAT(ms)", 9) + " DETAILS\n"
        }
        func text(_ name: String) -> String {
            guard let i = row.schema.index(of: name) else { return "-" }
            return value(row, i)
        }
        line += pad(text("wall_time_dt").replacingOccurrences(of: "\"", with: ""), 23) + " " + pad(row.schema.name, 16) + " "
        line += pad(text("pid"), 7) + " " + pad(text("comm").replacingOccurrences(of: "\"", with: ""), 16) + " " + pad(text("uid"), 6) + " "
        line += pad(text("return_code"), 6) + " " + pad(String(text("latency_ms").prefix(9)), 9)
        let qualified = row.schema.qualifiedName
        let own = pluginColumns[qualified] ?? HostColumnMap(schema: row.schema).pluginColumns
        pluginColumns[qualified] = own
        for i in own {
            let kind = row.kinds[i]
            if kind == .unset || kind == .null { continue }
            if kind == .string && row.lengths[i] == 0 { continue }
            if (kind == .uint || kind == .int) && row.words[i] == 0 { continue }
            line += " \(row.schema.columns[i].name)=\(value(row, i))"
        }
        line += "\n"
        json.buffer.append(contentsOf: line.utf8)
    }

    func value(_ row: RowBuffer, _ i: Int) -> String {
        var e = JSONRowEncoder(capacity: 64)
        e.appendValue(row, i, row.schema.columns[i].type)
        return String(decoding: e.buffer, as: UTF8.self)
    }

    func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }
}
