// infrasight-bench: InfraSight's benchmarks. Each prints one JSON object with its figures.
//   infrasight-bench decode [--records N]   decode + RowBinary encode on one core
import CInfraSightEvent
import Foundation
import Glibc
import InfraSightCore
import Synchronization

/// Counts rows and RowBinary-encodes them like the storage path, resetting the buffer as
/// a sink would after handing off a batch.
final class EncodingConsumer: RowConsumer {
    var encoder = RowBinaryEncoder(capacity: 4 << 20)
    var bytes = 0
    func consume(_ row: RowBuffer, from channel: PluginChannel) {
        encoder.encode(row)
        if encoder.count > (1 << 20) {
            bytes += encoder.count
            encoder.clear()
        }
    }
}

func syntheticRecords() -> [[UInt8]] {
    var records: [[UInt8]] = []
    let argvOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.argv)!
    for i in 0..<10 {
        var e = is_tracing_event()
        let exec = i == 0
        e.hdr.table = 0
        e.hdr.kind = UInt16(exec ? IS_TRACING_EXECVE.rawValue : IS_TRACING_OPENAT.rawValue)
        e.hdr.size = UInt32(exec ? MemoryLayout<is_tracing_event>.size : argvOffset)
        e.hdr.pid = 4242; e.hdr.tid = 4242; e.hdr.ppid = 1; e.hdr.uid = 1000; e.hdr.gid = 1000
        e.hdr.ns_pid = 4242; e.hdr.ns_ppid = 1; e.hdr.cgroup_id = 1234
        e.hdr.ts_enter_ns = 1_000_000_000 + UInt64(i)
        e.hdr.ts_exit_ns = e.hdr.ts_enter_ns + 5_000
        e.hdr.return_code = exec ? 0 : 3
        withUnsafeMutableBytes(of: &e.hdr.comm) { b in for (j, c) in "bench-worker".utf8.enumerated() { b[j] = c } }
        let path = exec ? "/usr/bin/python3" : "/usr/lib/x86_64-linux-gnu/libc.so.\(i)"
        withUnsafeMutableBytes(of: &e.filename) { b in for (j, c) in path.utf8.enumerated() { b[j] = c } }
        e.filename_len = UInt32(path.utf8.count)
        e.flags = 0o2000000
        e.fd = -100
        if exec {
            let argv = "python3\0-m\0http.server\08080\0"
            withUnsafeMutableBytes(of: &e.argv) { b in for (j, c) in argv.utf8.enumerated() { b[j] = c } }
            e.argv_len = UInt32(argv.utf8.count)
            e.argc = 4
        }
        let size = Int(e.hdr.size)
        let bytes = withUnsafeBytes(of: &e) { Array($0.prefix(size)) }
        records.append(bytes)
    }
    return records
}

func decodeBench(records total: Int) throws {
    // One thread does all the work, as the dispatcher does: the figure is per core.
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    var loader = PluginLoader(pluginDirs: [dir], pins: [:])
    let plugin = try loader.load("\(dir)/libinfrasight-tracing.so")
    let instance = try plugin.createInstance(options: PluginOptions())
    let consumer = EncodingConsumer()
    let channel = PluginChannel(plugin: plugin, instance: instance, enricher: Enricher(nodeName: "bench"), consumer: consumer)
    let records = syntheticRecords()
    // Aligned copies, as the ring buffer hands them out.
    let buffers: [UnsafeMutableRawPointer] = records.map { r in
        let p = UnsafeMutableRawPointer.allocate(byteCount: r.count, alignment: 8)
        r.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: r.count) }
        return p
    }
    let sizes = records.map(\.count)
    for i in 0..<50_000 { channel.handle(buffers[i % 10], sizes[i % 10]) } // warm up
    var start = timespec(), end = timespec()
    clock_gettime(CLOCK_MONOTONIC, &start)
    for i in 0..<total { channel.handle(buffers[i % 10], sizes[i % 10]) }
    clock_gettime(CLOCK_MONOTONIC, &end)
    let seconds = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    let rate = Double(total) / seconds
    let errors = channel.counters.decodeErrors.load(ordering: .relaxed)
    let bytes = consumer.bytes + consumer.encoder.count
    print("""
        {"bench":"decode_encode","records":\(total),"seconds":\(String(format: "%.3f", seconds)),\
        "records_per_second":\(Int(rate)),"ns_per_record":\(String(format: "%.1f", 1e9 / rate)),\
        "rowbinary_bytes_per_record":\(String(format: "%.1f", Double(bytes) / Double(total + 50_000))),\
        "decode_errors":\(errors),"target_records_per_second":2000000,"target_met":\(rate >= 2_000_000)}
        """)
}

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "decode":
    var n = 5_000_000
    if let i = args.firstIndex(of: "--records"), i + 1 < args.count, let v = Int(args[i + 1]) { n = v }
    do {
        try decodeBench(records: n)
    } catch {
        FileHandle.standardError.write(Data("infrasight-bench: \(error)\n".utf8))
        exit(1)
    }
default:
    FileHandle.standardError.write(Data("usage: infrasight-bench decode [--records N]\n".utf8))
    exit(2)
}
