import Foundation
import InfraSightCodes
import InfraSightCore
import InfraSightSchema

/// Columns a sender may leave out because the store side derives them from another
/// column of the same row. Which column derives from which is declared by the plugin that
/// owns the table (`LoadedPlugin.derivedColumns`, sent in the agent's hello); this side
/// knows only the kinds of derivation (`DerivedColumn.Kind`) and the code tables
/// (`CodeTable`), never a plugin.
public enum DerivedColumns {
    /// What agents that declare no derived columns (those from before plugins declared
    /// them) leave out of `table`: latency_ms and wall_time_dt where the table has them,
    /// and the code names the code tables list (`CodeTable.undeclaredBefore`).
    public static func undeclared(in table: TableSchema) -> [DerivedColumn] {
        let codeNames = CodeTable.all.values.sorted { $0.name < $1.name }.flatMap { codes in
            codes.undeclaredBefore.filter { $0.table == table.qualifiedName }.map {
                DerivedColumn(column: $0.column, source: $0.source, kind: .codeName(table: codes.name))
            }
        }
        return DerivedColumn.standard(in: table) + codeNames.filter { DerivedColumn.problem([$0], in: table) == nil }
    }

    /// Why this side cannot derive `derived` for `table`, or nil: the declarations must fit
    /// the table (`DerivedColumn.problem`) and name only code tables this build knows.
    public static func problem(_ derived: [DerivedColumn], in table: TableSchema) -> String? {
        if let why = DerivedColumn.problem(derived, in: table) { return why }
        for d in derived {
            if let codes = d.codeTable, CodeTable.named(codes) == nil { return "\(d.column): unknown code table \(codes)" }
        }
        return nil
    }

    /// The declarations a sender may rely on (leave their columns out): in order, each one
    /// that fits `table` with those kept before it and that this build can compute. The
    /// others' columns must be sent.
    public static func derivable(_ derived: [DerivedColumn], in table: TableSchema) -> [DerivedColumn] {
        guard problem(derived, in: table) != nil else { return derived }
        return derived.reduce(into: []) { kept, d in
            if problem(kept + [d], in: table) == nil { kept.append(d) }
        }
    }
}

/// Rewrites RowBinary rows encoded for one column list (what an agent sent) into the
/// store's table: same-named columns are copied or converted (DateTime64 → DateTime and
/// other precisions for an older server; JSON carried as a string → String), derived
/// columns the sender left out are computed from their source column as declared
/// (`DerivedColumn`: milliseconds from nanoseconds, time from epoch milliseconds, a code's
/// name from a `CodeTable`), and any other missing column is left to the table's default.
/// Every row is walked, so a malformed batch (short, trailing bytes, a wrong row count) is
/// refused with a message instead of reaching ClickHouse.
public struct RowBinaryTranscoder: Sendable {
    /// How one output column is produced.
    enum Source: Sendable {
        case copy(input: Int, from: ColumnType, to: ColumnType)
        /// Float64 milliseconds from an integer nanosecond column.
        case millisecondsFromNanoseconds(input: Int, to: ColumnType)
        /// DateTime64/DateTime from an integer epoch-milliseconds column.
        case timeFromMilliseconds(input: Int, to: ColumnType)
        /// The name of an integer column's code (`<unknownPrefix><n>` when unknown).
        case codeName(input: Int, codes: CodeTable, to: ColumnType)
        /// The same encoded value in every row (e.g. the node name a server proved).
        case constant(Data)
    }

    public let input: [Column]
    /// The store's table restricted to the columns this transcoder writes, in table order.
    public let output: TableSchema
    let sources: [Source]
    /// Input and output are the same columns with the same types: bytes pass unchanged.
    public let isIdentity: Bool

