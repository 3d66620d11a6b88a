import InfraSightSchema

/// One row under construction: a typed slot per column plus a byte arena for strings.
/// Reused for every record of its table: writing a row allocates nothing. Owned by the
/// dispatcher thread.
public final class RowBuffer {
    public enum Kind: UInt8 { case unset, uint, int, float, string, null }

    public let schema: TableSchema
    public let tableIndex: Int
    /// Per column: what was written.
    public private(set) var kinds: [Kind]
    /// Per column: the integer value (`int` stored as its bit pattern) or the float's bits.
    public private(set) var words: [UInt64]
    /// Per column: the string's offset and length in `arena`.
    public private(set) var offsets: [Int]
    public private(set) var lengths: [Int]
    public let arena: UnsafeMutablePointer<UInt8>
    public let arenaCapacity: Int
    public private(set) var arenaUsed = 0
    /// Set when a value could not be stored (bad column index, arena full): the row
    /// counts as a decode error.
    public private(set) var invalid = false

    public init(schema: TableSchema, tableIndex: Int, arenaCapacity: Int = 64 * 1024) {
        self.schema = schema
        self.tableIndex = tableIndex
        let n = schema.columns.count
        kinds = Array(repeating: .unset, count: n)
        words = Array(repeating: 0, count: n)
        offsets = Array(repeating: 0, count: n)
        lengths = Array(repeating: 0, count: n)
        self.arenaCapacity = arenaCapacity
        arena = .allocate(capacity: arenaCapacity)
    }

    deinit { arena.deallocate() }

    @inline(__always) public var columnCount: Int { kinds.count }

    public func reset() {
        kinds.withUnsafeMutableBufferPointer { $0.update(repeating: .unset) }
        arenaUsed = 0
        invalid = false
    }

    @inline(__always) public func setUInt(_ column: Int, _ value: UInt64) {
        guard column >= 0, column < kinds.count else { invalid = true; return }
        kinds[column] = .uint
        words[column] = value
    }

    @inline(__always) public func setInt(_ column: Int, _ value: Int64) {
        guard column >= 0, column < kinds.count else { invalid = true; return }
        kinds[column] = .int
        words[column] = UInt64(bitPattern: value)
    }

    @inline(__always) public func setFloat(_ column: Int, _ value: Double) {
        guard column >= 0, column < kinds.count else { invalid = true; return }
        kinds[column] = .float
        words[column] = value.bitPattern
    }

    @inline(__always) public func setNull(_ column: Int) {
        guard column >= 0, column < kinds.count else { invalid = true; return }
        kinds[column] = .null
    }

    /// Copies `length` bytes, repairing invalid UTF-8 (each bad byte becomes U+FFFD).
    public func setString(_ column: Int, _ bytes: UnsafeRawPointer?, _ length: Int) {
        guard column >= 0, column < kinds.count, length >= 0 else { invalid = true; return }
        let start = arenaUsed
        if length > 0, let bytes {
            guard UTF8Repair.copy(from: bytes.assumingMemoryBound(to: UInt8.self), count: length,
                                  to: arena + start, capacity: arenaCapacity - start, written: &arenaUsed)
            else { invalid = true; arenaUsed = start; return }
        }
        kinds[column] = .string
        offsets[column] = start
        lengths[column] = arenaUsed - start
    }

    public func setString(_ column: Int, _ text: String) {
        var text = text
        text.withUTF8 { setString(column, UnsafeRawPointer($0.baseAddress), $0.count) }
    }

    /// The string in `column` (for tests and slow paths; allocates).
    public func string(_ column: Int) -> String? {
        guard kinds[column] == .string else { return nil }
        return String(decoding: UnsafeBufferPointer(start: arena + offsets[column], count: lengths[column]), as: UTF8.self)
    }

    @inline(__always) public func stringBytes(_ column: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: arena + offsets[column], count: lengths[column])
    }
}

/// Copies bytes while replacing invalid UTF-8 with U+FFFD. Allocation-free.
enum UTF8Repair {
    /// Returns false when the output does not fit in `capacity`; `written` advances by the
    /// bytes written.
    static func copy(from src: UnsafePointer<UInt8>, count: Int, to dst: UnsafeMutablePointer<UInt8>, capacity: Int, written: inout Int) -> Bool {
        var i = 0
        var o = 0
        while i < count {
            let b = src[i]
            if b < 0x80 {
                guard o < capacity else { return false }
                dst[o] = b; o += 1; i += 1
                continue
            }
            let need: Int
            let minValue: UInt32
            var value: UInt32
            switch b {
            case 0xC2...0xDF: need = 1; value = UInt32(b & 0x1F); minValue = 0x80
            case 0xE0...0xEF: need = 2; value = UInt32(b & 0x0F); minValue = 0x800
            case 0xF0...0xF4: need = 3; value = UInt32(b & 0x07); minValue = 0x10000
            default: need = -1; value = 0; minValue = 0
            }
            var ok = need > 0 && i + need < count
            if ok {
                for k in 1...need {
                    let c = src[i + k]
                    if c & 0xC0 != 0x80 { ok = false; break }
                    value = value << 6 | UInt32(c & 0x3F)
                }
                if ok, value < minValue || value > 0x10FFFF || (0xD800...0xDFFF).contains(value) { ok = false }
            }
            if ok {
                guard o + need + 1 <= capacity else { return false }
                for k in 0...need { dst[o + k] = src[i + k] }
                o += need + 1
                i += need + 1
            } else {
                guard o + 3 <= capacity else { return false }
                dst[o] = 0xEF; dst[o + 1] = 0xBF; dst[o + 2] = 0xBD
                o += 3
                i += 1
            }
        }
        written += o
        return true
    }
}
