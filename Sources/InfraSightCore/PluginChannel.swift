import CInfraSightABI
import CInfraSightEvent
import InfraSightSchema
import Logging
import Synchronization

/// Receives finished rows from the dispatcher thread. Must not block for long: it runs
/// inside the ring-buffer drain.
public protocol RowConsumer: AnyObject {
    func consume(_ row: RowBuffer, from channel: PluginChannel)
}

/// Per-plugin counters, readable from any thread.
public final class PluginCounters: Sendable {
    /// Records taken from the ring buffer.
    public let received = Atomic<UInt64>(0)
    /// Records the decoder (or the host's checks) refused.
    public let decodeErrors = Atomic<UInt64>(0)
    /// Of `decodeErrors`: records whose decoder wrote a value of the wrong kind for a
    /// column (see `ColumnAcceptance`).
    public let wrongKind = Atomic<UInt64>(0)
    /// Records that produced no row by the plugin's choice.
    public let skipped = Atomic<UInt64>(0)
    /// Rows handed on to the consumer.
    public let rows = Atomic<UInt64>(0)
    public init() {}
}

/// One running plugin on the dispatcher: its instance, its reusable row buffers, and the
/// decode path from ring-buffer record to finished row (no allocation per record).
///
/// Unchecked Sendable: the decode path (the C row writer, the row buffers, the plugin
/// instance) is the dispatcher thread's alone; other threads read only `plugin` and the
/// atomic `counters`.
public final class PluginChannel: @unchecked Sendable {
    public let plugin: LoadedPlugin
    let instance: OpaquePointer
    public let rows: [RowBuffer]
    let maps: [HostColumnMap]
    /// Per table: what the plugin's row writer writes into (the table's row).
    let sinks: [RowSink]
    let enricher: Enricher
    /// The size of the common header in this plugin's records, and whether it holds the
    /// start times: both from the ABI the plugin was built against (`RecordHeader`).
    let headerSize: Int
    let startTimes: Bool
    public let counters = PluginCounters()
    unowned let consumer: RowConsumer
    let logger: Logger?
    private var writer: is_row_writer
    private let decode: @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int, UnsafePointer<is_row_writer>?) -> Int32

    /// `logger` hears, once per column, that a decoder wrote a value of the wrong kind.
    public init(plugin: LoadedPlugin, instance: OpaquePointer, enricher: Enricher, consumer: RowConsumer, logger: Logger? = nil) {
        self.plugin = plugin
        self.instance = instance
        self.enricher = enricher
        self.consumer = consumer
        self.logger = logger
        decode = plugin.descriptor.decode! // the loader refused descriptors without one
        headerSize = RecordHeader.size(abiMinor: plugin.descriptor.abi_minor)
        startTimes = RecordHeader.hasStartTimes(abiMinor: plugin.descriptor.abi_minor)
        rows = plugin.tables.enumerated().map { RowBuffer(schema: $1, tableIndex: $0) }
        maps = plugin.tables.map(HostColumnMap.init)
        sinks = rows.map(RowSink.init)
        writer = is_row_writer(
            host: nil,
            put_uint: { host, column, value in
                let sink = Unmanaged<RowSink>.fromOpaque(host!).takeUnretainedValue()
                if sink.refuses(Int(column), { $0.accepts(uint: value) }, "an unsigned integer") { return }
                sink.row.setUInt(Int(column), value)
            },
            put_int: { host, column, value in
                let sink = Unmanaged<RowSink>.fromOpaque(host!).takeUnretainedValue()
                if sink.refuses(Int(column), { $0.accepts(int: value) }, "a signed integer") { return }
                sink.row.setInt(Int(column), value)
            },
            put_float: { host, column, value in
                let sink = Unmanaged<RowSink>.fromOpaque(host!).takeUnretainedValue()
                if sink.refuses(Int(column), { $0.accepts(float: value) }, "a float") { return }
                sink.row.setFloat(Int(column), value)
            },
            put_string: { host, column, bytes, length in
                let sink = Unmanaged<RowSink>.fromOpaque(host!).takeUnretainedValue()
                if sink.refuses(Int(column), { $0.acceptsString }, "a string") { return }
                sink.row.setString(Int(column), UnsafeRawPointer(bytes), length)
            },
            put_null: { host, column in
                let sink = Unmanaged<RowSink>.fromOpaque(host!).takeUnretainedValue()
                if sink.refuses(Int(column), { $0.nullable }, "NULL") { return }
                sink.row.setNull(Int(column))
            })
    }

    /// Decodes one record into a row and hands it to the consumer. Malformed records (too
    /// short, a size field that runs past the record or claims less than the header, an
    /// unknown table, a decoder refusal, a value of the wrong kind for its column) are
    /// counted as decode errors and never reach the consumer. The header is the one of
    /// the plugin's ABI: 104 bytes from ABI 1.2, 88 for a plugin built against 1.0 or 1.1,
    /// whose header ends before the start times (its rows get 0 there; see
    /// `RecordHeader`). Only the members of that header are read.
    /// Called by the dispatcher for every ring-buffer record; public for benchmarks and
    /// tests that feed records without a kernel.
    @inline(__always)
    public func handle(_ data: UnsafeRawPointer, _ size: Int) {
        counters.received.add(1, ordering: .relaxed)
        guard size >= headerSize else {
            counters.decodeErrors.add(1, ordering: .relaxed)
            return
        }
        let header = data.assumingMemoryBound(to: is_event_header.self)
        let table = Int(header.pointee.table)
        guard table < rows.count, Int(header.pointee.size) <= size, Int(header.pointee.size) >= headerSize else {
            counters.decodeErrors.add(1, ordering: .relaxed)
            return
        }
        let row = rows[table]
        let map = maps[table]
        let sink = sinks[table]
        row.reset()
        sink.wrongKind = nil
        map.fillHeader(row, header, startTimes: startTimes)
        writer.host = Unmanaged.passUnretained(sink).toOpaque()
        let result = withUnsafePointer(to: &writer) { w in
            decode(instance, data, Int(header.pointee.size), w)
        }
        switch result {
        case IS_DECODE_ROW:
            if let wrong = sink.wrongKind {
                counters.decodeErrors.add(1, ordering: .relaxed)
                counters.wrongKind.add(1, ordering: .relaxed)
                report(wrong, in: sink)
                return
            }
            enricher.fill(row, map: map, header: header)
            if row.invalid {
                counters.decodeErrors.add(1, ordering: .relaxed)
                return
            }
            if let container = enricher.holdFor {
                enricher.held.hold(row, from: self, container: container, imageColumn: map.containerImageColumn,
                                   labelsColumn: map.containerLabelsColumn, now: MonotonicClock.seconds())
                return
            }
            deliver(row)
        case IS_DECODE_SKIP:
            counters.skipped.add(1, ordering: .relaxed)
        default:
            counters.decodeErrors.add(1, ordering: .relaxed)
        }
    }

    /// Hands a finished row to the consumer (at once, or once its container is known).
    @inline(__always) func deliver(_ row: RowBuffer) {
        counters.rows.add(1, ordering: .relaxed)
        consumer.consume(row, from: self)
    }

    /// Says once per column that the decoder writes what the column cannot hold: a plugin
    /// bug its author needs to hear about, not once per record.
    private func report(_ wrong: (column: Int, value: StaticString), in sink: RowSink) {
        guard let logger, sink.reported.insert(wrong.column).inserted else { return }
        let column = sink.row.schema.columns[wrong.column]
        logger.warning("plugin \(plugin.name): its decoder writes \(wrong.value) that column \(column.name) (\(column.type)) of \(sink.row.schema.qualifiedName) cannot hold; such records are counted as decode errors")
    }
}

