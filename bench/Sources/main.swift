// infrasight-bench: InfraSight's benchmarks. Each prints one JSON object with its figures.
//   infrasight-bench all                    every benchmark below but http, one JSON object
//   infrasight-bench sweep [--rates R,R..] [--seconds S] [--no-rules]
//                                           sustained rate: agent → server → embedded ClickHouse
//                                           (the server's default ruleset on, unless --no-rules)
//   infrasight-bench rules [--rows N] [--samples N]
//                                           sink rows/s with the default ruleset on vs off, the
//                                           rules' time per row, syscall → alert latency
//   infrasight-bench decode [--records N]   decode + RowBinary encode on one core
//   infrasight-bench sink [--rows N]        rows/s through our sink into embedded ClickHouse,
//                                           beside the engine's own INSERT FROM INFILE
//   infrasight-bench http --url URL [--rows N]  URLSession inserts beside curl's, same bytes
//   infrasight-bench cluster [--rows N] [--rounds R]
//                                           rows/s into one ClickHouse node, and into a local
//                                           2 × 2 cluster through Distributed tables
//   infrasight-bench storage [--rows N] [--big-rows M]
//                                           bytes per row per table (LZ4 today vs candidate
//                                           codecs), catalog queries, the process explorer
//                                           and one disk-budget drop at M rows
//   infrasight-bench overhead [--ops N] [--rounds R] [--config FILE]
//                                           ns added per traced openat: empty BPF programs
//                                           (the floor) and `infrasight run` (all plugins, or
//                                           those the config enables)
import Foundation
import Glibc
import InfraSightBPF
import InfraSightCore
import InfraSightSDK
import InfraSightSchema
import InfraSightStorage
import Synchronization
import TracingRecord

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

/// The tracing plugin from the benchmark's own build directory.
func tracingPlugin() throws -> LoadedPlugin {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    var loader = PluginLoader(pluginDirs: [dir], pins: [:])
    return try loader.load("\(dir)/libinfrasight-tracing.so")
}

func decodeBench(records total: Int) throws -> String {
    // One thread does all the work, as the dispatcher does: the figure is per core.
    let plugin = try tracingPlugin()
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
    // Best of 3 passes: a VM's neighbours move single passes by ±15 %.
    var seconds = Double.infinity
    for _ in 0..<3 {
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        for i in 0..<total { channel.handle(buffers[i % 10], sizes[i % 10]) }
        clock_gettime(CLOCK_MONOTONIC, &end)
        seconds = min(seconds, Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9)
    }
    let rate = Double(total) / seconds
    let errors = channel.counters.decodeErrors.load(ordering: .relaxed)
    let bytes = consumer.bytes + consumer.encoder.count
    return """
        {"bench":"decode_encode","records":\(total),"seconds":\(String(format: "%.3f", seconds)),\
        "records_per_second":\(Int(rate)),"ns_per_record":\(String(format: "%.1f", 1e9 / rate)),\
        "rowbinary_bytes_per_record":\(String(format: "%.1f", Double(bytes) / Double(3 * total + 50_000))),\
        "decode_errors":\(errors),"target_records_per_second":2000000,"target_met":\(rate >= 2_000_000)}
        """
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    var a = timespec(), b = timespec()
    clock_gettime(CLOCK_MONOTONIC, &a)
    try body()
    clock_gettime(CLOCK_MONOTONIC, &b)
    return Double(b.tv_sec - a.tv_sec) + Double(b.tv_nsec - a.tv_nsec) / 1e9
}

/// Feeds `total` synthetic records through a channel into `consumer`.
func feed(_ channel: PluginChannel, total: Int) {
    let records = syntheticRecords()
    let buffers: [UnsafeMutableRawPointer] = records.map { r in
        let p = UnsafeMutableRawPointer.allocate(byteCount: r.count, alignment: 8)
        r.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: r.count) }
        return p
    }
    for i in 0..<total { channel.handle(buffers[i % 10], records[i % 10].count) }
}

