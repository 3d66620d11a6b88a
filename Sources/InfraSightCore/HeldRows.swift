import Synchronization

/// Rows of containers whose image and labels are still being fetched, held back on the
/// dispatcher thread instead of being stored without them.
///
/// A row is held when its container is `.pending` in the `ContainerResolver` (or when
/// earlier rows of that container are still held, so a container's rows keep their
/// order) and released, oldest first, when the container is known (then with its image
/// and labels), when the resolver has no answer to wait for, or when the row has waited
/// `wait` seconds; past `maxBytes` the oldest rows go at once. Each released row goes to
/// the consumer of the channel it came from, as it would have at once. Rows released
/// without metadata (no answer in time, or memory) are counted; `release(force:)` at stop
/// lets every row go. Dispatcher thread only, except `counters`.
public final class HeldRows {
    public final class Counters: Sendable {
        /// Rows that waited for their container's metadata.
        public let held = Atomic<UInt64>(0)
        /// Of those, rows stored with it.
        public let releasedWithMetadata = Atomic<UInt64>(0)
        /// Of those, rows stored without it: the bound passed, the runtime did not know or
        /// answer, or memory ran short.
        public let releasedWithout = Atomic<UInt64>(0)
        /// Rows waiting now, and their bytes.
        public let waiting = Atomic<Int>(0)
        public let waitingBytes = Atomic<Int>(0)
        public init() {}
    }

    struct Held {
        let container: [UInt8]
        let deadline: Double
        let row: RowBuffer
        let channel: PluginChannel
        let imageColumn: Int?
        let labelsColumn: Int?
    }

    public let wait: Double
    public let maxBytes: Int
    public let counters = Counters()
    private var rows: [Held] = []
    private var head = 0
    private var bytes = 0
    private var perContainer: [[UInt8]: Int] = [:]
    private var nextCheck = 0.0

    public init(wait: Double, maxBytes: Int = 16 << 20) {
        self.wait = wait
        self.maxBytes = maxBytes
    }

    public var isEmpty: Bool { head == rows.count }

    /// True when rows of `container` are waiting.
    @inline(__always) public func holds(_ container: [UInt8]) -> Bool {
        !isEmpty && perContainer[container] != nil
    }

    /// Keeps a copy of `row` (the channel's own buffer is reused) until `container` is known.
    public func hold(_ row: RowBuffer, from channel: PluginChannel, container: [UInt8], imageColumn: Int?, labelsColumn: Int?, now: Double) {
        let copy = row.copy()
        rows.append(Held(container: container, deadline: now + wait, row: copy, channel: channel, imageColumn: imageColumn, labelsColumn: labelsColumn))
        perContainer[container, default: 0] += 1
        bytes += copy.heldBytes
        counters.held.add(1, ordering: .relaxed)
        publish()
        while bytes > maxBytes && !isEmpty { releaseHead(with: nil) }
    }

    /// Lets go of the rows that may go: their container known or without an answer to
    /// wait for, or their time up. Cheap when nothing is held; looks at most every 10 ms.
    public func release(_ resolver: ContainerResolver, now: Double, force: Bool = false) {
        guard !isEmpty, force || now >= nextCheck else { return }
        nextCheck = now + 0.01
        var settled: [[UInt8]: ContainerResolver.Lookup] = [:]
        var kept: [Held] = []
        for i in head..<rows.count {
            let h = rows[i]
            let state = settled[h.container] ?? resolver.peek(h.container)
            settled[h.container] = state
            switch state {
            case .found(let m): emit(h, with: m)
            case .pending where !force && now < h.deadline: kept.append(h)
            case .pending(let provisional): emit(h, with: provisional)
            case .none: emit(h, with: nil)
            }
        }
        rows = kept
        head = 0
        publish()
    }

    private func releaseHead(with metadata: ContainerResolver.Metadata?) {
        let h = rows[head]
        head += 1
        emit(h, with: metadata)
        if head > 1024 && head * 2 > rows.count {
            rows.removeFirst(head)
            head = 0
        }
        publish()
    }

    private func emit(_ h: Held, with metadata: ContainerResolver.Metadata?) {
        bytes -= h.row.heldBytes
        if let n = perContainer[h.container], n > 1 { perContainer[h.container] = n - 1 } else { perContainer[h.container] = nil }
        var row = h.row
        if let metadata {
            row = h.row.copy(extraArena: metadata.image.count + metadata.labels.count * 3)
            if let c = h.imageColumn { metadata.image.withUnsafeBytes { row.setString(c, $0.baseAddress, $0.count) } }
            if let c = h.labelsColumn { metadata.labels.withUnsafeBytes { row.setString(c, $0.baseAddress, $0.count) } }
            counters.releasedWithMetadata.add(1, ordering: .relaxed)
        } else {
            counters.releasedWithout.add(1, ordering: .relaxed)
        }
        h.channel.deliver(row)
    }

    private func publish() {
        counters.waiting.store(rows.count - head, ordering: .relaxed)
        counters.waitingBytes.store(bytes, ordering: .relaxed)
    }
}
