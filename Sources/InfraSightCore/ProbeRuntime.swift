import CInfraSightABI
import CInfraSightEvent
import Foundation
import Glibc
import InfraSightBPF
import Logging
import Synchronization

/// A plugin whose BPF programs are loaded and attached, with its channel.
public final class ActiveProbe: Sendable {
    public let channel: PluginChannel
    let object: BPFObject?
    private let drops: PerCPUCounters?

    init(channel: PluginChannel, object: BPFObject?) {
        self.channel = channel
        self.object = object
        drops = object?.mapDescriptor("is_drops").map { PerCPUCounters(fd: $0) }
    }

    public var name: String { channel.plugin.name }

    /// Events the kernel side could not deliver (ring buffer full, map full), summed over CPUs.
    public func kernelDrops() -> UInt64 {
        guard let drops else { return 0 }
        var total: UInt64 = 0
        for reason in 0..<UInt32(IS_DROP_REASONS.rawValue) {
            total &+= drops.sum(reason) ?? 0
        }
        return total
    }

    /// Sends what the plugin's BPF side still holds back (its `is_held*` maps) through its
    /// channel, as ring-buffer records would be: at stop, so stopping loses none of them.
    func drainHeldRecords() {
        guard let object else { return }
        for map in object.heldRecordMaps {
            _ = BPFObject.drainHashMap(fd: map.fd, keySize: map.keySize, valueSize: map.valueSize) { value in
                channel.handle(value.baseAddress!, value.count)
            }
        }
    }

    /// Each loaded BPF program's run time and run count, which the kernel counts only
    /// while run-time statistics are on (`sysctl kernel.bpf_stats_enabled=1`).
    public func programStats() -> [ProgramStats.Sample] { object?.programStats ?? [] }
}

/// Starts the enabled plugins on the kernel and runs the shared dispatcher: one thread,
/// one libbpf ring-buffer manager over every plugin's ring buffers, each record routed to
/// its plugin's channel.
///
/// Unchecked Sendable: the libbpf ring-buffer manager and the channels it feeds are used
/// by the dispatcher thread alone (`run`); other threads call `stop` and read what is
/// immutable (`probes`, `failures`) or atomic (the counters).
public final class ProbeRuntime: @unchecked Sendable {
    public let probes: [ActiveProbe]
    /// Plugins that could not start, with the one-line reason.
    public let failures: [PluginFailure]
    private let poller = RingBufferPoller()
    private var contexts: [Unmanaged<PluginChannel>] = []
    public let stopRequested = Atomic<Bool>(false)
    /// The enricher every plugin's rows go through (its cache counters feed metrics).
    public let enricher: Enricher

    /// Loads and attaches every plugin. A plugin that fails is logged, reported in
    /// `failures` and the others still run; throws when a plugin of `config.requiredPlugins`
    /// fails, when none can start, or on a host-wide problem (no BTF, no tracefs).
    public init(plugins: [LoadedPlugin], config: InfraSightConfig, enricher: Enricher, consumer: RowConsumer, logger: Logger) throws {
        self.enricher = enricher
        if try Tracefs.ensureMounted() {
            logger.notice("mounted tracefs at \(Tracefs.path) (it was not mounted)")
        }
        var probes: [ActiveProbe] = []
        var failures: [PluginFailure] = []
        for plugin in plugins {
            do {
                let options = try PluginOptions.resolve(config: config, plugin: plugin)
                let probe = try Self.start(plugin, options: options, enricher: enricher, consumer: consumer, logger: logger)
                probes.append(probe)
            } catch let error as BPFError {
                if case .noBTF = error { throw error }
                failures.append(PluginFailure(plugin: plugin.name, error: error))
            } catch {
                failures.append(PluginFailure(plugin: plugin.name, reason: "\(error)", kind: .other))
            }
        }
        self.probes = probes
        self.failures = failures
        let required = failures.first { config.requiredPlugins.contains($0.plugin) }
        // The error that ends start-up is one line; every other failure gets its own.
        if probes.isEmpty && failures.count == 1 && required == nil {
            throw RuntimeError("plugin \(failures[0].plugin): \(failures[0].reason)")
        }
        for f in failures where f.plugin != required?.plugin { logger.error("plugin \(f.plugin): \(f.reason)") }
        if let required {
            throw RuntimeError("required plugin \(required.plugin) (plugins.required) did not start: \(required.reason)")
        }
        if probes.isEmpty {
            throw RuntimeError(failures.isEmpty ? "no plugin to run" : "none of the \(failures.count) plugins could start (reasons above)")
        }
        for probe in probes {
            guard let object = probe.object else { continue }
            let context = Unmanaged.passRetained(probe.channel)
            contexts.append(context)
            for ring in object.ringBufferMaps {
                try poller.add(fd: ring.fd, context: context.toOpaque()) { ctx, data, size in
                    guard let ctx, let data else { return 0 }
                    Unmanaged<PluginChannel>.fromOpaque(ctx).takeUnretainedValue().handle(data, size)
                    return 0
                }
            }
        }
    }