func sinkBench(rows total: Int) throws -> String {
    let plugin = try tracingPlugin()
    let data = NSTemporaryDirectory() + "/infrasight-bench-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: data) }
    let store = try EmbeddedStore(dataDir: data, library: nil)
    let table = try store.prepare(plugin.tables)[0]
    _ = try store.query("TRUNCATE TABLE \(table.qualifiedName)", format: "TSV")

    // Ours: decode → encode → batch → queue → INSERT FROM INFILE, until all are stored.
    let (ours, stored) = try sinkThrough(store, plugin: plugin, table: table, rows: total)

    // The engine's own: the same rows as one RowBinary file, inserted directly.
    let whole = RowBinaryEncoder(capacity: 1 << 26)
    final class Collect: RowConsumer {
        let encoder: RowBinaryEncoder
        init(_ e: RowBinaryEncoder) { encoder = e }
        func consume(_ row: RowBuffer, from channel: PluginChannel) { encoder.encode(row) }
    }
    let collect = Collect(whole)
    let collector = PluginChannel(plugin: plugin, instance: try plugin.createInstance(options: PluginOptions()),
                                  enricher: Enricher(nodeName: "bench"), consumer: collect)
    feed(collector, total: total)
    let file = Data(whole.buffer)
    let path = "\(data)/baseline.rowbinary"
    guard FileManager.default.createFile(atPath: path, contents: file) else { fatalError("cannot write \(path)") }
    let engine = try seconds {
        try store.engine.execute("INSERT INTO \(table.qualifiedName) \(table.columnList) FROM INFILE '\(path)' SETTINGS input_format_binary_read_json_as_string = 1 FORMAT RowBinary")
    }
    let oursRate = Double(stored) / ours, engineRate = Double(total) / engine
    return """
        {"bench":"sink_embedded","rows":\(total),"rows_stored":\(stored),"ours_seconds":\(String(format: "%.3f", ours)),\
        "ours_rows_per_second":\(Int(oursRate)),"engine_seconds":\(String(format: "%.3f", engine)),\
        "engine_rows_per_second":\(Int(engineRate)),"ratio":\(String(format: "%.3f", oursRate / engineRate)),\
        "target_ratio":0.8,"target_met":\(oursRate / engineRate >= 0.8)}
        """
}

/// Feeds `total` synthetic rows through a BatchWriter (200,000-row batches) into `store`
/// and returns the seconds until all are stored and `then` has returned, and how many were.
func sinkThrough(_ store: EventStore, plugin: LoadedPlugin, table: TableSchema, rows total: Int, then: () -> Void = {}) throws -> (seconds: Double, stored: UInt64) {
    let writer = BatchWriter(store: store, maxRows: 200_000, maxDelayMs: 1000, queueMaxBytes: 1 << 30, onError: { print("sink: \($0)") })
    let channel = PluginChannel(plugin: plugin, instance: try plugin.createInstance(options: PluginOptions()),
                                enricher: Enricher(nodeName: "bench"), consumer: writer)
    writer.register(channel, storeTables: [table])
    writer.start()
    let elapsed = seconds {
        feed(channel, total: total)
        writer.finish(timeout: 600)
        then()
    }
    return (elapsed, writer.counters[plugin.name]!.stored.load(ordering: .relaxed))
}

/// Collects rows RowBinary-encoded for `table` as a store holds it (an older server's
/// mapped types), into one buffer.
final class TableEncoder: RowConsumer {
    let encoder = RowBinaryEncoder(capacity: 1 << 26)
    var encodings: UnsafeMutablePointer<RowBuffer.Encoding>
    init(_ t: TableSchema) {
        encodings = .allocate(capacity: t.columns.count)
        for (i, c) in t.columns.enumerated() { (encodings + i).initialize(to: RowBuffer.Encoding(c.type)) }
    }
    func consume(_ row: RowBuffer, from channel: PluginChannel) { encoder.encode(row, as: encodings) }
}

