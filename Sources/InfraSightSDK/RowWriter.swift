import CInfraSightABI
import CInfraSightEvent

/// A column of a plugin's table: its index in the DDL, and, by its type, the kind of
/// value it takes. ProbeBuilder generates one handle per column from the DDL
/// (`<Table>Columns.<column>`), so a value of the wrong kind (a string into a number
/// column, a null into a column that is not Nullable) does not compile.
public protocol TableColumn: Sendable {
    var index: UInt32 { get }
}
/// Takes integers (`uint:`, `int:`): integer, DateTime and DateTime64 columns (the host
/// still refuses a value out of the column's range, as a decode error).
public protocol IntegerValued: TableColumn {}
/// Takes floats (`double:`) as well as integers: Float32 and Float64 columns.
public protocol FloatValued: IntegerValued {}
/// Takes bytes and strings (`bytes:length:`, `string:`, `decimal:`): String, JSON, and
/// the types ClickHouse parses from text.
public protocol TextValued: TableColumn {}
/// Takes `putNull`: Nullable columns.
public protocol NullValued: TableColumn {}

public struct IntegerColumn: IntegerValued {
    public let index: UInt32
    public init(_ index: UInt32) { self.index = index }
}
public struct FloatColumn: FloatValued {
    public let index: UInt32
    public init(_ index: UInt32) { self.index = index }
}
public struct TextColumn: TextValued {
    public let index: UInt32
    public init(_ index: UInt32) { self.index = index }
}
public struct NullableIntegerColumn: IntegerValued, NullValued {
    public let index: UInt32
    public init(_ index: UInt32) { self.index = index }
}
public struct NullableFloatColumn: FloatValued, NullValued {
    public let index: UInt32
    public init(_ index: UInt32) { self.index = index }
}
public struct NullableTextColumn: TextValued, NullValued {
    public let index: UInt32
    public init(_ index: UInt32) { self.index = index }
}

/// Writes a row's columns through the host's `is_row_writer`. Valid only inside `decode`.
/// Strings are copied by the host before each call returns.
public struct RowWriter {
    @usableFromInline let raw: UnsafePointer<is_row_writer>

    @inlinable init(_ raw: UnsafePointer<is_row_writer>) { self.raw = raw }

    @inlinable public func put(_ column: some IntegerValued, uint value: UInt64) { put(column.index, uint: value) }
    @inlinable public func put(_ column: some IntegerValued, int value: Int64) { put(column.index, int: value) }
    @inlinable public func put(_ column: some FloatValued, double value: Double) { put(column.index, double: value) }
    /// Writes `length` bytes at `bytes`; they need be neither NUL-terminated nor UTF-8.
    @inlinable public func put(_ column: some TextValued, bytes: UnsafeRawPointer, length: Int) { put(column.index, bytes: bytes, length: length) }
    /// Writes a Swift string (a static name, typically: no allocation for ASCII literals).
    @inlinable public func put(_ column: some TextValued, string: StaticString) { put(column.index, string: string) }
    /// Writes `prefix` followed by `value` in decimal, formatted on the stack.
    @inlinable public func put(_ column: some TextValued, prefix: StaticString = "", decimal value: Int64) { put(column.index, prefix: prefix, decimal: value) }
    @inlinable public func putNull(_ column: some NullValued) { putNull(column.index) }

    // By bare index: for hand-written indices (plugins written before the typed handles).
    // The host checks each value against the column and refuses a wrong kind as a decode
    // error at run time, where the typed handles refuse it at compile time.

    @inlinable public func put(_ column: UInt32, uint value: UInt64) {
        raw.pointee.put_uint(raw.pointee.host, column, value)
    }

    @inlinable public func put(_ column: UInt32, int value: Int64) {
        raw.pointee.put_int(raw.pointee.host, column, value)
    }

    @inlinable public func put(_ column: UInt32, double value: Double) {
        raw.pointee.put_float(raw.pointee.host, column, value)
    }

    /// Writes `length` bytes at `bytes`; they need be neither NUL-terminated nor UTF-8.
    @inlinable public func put(_ column: UInt32, bytes: UnsafeRawPointer, length: Int) {
        raw.pointee.put_string(raw.pointee.host, column, bytes.assumingMemoryBound(to: CChar.self), length)
    }

    /// Writes a Swift string (a static name, typically: no allocation for ASCII literals).
    @inlinable public func put(_ column: UInt32, string: StaticString) {
        string.withUTF8Buffer { buffer in
            raw.pointee.put_string(raw.pointee.host, column, UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self), buffer.count)
        }
    }

    /// Writes `prefix` followed by `value` in decimal (e.g. `PTRACE_UNKNOWN_` + 77, or a
    /// port as text), formatted on the stack: no allocation.
    public func put(_ column: UInt32, prefix: StaticString = "", decimal value: Int64) {
        var digits: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { b in
            var n = 0
            prefix.withUTF8Buffer { for c in $0.prefix(40) { b[n] = c; n += 1 } }
            if value < 0 { b[n] = UInt8(ascii: "-"); n += 1 }
            var v = value.magnitude, count = 0, t = v
            repeat { count += 1; t /= 10 } while t > 0
            for i in stride(from: n + count - 1, through: n, by: -1) { b[i] = UInt8(48 + v % 10); v /= 10 }
            put(column, bytes: UnsafeRawPointer(b.baseAddress!), length: n + count)
        }
    }

    @inlinable public func putNull(_ column: UInt32) {
        raw.pointee.put_null(raw.pointee.host, column)
    }
}

/// One ring-buffer record, valid only inside `decode`. Its size is at least the header's.
public struct RawRecord {
    public let bytes: UnsafeRawBufferPointer

    @inlinable public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// The common header, copied out (the record may be unaligned for Swift's view).
    @inlinable public var header: is_event_header { bytes.loadUnaligned(as: is_event_header.self) }

    /// The record as `T` when it is at least `MemoryLayout<T>.size` bytes, else nil.
    @inlinable public func load<T>(as type: T.Type) -> T? {
        bytes.count >= MemoryLayout<T>.size ? bytes.loadUnaligned(as: T.self) : nil
    }

    /// A pointer to the byte at `offset` when `offset + length` fits, else nil.
    @inlinable public func pointer(at offset: Int, length: Int) -> UnsafeRawPointer? {
        guard offset >= 0, length >= 0, offset + length <= bytes.count else { return nil }
        return bytes.baseAddress! + offset
    }

    /// The length of the NUL-terminated string in `capacity` bytes at `offset` (the
    /// capacity when there is no NUL, so a missing terminator cannot run past the field).
    @inlinable public func cStringLength(at offset: Int, capacity: Int) -> Int {
        guard let p = pointer(at: offset, length: capacity) else { return 0 }
        let bytes = p.assumingMemoryBound(to: UInt8.self)
        var n = 0
        while n < capacity, bytes[n] != 0 { n += 1 }
        return n
    }
}
