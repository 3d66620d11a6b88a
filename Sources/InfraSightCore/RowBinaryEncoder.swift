import Glibc
import InfraSightSchema

/// Appends rows in ClickHouse's RowBinary format, columns in DDL order, to a growable
/// byte buffer it owns (no allocation per row once the buffer has grown). Not thread-safe.
///
/// JSON columns are written as String: inserts use `input_format_binary_read_json_as_string=1`,
/// which also lets the same bytes go to servers that store JSON as String. DateTime64(p)
/// holds milliseconds in the row and is scaled to p digits; DateTime gets seconds.
/// An unset column gets its type's default (NULL for Nullable, `{}` for JSON).
/// Integers are written by bit pattern at the column's width (an Int64 written into a
/// UInt64 column keeps its bits, as C decoders expect).
public final class RowBinaryEncoder {
    public private(set) var bytes: UnsafeMutablePointer<UInt8>
    public private(set) var capacity: Int
    public private(set) var count = 0
    public private(set) var rows = 0

    public init(capacity: Int = 1 << 20) {
        self.capacity = max(capacity, 4096)
        bytes = .allocate(capacity: self.capacity)
    }

    deinit { bytes.deallocate() }

    public func clear() {
        count = 0
        rows = 0
    }

    /// The encoded bytes (valid until the next mutation).
    public var buffer: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: bytes, count: count) }

    @inline(__always) func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    func grow(_ needed: Int) {
        var c = capacity
        while c < needed { c *= 2 }
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        p.update(from: bytes, count: count)
        bytes.deallocate()
        bytes = p
        capacity = c
    }

    public func encode(_ row: RowBuffer) { encode(row, as: row.encodings) }

    /// Encodes with `encodings` instead of the row's own: the store's types for the same
    /// columns (e.g. DateTime where the row has DateTime64, for an older server).
    public func encode(_ row: RowBuffer, as encodings: UnsafePointer<RowBuffer.Encoding>) {
        // Fixed-width columns need at most 9 bytes each; strings reserve their own room.
        reserve(row.columnCount * 9)
        for i in 0..<row.columnCount {
            let e = encodings[i]
            if e.base == .omitted { continue }
            let kind = row.kinds[i]
            if e.nullable {
                if kind == .null || kind == .unset {
                    bytes[count] = 1
                    count += 1
                    continue
                }
                bytes[count] = 0
                count += 1
            }
            let word = row.words[i]
            switch e.base {
            case .int8: put(integer(kind, word), 1)
            case .int16: put(integer(kind, word), 2)
            case .int32: put(integer(kind, word), 4)
            case .int64: put(integer(kind, word), 8)
            case .float32: put(UInt64(Float(float(kind, word)).bitPattern), 4)
            case .float64: put(float(kind, word).bitPattern, 8)
            case .dateTime:
                put(UInt64(bitPattern: Int64(bitPattern: integer(kind, word)) / 1000), 4)
            case .dateTime64:
                var v = Int64(bitPattern: integer(kind, word))
                var p = e.precision
                while p > 3 { v &*= 10; p -= 1 }
                while p < 3 { v /= 10; p += 1 }
                put(UInt64(bitPattern: v), 8)
            case .string:
                if kind == .string { putString(row, i) } else { bytes[count] = 0; count += 1 }
            case .json:
                if kind == .string && row.lengths[i] > 0 {
                    putString(row, i)
                } else {
                    bytes[count] = 2; bytes[count + 1] = UInt8(ascii: "{"); bytes[count + 2] = UInt8(ascii: "}")
                    count += 3
                }
            case .omitted: break
            }
        }
        rows += 1
    }

    @inline(__always) func integer(_ kind: RowBuffer.Kind, _ word: UInt64) -> UInt64 {
        switch kind {
        case .uint, .int: word
        case .float: UInt64(bitPattern: Int64(Double(bitPattern: word)))
        default: 0
        }
    }

    @inline(__always) func float(_ kind: RowBuffer.Kind, _ word: UInt64) -> Double {
        switch kind {
        case .float: Double(bitPattern: word)
        case .int: Double(Int64(bitPattern: word))
        case .uint: Double(word)
        default: 0
        }
    }

    /// Little-endian, `width` bytes (room already reserved).
    @inline(__always) func put(_ value: UInt64, _ width: Int) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { UnsafeMutableRawPointer(bytes + count).copyMemory(from: $0.baseAddress!, byteCount: width) }
        count += width
    }

    @inline(__always) func putString(_ row: RowBuffer, _ i: Int) {
        let length = row.lengths[i]
        reserve(length + 10)
        var v = UInt64(length)
        while v >= 0x80 {
            bytes[count] = UInt8(truncatingIfNeeded: v) | 0x80
            count += 1
            v >>= 7
        }
        bytes[count] = UInt8(v)
        count += 1
        (bytes + count).update(from: row.arena + row.offsets[i], count: length)
        count += length
    }
}
