import Glibc
import InfraSightSchema

/// Encodes rows as JSON objects, one per line: `{"table":"<name>", <column>: <value>...}`
/// with the ClickHouse column names in DDL order. Integers are JSON numbers, DateTime64
/// is "YYYY-MM-DD hh:mm:ss.mmm" (UTC), JSON columns are embedded as objects, an unset
/// column gets its type's default. Appends to a reusable buffer: no allocation per row
/// once the buffer has grown.
public struct JSONRowEncoder {
    public var buffer: [UInt8] = []

    public init(capacity: Int = 1 << 16) { buffer.reserveCapacity(capacity) }

    public mutating func clear() { buffer.removeAll(keepingCapacity: true) }

    public mutating func encode(_ row: RowBuffer) {
        let schema = row.schema
        append("{\"table\":")
        appendQuoted(schema.name)
        for (i, column) in schema.columns.enumerated() {
            buffer.append(UInt8(ascii: ","))
            appendQuoted(column.name)
            buffer.append(UInt8(ascii: ":"))
            appendValue(row, i, column.type)
        }
        append("}\n")
    }

    mutating func appendValue(_ row: RowBuffer, _ i: Int, _ type: ColumnType) {
        let kind = row.kinds[i]
        let word = row.words[i]
        switch (kind, type.base) {
        case (.null, _):
            append(type.isNullable ? "null" : defaultText(type.base))
        case (.unset, _):
            append(type.isNullable ? "null" : defaultText(type.base))
        case (.string, .json):
            let bytes = row.stringBytes(i)
            if bytes.isEmpty { append("{}") } else { buffer.append(contentsOf: bytes) }
        case (.string, _):
            appendQuoted(row.stringBytes(i))
        case (.int, .dateTime64), (.uint, .dateTime64):
            appendDateTime(milliseconds: Int64(bitPattern: word))
        case (.int, .dateTime), (.uint, .dateTime):
            appendDateTime(milliseconds: Int64(bitPattern: word) * 1000, withMillis: false)
        case (.float, .float32), (.float, .float64):
            appendDouble(Double(bitPattern: word))
        case (.int, .float32), (.int, .float64):
            appendDouble(Double(Int64(bitPattern: word)))
        case (.uint, .float32), (.uint, .float64):
            appendDouble(Double(word))
        case (.int, _):
            appendInt(Int64(bitPattern: word))
        case (.uint, _):
            appendUInt(word)
        case (.float, _):
            appendDouble(Double(bitPattern: word))
        }
    }

    func defaultText(_ type: ColumnType) -> StaticString {
        switch type {
        case .string: "\"\""
        case .json: "{}"
        case .dateTime64: "\"1970-01-01 00:00:00.000\""
        case .dateTime: "\"1970-01-01 00:00:00\""
        default: "0"
        }
    }

    mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { buffer.append(contentsOf: $0) }
    }

    mutating func appendQuoted(_ s: String) {
        var s = s
        s.withUTF8 { appendQuoted($0) }
    }

    mutating func appendQuoted(_ bytes: UnsafeBufferPointer<UInt8>) {
        buffer.append(UInt8(ascii: "\""))
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""): append("\\\"")
            case UInt8(ascii: "\\"): append("\\\\")
            case 0x0A: append("\\n")
            case 0x0D: append("\\r")
            case 0x09: append("\\t")
            case 0..<0x20, 0x7F:
                append("\\u00")
                buffer.append(Self.hex[Int(b >> 4)])
                buffer.append(Self.hex[Int(b & 0xF)])
            default: buffer.append(b)
            }
        }
        buffer.append(UInt8(ascii: "\""))
    }

    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    mutating func appendUInt(_ value: UInt64) {
        var v = value
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0) // 24 bytes of digits on the stack
        withUnsafeMutableBytes(of: &tmp) { d in
            var n = d.count
            repeat {
                n -= 1
                d[n] = UInt8(48 + v % 10)
                v /= 10
            } while v > 0
            buffer.append(contentsOf: d[n...])
        }
    }

    mutating func appendInt(_ value: Int64) {
        if value < 0 {
            buffer.append(UInt8(ascii: "-"))
            appendUInt(value == .min ? UInt64(1) << 63 : UInt64(-value))
        } else {
            appendUInt(UInt64(value))
        }
    }

    /// Six decimals, enough for latency in ms at ns resolution.
    mutating func appendDouble(_ value: Double) {
        guard value.isFinite else { append("null"); return }
        var v = value
        if v < 0 { buffer.append(UInt8(ascii: "-")); v = -v }
        let scaled = (v * 1_000_000).rounded()
        guard scaled < 1.8e19 else { append("1e19"); return }
        let micro = UInt64(scaled)
        appendUInt(micro / 1_000_000)
        buffer.append(UInt8(ascii: "."))
        let frac = micro % 1_000_000
        var divisor: UInt64 = 100_000
        while divisor > 0 {
            buffer.append(UInt8(48 + (frac / divisor) % 10))
            divisor /= 10
        }
    }

    mutating func appendDateTime(milliseconds: Int64, withMillis: Bool = true) {
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let ms = milliseconds - Int64(seconds) * 1000
        var t = tm()
        gmtime_r(&seconds, &t)
        buffer.append(UInt8(ascii: "\""))
        appendPadded(Int(t.tm_year) + 1900, 4); buffer.append(UInt8(ascii: "-"))
        appendPadded(Int(t.tm_mon) + 1, 2); buffer.append(UInt8(ascii: "-"))
        appendPadded(Int(t.tm_mday), 2); buffer.append(UInt8(ascii: " "))
        appendPadded(Int(t.tm_hour), 2); buffer.append(UInt8(ascii: ":"))
        appendPadded(Int(t.tm_min), 2); buffer.append(UInt8(ascii: ":"))
        appendPadded(Int(t.tm_sec), 2)
        if withMillis {
            buffer.append(UInt8(ascii: "."))
            appendPadded(Int(ms), 3)
        }
        buffer.append(UInt8(ascii: "\""))
    }

    mutating func appendPadded(_ value: Int, _ width: Int) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var v = value
        while divisor > 0 {
            buffer.append(UInt8(48 + (v / divisor) % 10))
            v %= divisor
            divisor /= 10
        }
    }
}