/// What a plugin's row writer writes into for one table: the row, checked column by
/// column against what the column can hold exactly (infrasight_plugin.h, is_row_writer).
/// Dispatcher thread only.
final class RowSink {
    let row: RowBuffer
    let accepts: [ColumnAcceptance]
    /// The first column of this record written with a value of the wrong kind, and what
    /// that value was; nil while there is none.
    var wrongKind: (column: Int, value: StaticString)?
    /// Columns whose wrong kind was already logged.
    var reported: Set<Int> = []

    init(_ row: RowBuffer) {
        self.row = row
        accepts = row.schema.columns.map { ColumnAcceptance($0.type) }
    }

    /// True (and the record marked) when `column` exists and `check` refuses the value.
    /// A column past the table is left to the row, which marks the record invalid.
    @inline(__always) func refuses(_ column: Int, _ check: (ColumnAcceptance) -> Bool, _ value: StaticString) -> Bool {
        guard column >= 0, column < accepts.count, !check(accepts[column]) else { return false }
        if wrongKind == nil { wrongKind = (column, value) }
        return true
    }
}

/// Which values a column holds exactly, from its ClickHouse type: the rules the ABI
/// header states for `is_row_writer` (a value outside them is a decode error, never
/// truncated or reinterpreted).
public struct ColumnAcceptance: Sendable, Equatable {
    public enum Base: UInt8, Sendable { case unsigned, signed, float32, float64, time, text }
    public let base: Base
    public let nullable: Bool
    /// unsigned, time: the largest value; signed: the largest value (the least is
    /// -largest - 1); time holds epoch milliseconds and its least value is `minimum`.
    let largest: UInt64
    let minimum: Int64

