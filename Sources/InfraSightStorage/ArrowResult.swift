import CChdbADBC
import Foundation

/// A query result read out of an Arrow C stream into plain values (for `query` output of
/// statements that cannot be formatted by ClickHouse itself, and for tests).
public struct ArrowResult: Sendable {
    public enum Value: Equatable, Sendable {
        case null
        case int(Int64)
        case uint(UInt64)
        case double(Double)
        case bool(Bool)
        case bytes([UInt8])
        case unsupported(String)
    }

    public var columns: [String] = []
    public var formats: [String] = []
    public var rows: [[Value]] = []
    public var affectedRows: Int64 = -1

    init(consuming stream: inout ArrowArrayStream, affectedRows: Int64) {
        self.affectedRows = affectedRows
        defer { stream.release?(&stream) }
        var schema = ArrowSchema()
        guard stream.get_schema?(&stream, &schema) == 0 else { return }
        defer { schema.release?(&schema) }
        for i in 0..<Int(schema.n_children) {
            let child = schema.children[i]!.pointee
            columns.append(child.name.map { String(cString: $0) } ?? "")
            formats.append(child.format.map { String(cString: $0) } ?? "")
        }
        while true {
            var array = ArrowArray()
            guard stream.get_next?(&stream, &array) == 0, array.release != nil else { break }
            defer { array.release?(&array) }
            let n = Int(array.length)
            var batch = Array(repeating: [Value](), count: n)
            for c in 0..<min(Int(array.n_children), formats.count) {
                let child = array.children[c]!.pointee
                for r in 0..<n { batch[r].append(Self.value(child, format: formats[c], row: r)) }
            }
            rows += batch
        }
    }

    static func value(_ a: ArrowArray, format: String, row: Int) -> Value {
        let i = Int(a.offset) + row
        if a.null_count != 0, let validity = a.buffers[0] {
            let bits = validity.assumingMemoryBound(to: UInt8.self)
            if bits[i / 8] & (1 << (i % 8)) == 0 { return .null }
        }
        func fixed<T>(_ type: T.Type) -> T { a.buffers[1]!.assumingMemoryBound(to: T.self)[i] }
        switch format {
        case "c": return .int(Int64(fixed(Int8.self)))
        case "s": return .int(Int64(fixed(Int16.self)))
        case "i": return .int(Int64(fixed(Int32.self)))
        case "l": return .int(fixed(Int64.self))
        case "C": return .uint(UInt64(fixed(UInt8.self)))
        case "S": return .uint(UInt64(fixed(UInt16.self)))
        case "I": return .uint(UInt64(fixed(UInt32.self)))
        case "L": return .uint(fixed(UInt64.self))
        case "f": return .double(Double(fixed(Float.self)))
        case "g": return .double(fixed(Double.self))
        case "b":
            let bits = a.buffers[1]!.assumingMemoryBound(to: UInt8.self)
            return .bool(bits[i / 8] & (1 << (i % 8)) != 0)
        case "u", "z":
            let offsets = a.buffers[1]!.assumingMemoryBound(to: Int32.self)
            let start = Int(offsets[i]), end = Int(offsets[i + 1])
            let data = a.buffers[2].map { $0.assumingMemoryBound(to: UInt8.self) }
            return .bytes(data.map { Array(UnsafeBufferPointer(start: $0 + start, count: end - start)) } ?? [])
        case "U", "Z":
            let offsets = a.buffers[1]!.assumingMemoryBound(to: Int64.self)
            let start = Int(offsets[i]), end = Int(offsets[i + 1])
            let data = a.buffers[2].map { $0.assumingMemoryBound(to: UInt8.self) }
            return .bytes(data.map { Array(UnsafeBufferPointer(start: $0 + start, count: end - start)) } ?? [])
        default:
            return .unsupported(format)
        }
    }

    /// Tab-separated text like ClickHouse's TSV: `\N` for NULL, tabs, newlines and
    /// backslashes escaped.
    public var tsv: String {
        var out = ""
        for row in rows {
            out += row.map(Self.tsvField).joined(separator: "\t")
            out += "\n"
        }
        return out
    }

    static func tsvField(_ v: Value) -> String {
        switch v {
        case .null: return "\\N"
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        case .bool(let b): return b ? "true" : "false"
        case .bytes(let b):
            var s = ""
            for c in String(decoding: b, as: UTF8.self).unicodeScalars {
                switch c {
                case "\t": s += "\\t"
                case "\n": s += "\\n"
                case "\\": s += "\\\\"
                default: s.unicodeScalars.append(c)
                }
            }
            return s
        case .unsupported(let f): return "<arrow type \(f)>"
        }
    }
}