    deinit {
        for c in contexts { c.release() }
    }

    static func start(_ plugin: LoadedPlugin, options: PluginOptions, enricher: Enricher, consumer: RowConsumer, logger: Logger) throws -> ActiveProbe {
        let instance = try plugin.createInstance(options: options, logger: logger)
        let channel = PluginChannel(plugin: plugin, instance: instance, enricher: enricher, consumer: consumer, logger: logger)
        guard let object = try load(plugin, instance: instance, options: options, logger: logger) else {
            return ActiveProbe(channel: channel, object: nil)
        }
        try object.attachAll()
        return ActiveProbe(channel: channel, object: object)
    }

    /// Opens, configures and loads `plugin`'s BPF object (features probed first, then the
    /// verifier), without attaching it; nil when the plugin has none. Each tracepoint this
    /// kernel lacks is a warning. `prepared` sees the object just before its load.
    /// `infrasight doctor` runs exactly this.
    public static func load(_ plugin: LoadedPlugin, instance: OpaquePointer, options: PluginOptions, logger: Logger,
                            prepared: (BPFObject) -> Void = { _ in }) throws -> BPFObject? {
        let d = plugin.descriptor
        let bytes = plugin.bpfObject
        guard bytes.count > 0 else { return nil }

        let object = try BPFObject(bytes: bytes, name: plugin.name)
        if let size = options.ringBufferBytes { try object.setRingBufferSizes(size) }
        try HostFilterWriter.apply(options.filters, to: object)
        try HostFilterWriter.applyWakeupThreshold(to: object)
        if let configure = d.configure_bpf {
            final class Box { let object: BPFObject; init(_ o: BPFObject) { object = o } }
            let box = Unmanaged.passRetained(Box(object))
            defer { box.release() }
            var configurator = is_bpf_configurator(host: box.toOpaque()) { host, name, value, size in
                guard let host, let name, let value else { return -EINVAL }
                let object = Unmanaged<Box>.fromOpaque(host).takeUnretainedValue().object
                return object.setReadOnly(String(cString: name), bytes: UnsafeRawBufferPointer(start: value, count: size))
            }
            if configure(instance, &configurator) != 0 {
                throw RuntimeError("BPF configuration failed: \(d.last_error!(instance).map { String(cString: $0) } ?? "unknown error")")
            }
        }
        object.skipMissingTracepoints()
        for s in object.skipped {
            logger.warning("plugin \(plugin.name): \(SkippedTracepoint.explain(s.target)) (\(s.program) is not attached)")
        }
        prepared(object)
        try object.load()
        return object
    }

    /// Runs the dispatcher on the calling thread until `stop()` or the deadline, then
    /// drains what the rings and the plugins' held-record maps still hold. `tick` runs about every `pollMs`.
    public func run(until deadline: Date?, pollMs: Int32 = 100, tick: () -> Void = {}) {
        enricher.containers.startWatching()
        while !stopRequested.load(ordering: .relaxed) {
            if let deadline, Date() >= deadline { break }
            let rc = poller.poll(timeoutMs: pollMs)
            if rc < 0, rc != -EINTR { break }
            enricher.held.release(enricher.containers, now: MonotonicClock.seconds())
            tick()
        }
        poller.consume()
        for probe in probes { probe.drainHeldRecords() }
        // Rows still waiting for their container go now, with what is known of it.
        enricher.held.release(enricher.containers, now: MonotonicClock.seconds(), force: true)
        enricher.containers.stopWatching()
        // The last decode is behind us: the plugins end their own background work.
        for probe in probes { probe.channel.plugin.descriptor.stop?(probe.channel.instance) }
    }