    /// `derived`: the columns of `table` the sender declared derivable (its hello's
    /// declarations, checked with `DerivedColumns.problem`); nil for a sender that declared
    /// none, which gets `DerivedColumns.undeclared(in:)`. A derived column the input lacks
    /// is computed when the input has its source; one the input has is copied.
    /// `constants`: String columns written with one value in every row, whatever the
    /// input carries for them (a server writes the node name an agent's credentials prove).
    public init(input: [Column], table: TableSchema, derived: [DerivedColumn]? = nil, constants: [String: String] = [:]) throws(StorageError) {
        self.input = input
        guard !input.isEmpty else { throw StorageError("a batch needs at least one column") }
        var byName: [String: Int] = [:]
        for (i, c) in input.enumerated() {
            guard c.type.isSupported else { throw StorageError("column \(c.name) has unsupported type \(c.type)") }
            guard byName.updateValue(i, forKey: c.name) == nil else { throw StorageError("column \(c.name) appears twice") }
            guard table.index(of: c.name) != nil else { throw StorageError("\(table.qualifiedName) has no column \(c.name)") }
        }
        let derived = derived ?? DerivedColumns.undeclared(in: table)
        if let why = DerivedColumns.problem(derived, in: table) {
            throw StorageError("\(table.qualifiedName): cannot derive \(why)")
        }
        var columns: [Column] = []
        var sources: [Source] = []
        for column in table.columns {
            if let value = constants[column.name], column.type == .string {
                var encoded = Data()
                Self.appendString(Array(value.utf8), to: &encoded)
                sources.append(.constant(encoded))
            } else if let i = byName[column.name] {
                guard Self.convertible(input[i].type, column.type) else {
                    throw StorageError("column \(column.name) of \(table.qualifiedName) is \(column.type) in the store; the batch has \(input[i].type)")
                }
                sources.append(.copy(input: i, from: input[i].type, to: column.type))
            } else if let d = derived.first(where: { $0.column == column.name }), let i = byName[d.source], DerivedColumn.isInteger(input[i].type) {
                switch d.kind {
                case .millisecondsFromNanoseconds: sources.append(.millisecondsFromNanoseconds(input: i, to: column.type))
                case .timeFromMilliseconds: sources.append(.timeFromMilliseconds(input: i, to: column.type))
                case .codeName(let name):
                    sources.append(.codeName(input: i, codes: CodeTable.named(name)!, to: column.type)) // checked above
                }
            } else {
                continue
            }
            columns.append(column)
        }
        output = TableSchema(database: table.database, name: table.name, columns: columns, ddl: table.ddl, tail: table.tail)
        self.sources = sources
        isIdentity = constants.isEmpty && columns.count == input.count && zip(columns, input).allSatisfy { $0 == $1 }
    }

    static func convertible(_ from: ColumnType, _ to: ColumnType) -> Bool {
        if from == to { return true }
        switch (from, to) {
        case (.nullable(let a), .nullable(let b)): return convertible(a, b)
        case (.dateTime64, .dateTime), (.dateTime64, .dateTime64), (.dateTime, .dateTime64): return true
        case (.json, .string), (.string, .json): return true
        default: return false
        }
    }

    /// The rows for `output`, or the input itself when nothing changes. Throws when the
    /// bytes do not hold exactly `rows` rows of the input columns.
    public func transcode(_ data: Data, rows: Int) throws(StorageError) -> Data {
        // Every row takes at least one byte: a larger count is a lie, refused before the
        // count sizes anything.
        guard rows >= 0, rows <= data.count else { throw StorageError("malformed batch: \(rows) rows claimed in \(data.count) bytes") }
        var reader = Reader(data: data)
        var out = Data()
        if !isIdentity { out.reserveCapacity(data.count + rows * 16) }
        var fields = [Range<Int>](repeating: 0..<0, count: input.count)
        for row in 0..<rows {
            for (i, c) in input.enumerated() {
                guard let r = reader.skip(c.type) else { throw StorageError("malformed batch: row \(row) ends inside column \(c.name)") }
                fields[i] = r
            }
            if isIdentity { continue }
            for source in sources {
                switch source {
                case .copy(let i, let from, let to):
                    Self.convert(data, fields[i], from, to, into: &out)
                case .millisecondsFromNanoseconds(let i, let to):
                    let ms = Double(Self.integer(data, fields[i], input[i].type)) / 1e6
                    if to.isNullable { out.append(0) }
                    Self.append(ms.bitPattern, 8, to: &out)
                case .timeFromMilliseconds(let i, let to):
                    if to.isNullable { out.append(0) }
                    Self.appendTime(milliseconds: Self.integer(data, fields[i], input[i].type), as: to.base, to: &out)
                case .codeName(let i, let codes, let to):
                    let code = Self.integer(data, fields[i], input[i].type)
                    if to.isNullable { out.append(0) }
                    if let name = codes.knownName(of: code) {
                        name.withUTF8Buffer { Self.appendString($0, to: &out) }
                    } else {
                        Self.appendString(Array(codes.name(of: code).utf8), to: &out)
                    }
                case .constant(let encoded):
                    out.append(encoded)
                }
            }
        }
        guard reader.offset == data.count else {
            throw StorageError("malformed batch: \(data.count - reader.offset) bytes after \(rows) rows")
        }
        return isIdentity ? data : out
    }

