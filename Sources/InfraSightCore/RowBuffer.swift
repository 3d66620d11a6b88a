import InfraSightSchema

/// One row under construction: a typed slot per column plus a byte arena for strings.
/// Reused for every record of its table: writing a row allocates nothing. Owned by the
/// dispatcher thread.
public final class RowBuffer {
    public enum Kind: UInt8 { case unset, uint, int, float, string, null }

    /// How a column is encoded, flattened from its ColumnType once per table so the hot
    /// path switches on a byte instead of walking an indirect enum.
    public struct Encoding: Sendable {
        public enum Base: UInt8, Sendable { case int8, int16, int32, int64, float32, float64, dateTime, dateTime64, string, json, omitted }
        public let base: Base
        public let nullable: Bool
        /// DateTime64 precision (digits after the second).
        public let precision: Int8

        public init(_ type: ColumnType) {
            nullable = type.isNullable
            var p: Int8 = 0
            switch type.base {
            case .uint8, .int8: base = .int8
            case .uint16, .int16: base = .int16
            case .uint32, .int32: base = .int32
            case .uint64, .int64: base = .int64
            case .float32: base = .float32
            case .float64: base = .float64
            case .dateTime: base = .dateTime
            case .dateTime64(let precision): base = .dateTime64; p = Int8(precision)
            case .json: base = .json
            case .string, .nullable, .other: base = .string
            }
            precision = p
        }

        private init(omitted: Void) {
            base = .omitted
            nullable = false
            precision = 0
        }

        /// A column the consumer leaves out of its rows (e.g. one the server derives).
        public static let omitted = Encoding(omitted: ())
    }

    public let schema: TableSchema
    public let tableIndex: Int
    public let columnCount: Int
    /// Per column: what was written. Plain pointers, not arrays: this is the hot path and
    /// arrays in a class pay uniqueness and exclusivity checks on every store.
    public let kinds: UnsafeMutablePointer<Kind>
    /// Per column: the integer value (`int` stored as its bit pattern) or the float's bits.
    public let words: UnsafeMutablePointer<UInt64>
    /// Per column: the string's offset and length in `arena`.
    public let offsets: UnsafeMutablePointer<Int>
    public let lengths: UnsafeMutablePointer<Int>
    public let encodings: UnsafeMutablePointer<Encoding>
    public let arena: UnsafeMutablePointer<UInt8>
    public let arenaCapacity: Int
    public private(set) var arenaUsed = 0
    /// Set when a value could not be stored (bad column index, arena full): the row
    /// counts as a decode error.
    public private(set) var invalid = false
    /// A slot for the consumer (e.g. the index of this table's batch): set once at setup.
    public var consumerSlot = -1

    public init(schema: TableSchema, tableIndex: Int, arenaCapacity: Int = 64 * 1024) {
        self.schema = schema
        self.tableIndex = tableIndex
        let n = schema.columns.count
        columnCount = n
        kinds = .allocate(capacity: n)
        kinds.initialize(repeating: .unset, count: n)
        words = .allocate(capacity: n)
        words.initialize(repeating: 0, count: n)
        offsets = .allocate(capacity: n)
        offsets.initialize(repeating: 0, count: n)
        lengths = .allocate(capacity: n)
        lengths.initialize(repeating: 0, count: n)
        encodings = .allocate(capacity: n)
        for (i, column) in schema.columns.enumerated() { (encodings + i).initialize(to: Encoding(column.type)) }
        self.arenaCapacity = arenaCapacity
        arena = .allocate(capacity: arenaCapacity)
    }

    deinit {
        kinds.deallocate()
        words.deallocate()
        offsets.deallocate()
        lengths.deallocate()
        encodings.deallocate()
        arena.deallocate()
    }

    public func reset() {
        kinds.update(repeating: .unset, count: columnCount)
        arenaUsed = 0
        invalid = false
    }

    @inline(__always) public func setUInt(_ column: Int, _ value: UInt64) {
        guard column >= 0, column < columnCount else { invalid = true; return }
        kinds[column] = .uint
        words[column] = value
    }

    @inline(__always) public func setInt(_ column: Int, _ value: Int64) {
        guard column >= 0, column < columnCount else { invalid = true; return }
        kinds[column] = .int
        words[column] = UInt64(bitPattern: value)
    }

    @inline(__always) public func setFloat(_ column: Int, _ value: Double) {
        guard column >= 0, column < columnCount else { invalid = true; return }
        kinds[column] = .float
        words[column] = value.bitPattern
    }

    @inline(__always) public func setNull(_ column: Int) {
        guard column >= 0, column < columnCount else { invalid = true; return }
        kinds[column] = .null
    }

    /// Copies `length` bytes, repairing invalid UTF-8 (each bad byte becomes U+FFFD).
    public func setString(_ column: Int, _ bytes: UnsafeRawPointer?, _ length: Int) {
        guard column >= 0, column < columnCount, length >= 0 else { invalid = true; return }
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

    /// A copy of this row with room for `extraArena` more bytes of strings (a row held
    /// back until its container is known; allocates: the slow path only).
    public func copy(extraArena: Int = 0) -> RowBuffer {
        let c = RowBuffer(schema: schema, tableIndex: tableIndex, arenaCapacity: max(1, arenaUsed + extraArena))
        c.kinds.update(from: kinds, count: columnCount)
        c.words.update(from: words, count: columnCount)
        c.offsets.update(from: offsets, count: columnCount)
        c.lengths.update(from: lengths, count: columnCount)
        c.encodings.update(from: encodings, count: columnCount)
        c.arena.update(from: arena, count: arenaUsed)
        c.arenaUsed = arenaUsed
        c.invalid = invalid
        c.consumerSlot = consumerSlot
        return c
    }

    /// Bytes this row holds (its arena in use and its per-column arrays).
    public var heldBytes: Int { arenaUsed + columnCount * (MemoryLayout<Kind>.stride + 3 * 8 + MemoryLayout<Encoding>.stride) }

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
