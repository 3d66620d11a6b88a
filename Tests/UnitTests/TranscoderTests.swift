import Foundation
import InfraSightCore
import InfraSightSchema
import InfraSightStorage
import Testing

/// The server's RowBinary rewriting: type mapping for an older store, derived columns,
/// and refusal of malformed batches.
struct TranscoderTests {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func str(_ s: String) -> [UInt8] { [UInt8(s.utf8.count)] + Array(s.utf8) }

    let table = TableSchema(database: "audit", name: "t", columns: [
        Column(name: "pid", type: .uint32),
        Column(name: "latency_ns", type: .uint64),
        Column(name: "latency_ms", type: .float64),
        Column(name: "wall_time_ms", type: .int64),
        Column(name: "wall_time_dt", type: .dateTime),
        Column(name: "user", type: .nullable(.string)),
        Column(name: "extra", type: .string),
    ], ddl: "")

    @Test func derivesLeftOutColumnsAndMapsTypes() throws {
        let input = [
            Column(name: "pid", type: .uint32), Column(name: "latency_ns", type: .uint64),
            Column(name: "wall_time_ms", type: .int64), Column(name: "user", type: .nullable(.string)),
        ]
        let t = try RowBinaryTranscoder(input: input, table: table)
        #expect(t.output.columns.map(\.name) == ["pid", "latency_ns", "latency_ms", "wall_time_ms", "wall_time_dt", "user"])
        let row1 = le(UInt32(7)) + le(UInt64(2_500_000)) + le(Int64(1_700_000_000_123)) + [0] + str("root")
        let row2 = le(UInt32(8)) + le(UInt64(0)) + le(Int64(1_000)) + [1]
        let out = try t.transcode(Data(row1 + row2), rows: 2)
        let expected = le(UInt32(7)) + le(UInt64(2_500_000)) + le((2.5).bitPattern) + le(Int64(1_700_000_000_123)) + le(UInt32(1_700_000_000)) + [0] + str("root")
            + le(UInt32(8)) + le(UInt64(0)) + le((0.0).bitPattern) + le(Int64(1_000)) + le(UInt32(1)) + [1]
        #expect(Array(out) == expected)
    }

    @Test func dateTime64BecomesDateTimeForAnOldServer() throws {
        let old = TableSchema(database: nil, name: "t", columns: [Column(name: "at", type: .dateTime)], ddl: "")
        let t = try RowBinaryTranscoder(input: [Column(name: "at", type: .dateTime64(precision: 3))], table: old)
        #expect(Array(try t.transcode(Data(le(Int64(1_700_000_000_999))), rows: 1)) == le(UInt32(1_700_000_000)))
    }

    @Test func identicalColumnsPassThroughAfterValidation() throws {
        let same = TableSchema(database: nil, name: "t", columns: [Column(name: "a", type: .string), Column(name: "b", type: .uint8)], ddl: "")
        let t = try RowBinaryTranscoder(input: same.columns, table: same)
        #expect(t.isIdentity)
        let data = Data(str("x") + [5])
        #expect(try t.transcode(data, rows: 1) == data)
        #expect(throws: StorageError.self) { try t.transcode(data, rows: 2) }
        #expect(throws: StorageError.self) { try t.transcode(data + Data([1]), rows: 1) }
        #expect(throws: StorageError.self) { try t.transcode(Data([9, 65]), rows: 1) }
    }

    @Test func unknownColumnsAndIncompatibleTypesAreRefused() {
        #expect(throws: StorageError.self) { try RowBinaryTranscoder(input: [Column(name: "nope", type: .uint8)], table: table) }
        #expect(throws: StorageError.self) { try RowBinaryTranscoder(input: [Column(name: "pid", type: .string)], table: table) }
        #expect(throws: StorageError.self) {
            try RowBinaryTranscoder(input: [Column(name: "pid", type: .uint32), Column(name: "pid", type: .uint32)], table: table)
        }
    }
}

/// ptrace request names are derived centrally when the agent leaves them out.
struct CentralNameTests {
    @Test func ptraceRequestNamesComeFromTheRequestNumber() throws {
        let table = TableSchema(database: "audit", name: "ptrace_events", columns: [
            Column(name: "request", type: .int64), Column(name: "request_name", type: .string),
        ], ddl: "")
        let t = try RowBinaryTranscoder(input: [Column(name: "request", type: .int64)], table: table)
        #expect(t.output.columns.map(\.name) == ["request", "request_name"])
        func le(_ v: Int64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let out = try t.transcode(Data(le(0x4206) + le(999)), rows: 2)
        let seize = Array("PTRACE_SEIZE".utf8), unknown = Array("PTRACE_UNKNOWN_999".utf8)
        #expect(Array(out) == le(0x4206) + [UInt8(seize.count)] + seize + le(999) + [UInt8(unknown.count)] + unknown)
        // Another table's `request_name` is not a ptrace request: left to its default.
        let other = TableSchema(database: "x", name: "y", columns: table.columns, ddl: "")
        #expect(try RowBinaryTranscoder(input: [Column(name: "request", type: .int64)], table: other).output.columns.map(\.name) == ["request"])
    }
}

/// Derived columns as a plugin declares them (sent in the agent's hello): the server
/// derives what was declared, for any table, and nothing it was not told.
struct DeclaredDerivedColumnTests {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func str(_ s: String) -> [UInt8] { [UInt8(s.utf8.count)] + Array(s.utf8) }