    /// A RowBinary String: LEB128 length, then the bytes.
    public static func appendString<C: Collection>(_ bytes: C, to out: inout Data) where C.Element == UInt8 {
        var n = bytes.count
        while n >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: n) | 0x80)
            n >>= 7
        }
        out.append(UInt8(n))
        out.append(contentsOf: bytes)
    }

    /// A fixed-width integer, little-endian, `width` bytes.
    public static func append(_ value: UInt64, _ width: Int, to out: inout Data) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { out.append(contentsOf: $0.prefix(width)) }
    }

    static func appendTime(milliseconds ms: Int64, as type: ColumnType, to out: inout Data) {
        switch type {
        case .dateTime: append(UInt64(UInt32(truncatingIfNeeded: ms / 1000)), 4, to: &out)
        case .dateTime64(let p): append(UInt64(bitPattern: scale(ms, from: 3, to: p)), 8, to: &out)
        default: break
        }
    }

    static func scale(_ v: Int64, from: Int, to: Int) -> Int64 {
        var v = v, p = from
        while p < to { v &*= 10; p += 1 }
        while p > to { v /= 10; p -= 1 }
        return v
    }

    /// A fixed-width integer field as Int64 (signed types sign-extended).
    static func integer(_ data: Data, _ r: Range<Int>, _ type: ColumnType) -> Int64 {
        var raw: UInt64 = 0
        for (k, byte) in data[r].enumerated() { raw |= UInt64(byte) << (8 * UInt64(k)) }
        switch type {
        case .int8: return Int64(Int8(truncatingIfNeeded: raw))
        case .int16: return Int64(Int16(truncatingIfNeeded: raw))
        case .int32: return Int64(Int32(truncatingIfNeeded: raw))
        default: return Int64(bitPattern: raw)
        }
    }

    static func convert(_ data: Data, _ r: Range<Int>, _ from: ColumnType, _ to: ColumnType, into out: inout Data) {
        switch (from, to) {
        case (.nullable(let a), .nullable(let b)):
            out.append(data[r.lowerBound])
            if data[r.lowerBound] == 0 { convert(data, (r.lowerBound + 1)..<r.upperBound, a, b, into: &out) }
        case (.dateTime64(let p), .dateTime):
            let v = scale(integer(data, r, .int64), from: p, to: 0)
            append(UInt64(UInt32(truncatingIfNeeded: v)), 4, to: &out)
        case (.dateTime64(let p), .dateTime64(let q)) where p != q:
            append(UInt64(bitPattern: scale(integer(data, r, .int64), from: p, to: q)), 8, to: &out)
        case (.dateTime, .dateTime64(let q)):
            append(UInt64(bitPattern: scale(integer(data, r, .uint32), from: 0, to: q)), 8, to: &out)
        default:
            out.append(data[r])
        }
    }

    /// Walks RowBinary fields.
    struct Reader {
        let data: Data
        var offset: Int

        init(data: Data) {
            self.data = data
            offset = data.startIndex
        }

        /// The range of the next field of `type`, or nil when the data ends first.
        mutating func skip(_ type: ColumnType) -> Range<Int>? {
            let start = offset
            switch type {
            case .nullable(let inner):
                guard offset < data.endIndex else { return nil }
                let isNull = data[offset] != 0
                offset += 1
                if !isNull { guard skip(inner) != nil else { return nil } }
            case .uint8, .int8: guard advance(1) else { return nil }
            case .uint16, .int16: guard advance(2) else { return nil }
            case .uint32, .int32, .float32, .dateTime: guard advance(4) else { return nil }
            case .uint64, .int64, .float64, .dateTime64: guard advance(8) else { return nil }
            case .string, .json:
                var length = 0, shift = 0
                while true {
                    guard offset < data.endIndex, shift < 63 else { return nil }
                    let b = data[offset]
                    offset += 1
                    length |= Int(b & 0x7F) << shift
                    if b & 0x80 == 0 { break }
                    shift += 7
                }
                guard advance(length) else { return nil }
            case .other: return nil
            }
            return start..<offset
        }

        mutating func advance(_ n: Int) -> Bool {
            guard n >= 0, data.endIndex - offset >= n else { return false }
            offset += n
            return true
        }
    }
}
