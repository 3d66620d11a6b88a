/// One plugin's line in the summary `trace`, `run` and `agent` print on stderr at exit:
/// `PLUGIN: received N, kernel drops N, ...` — every event in exactly one of the counts
/// after `received`. Scripts, the tests and the benchmarks read it back with `parse`.
public struct SummaryLine {
    public var plugin: String
    public var counts: [(label: String, value: UInt64)]

    public init(plugin: String, counts: [(label: String, value: UInt64)]) {
        self.plugin = plugin
        self.counts = counts
    }

    /// `probe`'s line: what its kernel side and decoder counted (received, kernel drops,
    /// decode errors), then `stages`, the counts of the command's own later stages.
    public init(probe: ActiveProbe, then stages: [(label: String, value: UInt64)]) {
        let c = probe.channel.counters
        self.init(plugin: probe.name, counts: [
            ("received", c.received.load(ordering: .relaxed)), ("kernel drops", probe.kernelDrops()),
            ("decode errors", c.decodeErrors.load(ordering: .relaxed)),
        ] + stages)
    }

    /// The rows that waited for their container's metadata, if any did: `containers: rows
    /// held N, with metadata N, without N`.
    public static func containers(_ runtime: ProbeRuntime) -> SummaryLine? {
        let c = runtime.enricher.held.counters
        let held = c.held.load(ordering: .relaxed)
        guard held > 0 else { return nil }
        return SummaryLine(plugin: "containers", counts: [
            ("rows held", held), ("with metadata", c.releasedWithMetadata.load(ordering: .relaxed)),
            ("without", c.releasedWithout.load(ordering: .relaxed)),
        ])
    }

    /// The line as printed (after the `infrasight: ` prefix every stderr line carries).
    public var text: String {
        "\(plugin): " + counts.map { "\($0.label) \($0.value)" }.joined(separator: ", ")
    }

    /// The counts of `plugin`'s summary line in a process's stderr, by label; nil when
    /// the line is absent.
    public static func parse(_ stderr: String, plugin: String) -> [String: Int]? {
        let prefix = "infrasight: \(plugin): "
        guard let line = stderr.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        var out: [String: Int] = [:]
        for part in line.dropFirst(prefix.count).split(separator: ",") {
            let words = part.split(separator: " ")
            guard let n = words.last.flatMap({ Int($0) }) else { continue }
            out[words.dropLast().joined(separator: " ")] = n
        }
        return out
    }
}