    /// A third party's table, with its own names for every column.
    let table = TableSchema(database: "audit", name: "vendor_events", columns: [
        Column(name: "op", type: .int64), Column(name: "op_name", type: .nullable(.string)),
        Column(name: "took_ns", type: .uint64), Column(name: "took_ms", type: .float64),
        Column(name: "at_ms", type: .int64), Column(name: "at", type: .dateTime64(precision: 6)),
    ], ddl: "")
    let declared = [
        DerivedColumn(column: "op_name", source: "op", kind: .codeName(table: "ptrace_request")),
        DerivedColumn(column: "took_ms", source: "took_ns", kind: .millisecondsFromNanoseconds),
        DerivedColumn(column: "at", source: "at_ms", kind: .timeFromMilliseconds),
    ]
    let sent = [Column(name: "op", type: .int64), Column(name: "took_ns", type: .uint64), Column(name: "at_ms", type: .int64)]

    @Test func aThirdPartyTablesDeclaredColumnsAreDerivedWhateverTheirNames() throws {
        let t = try RowBinaryTranscoder(input: sent, table: table, derived: declared)
        #expect(t.output.columns.map(\.name) == ["op", "op_name", "took_ns", "took_ms", "at_ms", "at"])
        let out = try t.transcode(Data(le(Int64(16)) + le(UInt64(1_500_000)) + le(Int64(1_700_000_000_123))), rows: 1)
        #expect(Array(out) == le(Int64(16)) + [0] + str("PTRACE_ATTACH") + le(UInt64(1_500_000)) + le((1.5).bitPattern)
            + le(Int64(1_700_000_000_123)) + le(Int64(1_700_000_000_123_000)))
        // Unknown codes get the code table's unknown form.
        let unknown = try t.transcode(Data(le(Int64(-3)) + le(UInt64(0)) + le(Int64(0))), rows: 1)
        #expect(Array(Array(unknown)[8..<27]) == [0] + str("PTRACE_UNKNOWN_-3"))
    }

    @Test func withoutADeclarationNothingOfAThirdPartyTableIsDerived() throws {
        let t = try RowBinaryTranscoder(input: sent, table: table)
        #expect(t.output.columns.map(\.name) == ["op", "took_ns", "at_ms"])
    }

    @Test func aDeclarationReplacesTheFallbackForAgentsThatDeclaredNone() throws {
        let ptrace = TableSchema(database: "audit", name: "ptrace_events", columns: [
            Column(name: "request", type: .int64), Column(name: "request_name", type: .string),
            Column(name: "latency_ns", type: .uint64), Column(name: "latency_ms", type: .float64),
        ], ddl: "")
        let input = [Column(name: "request", type: .int64), Column(name: "latency_ns", type: .uint64)]
        // An agent from before declarations: what it left out is derived (the code table says which).
        #expect(DerivedColumns.undeclared(in: ptrace).map(\.column) == ["latency_ms", "request_name"])
        #expect(try RowBinaryTranscoder(input: input, table: ptrace).output.columns.count == 4)
        // An agent whose plugin declares only the latency: the name is not derived.
        let onlyLatency = [DerivedColumn(column: "latency_ms", source: "latency_ns", kind: .millisecondsFromNanoseconds)]
        #expect(try RowBinaryTranscoder(input: input, table: ptrace, derived: onlyLatency).output.columns.map(\.name) == ["request", "latency_ns", "latency_ms"])
        // A column that was sent is copied, declared or not.
        let all = input + [Column(name: "request_name", type: .string)]
        let t = try RowBinaryTranscoder(input: all, table: ptrace, derived: DerivedColumns.undeclared(in: ptrace))
        #expect(t.output.columns.map(\.name) == ["request", "request_name", "latency_ns", "latency_ms"])
    }

    @Test func declarationsTheServerCannotComputeAreRefused() {
        let bad: [([DerivedColumn], String)] = [
            ([DerivedColumn(column: "op_name", source: "op", kind: .codeName(table: "no_such_codes"))], "op_name: unknown code table no_such_codes"),
            ([DerivedColumn(column: "op_name", source: "op", kind: .millisecondsFromNanoseconds)], "op_name is Nullable(String), which milliseconds_from_nanoseconds cannot fill"),
            ([DerivedColumn(column: "took_ms", source: "at", kind: .millisecondsFromNanoseconds)], "took_ms: its source at is DateTime64(6), not an integer type"),
            ([DerivedColumn(column: "nope", source: "op", kind: .timeFromMilliseconds)], "nope: audit.vendor_events has no such column"),
            ([DerivedColumn(column: "at", source: "at", kind: .timeFromMilliseconds)], "at: its source at is itself derived"),
            (declared + [declared[1]], "took_ms is declared twice"),
        ]
        for (derived, reason) in bad {
            #expect(DerivedColumns.problem(derived, in: table) == reason)
            #expect(throws: StorageError.self) { try RowBinaryTranscoder(input: sent, table: table, derived: derived) }
            // A sender relies only on what the store side can compute.
            #expect(DerivedColumns.problem(DerivedColumns.derivable(derived, in: table), in: table) == nil)
        }
    }
}