    public init(_ type: ColumnType) {
        nullable = type.isNullable
        var minimum: Int64 = 0
        switch type.base {
        case .uint8: base = .unsigned; largest = UInt64(UInt8.max)
        case .uint16: base = .unsigned; largest = UInt64(UInt16.max)
        case .uint32: base = .unsigned; largest = UInt64(UInt32.max)
        case .uint64: base = .unsigned; largest = UInt64.max
        case .int8: base = .signed; largest = UInt64(Int8.max)
        case .int16: base = .signed; largest = UInt64(Int16.max)
        case .int32: base = .signed; largest = UInt64(Int32.max)
        case .int64: base = .signed; largest = UInt64(Int64.max)
        case .float32: base = .float32; largest = 0
        case .float64: base = .float64; largest = 0
        case .dateTime:
            // Seconds in a UInt32; the row holds milliseconds.
            base = .time; largest = UInt64(UInt32.max) * 1000 + 999
        case .dateTime64(let precision):
            // Milliseconds scaled to `precision` digits must fit an Int64.
            var scale: Int64 = 1
            for _ in 0..<max(0, precision - 3) { scale *= 10 }
            base = .time; largest = UInt64(Int64.max / scale); minimum = Int64.min / scale
        case .string, .json, .nullable, .other: base = .text; largest = 0
        }
        self.minimum = minimum
    }

    @inline(__always) public func accepts(uint v: UInt64) -> Bool {
        switch base {
        case .unsigned, .signed, .time: v <= largest
        case .float32: Float(exactly: v) != nil
        case .float64: Double(exactly: v) != nil
        case .text: false
        }
    }

    @inline(__always) public func accepts(int v: Int64) -> Bool {
        switch base {
        case .unsigned: v >= 0 && UInt64(v) <= largest
        case .signed: v <= Int64(largest) && v >= -Int64(largest) - 1
        case .time: v >= minimum && (v < 0 || UInt64(v) <= largest)
        case .float32: Float(exactly: v) != nil
        case .float64: Double(exactly: v) != nil
        case .text: false
        }
    }

    @inline(__always) public func accepts(float v: Double) -> Bool {
        switch base {
        case .unsigned, .signed, .time:
            if let i = Int64(exactly: v) { return accepts(int: i) }
            if let u = UInt64(exactly: v) { return accepts(uint: u) }
            return false
        case .float32: return !v.isFinite || Float(v).isFinite
        case .float64: return true
        case .text: return false
        }
    }

    public var acceptsString: Bool { base == .text }
}