    /// Asks `run` to return; safe from any thread.
    public func stop() { stopRequested.store(true, ordering: .relaxed) }
}

/// Sets the host's filter variables (infrasight_common.bpf.h) in an object's read-only data.
enum HostFilterWriter {
    /// Sets `is_wakeup_bytes` to a quarter of the object's smallest ring: the reader is
    /// woken with three quarters of the ring still free, and no more often than that
    /// (each wake-up is an interrupt). Objects built without the common header are left
    /// alone.
    static func applyWakeupThreshold(to object: BPFObject) throws {
        guard let smallest = object.ringBufferSizes.min(), smallest > 0 else { return }
        try set("is_wakeup_bytes", UInt64(smallest / 4), in: object, kind: "setting", required: false)
    }

    /// Sets the `const volatile` variable `name` of the common header to `value`; an
    /// object without it is fine unless `required`.
    static func set<T>(_ name: String, _ value: T, in object: BPFObject, kind: String, required: Bool) throws {
        var v = value
        let rc = withUnsafeBytes(of: &v) { object.setReadOnly(name, bytes: $0) }
        if rc == -ENOENT && !required { return }
        if rc != 0 { throw RuntimeError("its BPF object cannot take \(kind) \(name) (\(rc == -ENOENT ? "no such variable" : "size mismatch"))") }
    }

    static func apply(_ filters: HostFilters, to object: BPFObject) throws {
        func set<T>(_ name: String, _ value: T, required: Bool) throws {
            try HostFilterWriter.set(name, value, in: object, kind: "filter", required: required)
        }
        func setList(_ base: String, _ values: [UInt32]) throws {
            guard !values.isEmpty else { return }
            var array = [UInt32](repeating: 0, count: HostFilters.maxEntries)
            for (i, v) in values.enumerated() { array[i] = v }
            try array.withUnsafeBytes { bytes in
                let rc = object.setReadOnly("is_\(base)s", bytes: bytes)
                if rc != 0 { throw RuntimeError("its BPF object does not support the \(base)s filter") }
            }
            try set("is_\(base)_count", UInt32(values.count), required: true)
        }
        func setComms(_ base: String, _ values: [String]) throws {
            guard !values.isEmpty else { return }
            var array = [UInt8](repeating: 0, count: HostFilters.maxEntries * HostFilters.commLength)
            for (i, v) in values.enumerated() {
                for (j, b) in v.utf8.prefix(HostFilters.commLength - 1).enumerated() { array[i * HostFilters.commLength + j] = b }
            }
            try array.withUnsafeBytes { bytes in
                let rc = object.setReadOnly("is_\(base)s", bytes: bytes)
                if rc != 0 { throw RuntimeError("its BPF object does not support the \(base)s filter") }
            }
            try set("is_\(base)_count", UInt32(values.count), required: true)
        }
        if filters.excludeSelf { try set("is_self_pid", UInt32(getpid()), required: false) }
        try setList("include_pid", filters.includePids)
        try setList("exclude_pid", filters.excludePids)
        try setList("include_uid", filters.includeUids)
        try setList("exclude_uid", filters.excludeUids)
        try setComms("include_comm", filters.includeComms)
        try setComms("exclude_comm", filters.excludeComms)
    }
}

/// A plugin that could not start: why, in one line, and what kind of reason (a metric label).
public struct PluginFailure: Sendable {
    public enum Kind: String, Sendable {
        /// The kernel lacks a feature the plugin needs (named in `reason`).
        case kernelFeature = "kernel_feature"
        /// The verifier refused a program (its last lines in `reason`).
        case verifier
        case permission
        case other
    }

    public let plugin: String
    public let reason: String
    public let kind: Kind

    /// `reason` is kept as one line of at most 1,024 characters (`oneLogLine`): it may
    /// quote a plugin's own error text, and it is written to logs and /readyz.
    public init(plugin: String, reason: String, kind: Kind) {
        self.plugin = plugin
        self.reason = oneLogLine(reason, limit: 1024)
        self.kind = kind
    }

    public init(plugin: String, error: BPFError) {
        let kind: Kind
        switch error {
        case .kernelLacks: kind = .kernelFeature
        case .verifierRejected: kind = .verifier
        case .notPermitted: kind = .permission
        default: kind = .other
        }
        self.init(plugin: plugin, reason: error.description, kind: kind)
    }
}

public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
