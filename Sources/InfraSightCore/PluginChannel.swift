import CInfraSightABI
import CInfraSightEvent
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
    /// Records that produced no row by the plugin's choice.
    public let skipped = Atomic<UInt64>(0)
    /// Rows handed on to the consumer.
    public let rows = Atomic<UInt64>(0)
    public init() {}
}

/// One running plugin on the dispatcher: its instance, its reusable row buffers, and the
/// decode path from ring-buffer record to finished row (no allocation per record).
public final class PluginChannel {
    public let plugin: LoadedPlugin
    let instance: OpaquePointer
    public let rows: [RowBuffer]
    let maps: [HostColumnMap]
    let enricher: Enricher
    public let counters = PluginCounters()
    unowned let consumer: RowConsumer
    private var writer: is_row_writer
    private let decode: @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int, UnsafePointer<is_row_writer>?) -> Int32

    public init(plugin: LoadedPlugin, instance: OpaquePointer, enricher: Enricher, consumer: RowConsumer) {
        self.plugin = plugin
        self.instance = instance
        self.enricher = enricher
        self.consumer = consumer
        decode = plugin.descriptor.pointee.decode! // the loader refused descriptors without one
        rows = plugin.tables.enumerated().map { RowBuffer(schema: $1, tableIndex: $0) }
        maps = plugin.tables.map(HostColumnMap.init)
        writer = is_row_writer(
            host: nil,
            put_uint: { host, column, value in
                Unmanaged<RowBuffer>.fromOpaque(host!).takeUnretainedValue().setUInt(Int(column), value)
            },
            put_int: { host, column, value in
                Unmanaged<RowBuffer>.fromOpaque(host!).takeUnretainedValue().setInt(Int(column), value)
            },
            put_float: { host, column, value in
                Unmanaged<RowBuffer>.fromOpaque(host!).takeUnretainedValue().setFloat(Int(column), value)
            },
            put_string: { host, column, bytes, length in
                Unmanaged<RowBuffer>.fromOpaque(host!).takeUnretainedValue().setString(Int(column), UnsafeRawPointer(bytes), length)
            },
            put_null: { host, column in
                Unmanaged<RowBuffer>.fromOpaque(host!).takeUnretainedValue().setNull(Int(column))
            })
    }

    /// Decodes one record into a row and hands it to the consumer. Malformed records (too
    /// short, a size field that disagrees, an unknown table, a decoder refusal) are
    /// counted as decode errors and never reach the consumer.
    /// Called by the dispatcher for every ring-buffer record; public for benchmarks and
    /// tests that feed records without a kernel.
    @inline(__always)
    public func handle(_ data: UnsafeRawPointer, _ size: Int) {
        counters.received.add(1, ordering: .relaxed)
        guard size >= MemoryLayout<is_event_header>.size else {
            counters.decodeErrors.add(1, ordering: .relaxed)
            return
        }
        let header = data.assumingMemoryBound(to: is_event_header.self)
        let table = Int(header.pointee.table)
        guard table < rows.count, Int(header.pointee.size) <= size else {
            counters.decodeErrors.add(1, ordering: .relaxed)
            return
        }
        let row = rows[table]
        let map = maps[table]
        row.reset()
        map.fillHeader(row, header)
        writer.host = Unmanaged.passUnretained(row).toOpaque()
        let result = withUnsafePointer(to: &writer) { w in
            decode(instance, data, Int(header.pointee.size), w)
        }
        switch result {
        case IS_DECODE_ROW:
            enricher.fill(row, map: map, header: header)
            if row.invalid {
                counters.decodeErrors.add(1, ordering: .relaxed)
                return
            }
            counters.rows.add(1, ordering: .relaxed)
            consumer.consume(row, from: self)
        case IS_DECODE_SKIP:
            counters.skipped.add(1, ordering: .relaxed)
        default:
            counters.decodeErrors.add(1, ordering: .relaxed)
        }
    }
}