func httpBench(url: String, rows total: Int) throws -> String {
    let plugin = try tracingPlugin()
    let store = try HTTPStore(url: url)
    let table = try store.prepare(plugin.tables)[0]
    let collect = TableEncoder(table)
    let channel = PluginChannel(plugin: plugin, instance: try plugin.createInstance(options: PluginOptions()),
                                enricher: Enricher(nodeName: "bench"), consumer: collect)
    feed(channel, total: total)
    let bytes = Data(collect.encoder.buffer)
    let rounds = 3
    let ours = try seconds {
        for _ in 0..<rounds {
            try store.insert(Batch(table: table, bytes: bytes, rows: total, id: UUID().uuidString, plugin: "bench"))
        }
    }
    let file = NSTemporaryDirectory() + "/infrasight-bench-\(getpid()).rowbinary"
    guard FileManager.default.createFile(atPath: file, contents: bytes) else { fatalError("cannot write \(file)") }
    defer { unlink(file) }
    var components = URLComponents(string: url)!
    let user = "\(components.user ?? "default"):\(components.password ?? "")"
    components.user = nil
    components.password = nil
    components.queryItems = [URLQueryItem(name: "query", value: "INSERT INTO \(table.qualifiedName) \(table.columnList) FORMAT RowBinary")]
    let curl = try seconds {
        for _ in 0..<rounds {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            p.arguments = ["-s", "-S", "--fail", "-u", user, "--data-binary", "@\(file)", components.url!.absoluteString]
            try p.run()
            p.waitUntilExit()
        }
    }
    let mb = Double(bytes.count * rounds) / 1e6
    return """
        {"bench":"http_client","server":"\(store.versionText)","rows_per_insert":\(total),"inserts":\(rounds),\
        "mb":\(String(format: "%.1f", mb)),"urlsession_rows_per_second":\(Int(Double(total * rounds) / ours)),\
        "urlsession_mb_per_second":\(String(format: "%.1f", mb / ours)),"curl_rows_per_second":\(Int(Double(total * rounds) / curl)),\
        "curl_mb_per_second":\(String(format: "%.1f", mb / curl))}
        """
}

let args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
do {
    switch args.first {
    case "decode":
        print(try decodeBench(records: option("--records").flatMap { Int($0) } ?? 5_000_000))
    case "sink":
        print(try sinkBench(rows: option("--rows").flatMap { Int($0) } ?? 1_000_000))
    case "overhead":
        print(try overheadBench(ops: option("--ops").flatMap { Int($0) } ?? 200_000, rounds: option("--rounds").flatMap { Int($0) } ?? 5))
    case "http":
        guard let url = option("--url") else { throw StorageError("http needs --url http://user:pass@host:port/") }
        print(try httpBench(url: url, rows: option("--rows").flatMap { Int($0) } ?? 200_000))
    case "cluster":
        print(try clusterBench(rows: option("--rows").flatMap { Int($0) } ?? 200_000, rounds: option("--rounds").flatMap { Int($0) } ?? 5))
    case "console":
        print(try consoleBench(rows: option("--rows").flatMap { Int($0) } ?? 1_000_000, rounds: option("--rounds").flatMap { Int($0) } ?? 5))
    case "storage":
        print(try storageBench(rows: option("--rows").flatMap { Int($0) } ?? 10_000_000, bigRows: option("--big-rows").flatMap { Int($0) } ?? 100_000_000))
    case "screenshots":
        guard let url = option("--url"), let out = option("--out") else { throw StorageError("screenshots needs --url BASE --out DIR NAME=#/HASH...") }
        print(try consoleScreenshots(url: url, out: out, pages: args.filter { $0.contains("=#/") }))
    case "sweep":
        print(try sweepBench(rates: sweepRates(), seconds: option("--seconds").flatMap { Double($0) } ?? 5, rules: !args.contains("--no-rules")))
    case "rules":
        print(try rulesBench(rows: option("--rows").flatMap { Int($0) } ?? 1_000_000, samples: option("--samples").flatMap { Int($0) } ?? 10))
    case "all":
        // Every benchmark, one after another (they must not share the 2 cores), as one
        // JSON object.
        let parts = [
            ("machine", machineJSON()),
            ("decode_encode", try decodeBench(records: 5_000_000)),
            ("sink_embedded", try sinkBench(rows: 1_000_000)),
            ("overhead_openat", try overheadBench(ops: 200_000, rounds: 5)),
            ("console", try consoleBench(rows: 1_000_000, rounds: 5)),
            ("rules", try rulesBench(rows: 1_000_000, samples: 10)),
            ("sweep", try sweepBench(rates: sweepRates(), seconds: option("--seconds").flatMap { Double($0) } ?? 5)),
        ]
        print("{" + parts.map { "\"\($0.0)\":\($0.1.trimmingCharacters(in: .whitespacesAndNewlines))" }.joined(separator: ",\n ") + "}")
    default:
        FileHandle.standardError.write(Data("usage: infrasight-bench all | decode [--records N] | sink [--rows N] | overhead [--ops N] [--rounds R] [--config FILE] | console [--rows N] [--rounds R] | storage [--rows N] [--big-rows M] | screenshots --url BASE --out DIR NAME=#/HASH... | sweep [--rates 10000,25000,...] [--seconds S] [--no-rules] | rules [--rows N] [--samples N] | http --url URL [--rows N] | cluster [--rows N] [--rounds R]\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("infrasight-bench: \(error)\n".utf8))
    exit(1)
}
