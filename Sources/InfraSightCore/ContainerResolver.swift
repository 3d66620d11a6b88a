import Foundation
import Synchronization
import Glibc

/// A container runtime's API that can name a container's image and labels.
public protocol ContainerMetadataSource: AnyObject, Sendable {
    /// The runtime and its socket, for messages (`docker at /var/run/docker.sock`).
    var description: String { get }
    /// Asks for container `id` (64 hex digits), waiting at most `timeout` seconds.
    func inspect(_ id: String, timeout: Double) -> ContainerResolver.Answer
    /// Follows the runtime's container events until `stop` says so, telling `resolver`
    /// of each container as it is created (before its first process runs) and of every
    /// container that exists whenever it (re)connects; reconnects when the stream drops.
    /// Runs on a thread of its own.
    func watch(_ resolver: ContainerResolver, stop: SignalFlag)
}

/// A flag set once, from any thread, and polled (a background thread's "stop").
public final class SignalFlag: Sendable {
    private let value = Atomic<Bool>(false)
    /// Entered once at init and left at `set`: waiting on it wakes every sleeper at once.
    private let unset = DispatchGroup()
    public init() { unset.enter() }
    // libdispatch refuses to free a group still entered.
    deinit { if !isSet { unset.leave() } }
    public var isSet: Bool { value.load(ordering: .relaxed) }
    public func set() {
        if !value.exchange(true, ordering: .relaxed) { unset.leave() }
    }

    /// Sleeps up to `seconds`, returning early (false) once the flag is set.
    public func sleep(_ seconds: Double) -> Bool {
        unset.wait(timeout: .now() + max(0, seconds)) == .timedOut
    }
}

/// Container image and labels from the container runtimes: the Docker Engine API over its
/// unix socket (podman serves the same API on its own), and any other source given
/// (containerd's, on Kubernetes nodes).
///
/// Two ways in, neither on the dispatcher thread:
/// - each source's event stream (`watch`), which names a container when it is created,
///   before its first process runs, and re-lists every container when it reconnects;
/// - lookups (`inspect`, sources asked in turn) on a lookup thread, for a container the
///   streams have not named (one that existed before start-up and was not listed, a
///   runtime without events).
///
/// `lookup` never blocks: a container not known yet is `.pending` while its lookup runs,
/// and the dispatcher holds that container's rows back (`HeldRows`) until it is known or
/// `wait` passes. Answers are cached for `positiveTTL` (then refreshed in the background
/// while the old answer is served); a container no runtime knows for `negativeTTL`, one
/// whose runtimes could not be asked for `retryAfter`. The cache holds at most
/// `capacity` containers; destroyed containers leave it.
public final class ContainerResolver: Sendable {
    public struct Metadata: Sendable, Equatable {
        public let image: [UInt8]
        /// The labels as a JSON object with sorted keys, `{}` when none.
        public let labels: [UInt8]
        public static let empty = Metadata(image: [], labels: Array("{}".utf8))

        public init(image: [UInt8], labels: [UInt8]) {
            self.image = image
            self.labels = labels
        }

        /// From an image reference and labels (encoded with sorted keys).
        public init(image: String, labels: [String: String]) {
            let encoded = (try? JSONSerialization.data(withJSONObject: labels, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            self.init(image: Array(image.utf8), labels: Array(encoded))
        }
    }

    /// What one source says of a container.
    public enum Answer: Sendable { case found(Metadata), unknown, unavailable }

    /// What the dispatcher gets: the metadata, "being fetched" (with what an event said of
    /// it meanwhile, to use if the fetch does not come back in time), or "none to be had"
    /// (no runtime knows it, or none could be asked).
    public enum Lookup: Equatable { case found(Metadata), pending(Metadata?), none }

    enum Entry {
        case found(Metadata, expires: Double, refreshing: Bool, rank: Int)
        case pending(provisional: Metadata?, rank: Int)
        case absent(expires: Double)
        /// Destroyed, kept for rows still on their way (until `until`).
        case gone(Metadata, until: Double)
    }

    /// Keyed by the id's bytes, as the cgroup resolver has them: a lookup hashes them and
    /// allocates nothing (it runs on the dispatcher whenever consecutive rows change cgroup).
    struct State {
        var cache: [[UInt8]: Entry] = [:]
        var queue: [[UInt8]] = []
        var lookupThreads = 0
    }

    /// The runtimes, in the order they are asked.
    public let sources: [any ContainerMetadataSource]
    /// How long rows of a container being looked up may wait for it (0: not at all); also
    /// each lookup's timeout per source.
    public let wait: Double
    let positiveTTL = 300.0
    let negativeTTL = 5.0
    let retryAfter = 0.5
    let queueCapacity = 1024
    /// Lookups run side by side (dockerd answers an inspect of a starting container only
    /// once it has started: one slow answer must not delay the next container's).
    let maxLookupThreads = 4
    public let capacity: Int
    /// How long a destroyed container's metadata stays for its last rows.
    public let destroyedGrace: Double
    private let state = Mutex(State())
    private let stop = SignalFlag()
    private let watchStarted = Atomic<Bool>(false)
    private let following = Mutex(Set<ObjectIdentifier>())
    /// One signal per queued lookup, and one at stop (each lookup thread that sees the
    /// stop passes it on to the next).
    private let wake = DispatchSemaphore(value: 0)
    /// Resolver cache hits and misses (each miss is one round of runtime API requests).
    public let counters = CacheCounters()
    /// Containers named by a runtime's event stream or listing (not by a lookup).
    public let announced = Atomic<UInt64>(0)
    public var lookups: Int { Int(counters.misses.load(ordering: .relaxed)) }

    /// `sources`: the runtimes to follow and ask (see `standardSources`).
    public init(sources: [any ContainerMetadataSource], wait: Double = 2, capacity: Int = 4096, destroyedGrace: Double = 30) {
        self.sources = sources
        self.wait = wait
        self.capacity = capacity
        self.destroyedGrace = destroyedGrace
    }

    /// Starts following every source's events (a thread each), once; later calls do
    /// nothing. Without it, containers are known by lookups only.
    public func startWatching() {
        guard !watchStarted.exchange(true, ordering: .relaxed) else { return }
        for source in sources {
            let thread = Thread { [stop] in source.watch(self, stop: stop) }
            thread.name = "infrasight-container-events"
            thread.start()
        }
    }

    /// `source` is subscribed to its runtime's events and has listed what exists: every
    /// container created from now on is named as it is created. Sources say so on each
    /// (re)connection.
    public func following(_ source: any ContainerMetadataSource) {
        following.withLock { _ = $0.insert(ObjectIdentifier(source)) }
    }

    /// Starts watching and waits up to `timeout` seconds for every source to follow its
    /// events, so a container created and gone right after start-up (a one-shot `ctr run
    /// --rm`) is still named. Returns the sources that do not follow yet (their
    /// containers are looked up at their first row until they do).
    public func startWatching(readyWithin timeout: Double) -> [any ContainerMetadataSource] {
        startWatching()
        let end = MonotonicClock.seconds() + timeout
        while true {
            let missing = following.withLock { f in sources.filter { !f.contains(ObjectIdentifier($0)) } }
            if missing.isEmpty || MonotonicClock.seconds() >= end { return missing }
            usleep(20_000)
        }
    }

    /// Ends the event and lookup threads (each within ~0.1 s, or its current request).
    public func stopWatching() {
        stop.set()
        wake.signal()
    }

    /// The container's metadata, or `.pending` after starting its lookup. Never blocks.
    public func lookup(_ key: [UInt8]) -> Lookup {
        guard !key.isEmpty, !sources.isEmpty else { return .none }
        let now = MonotonicClock.seconds()
        var enqueue = false
        let answer: Lookup = state.withLock { s in
            switch s.cache[key] {
            case .found(let m, let expires, let refreshing, let rank):
                counters.hits.add(1, ordering: .relaxed)
                if expires <= now && !refreshing && s.queue.count < queueCapacity {
                    // Served while a fresh answer is fetched.
                    s.cache[key] = .found(m, expires: expires, refreshing: true, rank: rank)
                    s.queue.append(key)
                    enqueue = true
                }
                return .found(m)
            case .pending(let provisional, _):
                return .pending(provisional)
            case .absent(let expires) where expires > now:
                counters.hits.add(1, ordering: .relaxed)
                return .none
            case .gone(let m, let until) where until > now:
                counters.hits.add(1, ordering: .relaxed)
                return .found(m)
            default:
                counters.misses.add(1, ordering: .relaxed)
                guard s.queue.count < queueCapacity else { return .none }
                makeRoom(&s, now: now)
                s.cache[key] = .pending(provisional: nil, rank: sources.count)
                s.queue.append(key)
                enqueue = true
                return .pending(nil)
            }
        }
        if enqueue { startLookups() }
        return answer
    }

    /// What is known of `id` now, without starting anything (for rows held back).
    public func peek(_ id: [UInt8]) -> Lookup {
        state.withLock { s in
            switch s.cache[id] {
            case .found(let m, _, _, _): return .found(m)
            case .gone(let m, let until) where until > MonotonicClock.seconds(): return .found(m)
            case .pending(let provisional, _): return .pending(provisional)
            default: return .none
            }
        }
    }

    /// `source` names a container (an event or a listing): known from now on, unless a
    /// source asked before it already named it (dockerd runs its containers on a
    /// containerd, whose record of them lacks the image and labels). `exact: false`: what
    /// the source said may be inexact (Docker's create event mixes other attributes into
    /// the labels): the container is looked up, its rows wait for the answer, and
    /// `metadata` is used only if no answer comes in time.
    public func announce(_ name: String, _ metadata: Metadata, from source: any ContainerMetadataSource, exact: Bool = true) {
        let id = Array(name.utf8)
        let now = MonotonicClock.seconds()
        let rank = sources.firstIndex { $0 === source } ?? sources.count
        announced.add(1, ordering: .relaxed)
        let enqueue: Bool = state.withLock { s in
            switch s.cache[id] {
            case .found(_, _, _, let known) where known < rank || (known == rank && !exact): return false
            case .pending(_, let known) where known < rank: return false
            case nil: makeRoom(&s, now: now)
            default: break
            }
            if exact {
                s.cache[id] = .found(metadata, expires: now + positiveTTL, refreshing: false, rank: rank)
                return false
            }
            let queued: Bool
            if case .pending = s.cache[id] { queued = true } else { queued = false }
            s.cache[id] = .pending(provisional: metadata, rank: rank)
            guard !queued, s.queue.count < queueCapacity else { return false }
            s.queue.append(id)
            return true
        }
        if enqueue { startLookups() }
    }

    /// A runtime says the container is gone: it leaves the cache after `destroyedGrace`
    /// seconds, so its last rows — still in a ring buffer or held back when the runtime
    /// says so (a `ctr run --rm` is deleted within milliseconds) — keep its metadata.
    public func forget(_ name: String) {
        let id = Array(name.utf8)
        let until = MonotonicClock.seconds() + destroyedGrace
        state.withLock { s in
            switch s.cache[id] {
            case .found(let m, _, _, _): s.cache[id] = .gone(m, until: until)
            case .pending: return // its lookup settles it
            default: s.cache[id] = nil
            }
        }
    }

    /// Removes expired entries, then any settled one, until there is room for one more.
    private func makeRoom(_ s: inout State, now: Double) {
        guard s.cache.count >= capacity else { return }
        s.cache = s.cache.filter {
            switch $0.value {
            case .pending: true
            case .found(_, let expires, _, _), .absent(let expires), .gone(_, let expires): expires > now
            }
        }
        while s.cache.count >= capacity, let victim = s.cache.first(where: { if case .pending = $0.value { false } else { true } })?.key {
            s.cache[victim] = nil
        }
    }

    private func startLookups() {
        let start: Bool = state.withLock { s in
            guard s.lookupThreads < maxLookupThreads, s.lookupThreads == 0 || s.queue.count > 1 else { return false }
            s.lookupThreads += 1
            return true
        }
        if start {
            let thread = Thread { self.lookupLoop() }
            thread.name = "infrasight-container-lookups"
            thread.start()
        }
        wake.signal()
    }

    /// The lookup thread: asks the sources for each queued container in turn.
    private func lookupLoop() {
        while true {
            wake.wait()
            if stop.isSet {
                wake.signal()
                break
            }
            // Another thread may have taken this signal's lookup: then there is nothing.
            guard let key = state.withLock({ s in s.queue.isEmpty ? nil : s.queue.removeFirst() }) else { continue }
            // The first source that knows the container answers; if none does, one that
            // could not be asked makes it "unavailable" (retried sooner than "unknown").
            var answer = Answer.unknown
            var rank = 0
            for (i, source) in sources.enumerated() {
                let said = source.inspect(String(decoding: key, as: UTF8.self), timeout: max(wait, 0.1))
                if case .found = said {
                    answer = said
                    rank = i
                    break
                }
                if case .unavailable = said { answer = .unavailable }
            }
            let now = MonotonicClock.seconds()
            state.withLock { s in
                switch (answer, s.cache[key]) {
                case (.found, .pending(let provisional?, let known)) where rank > known:
                    // A lesser runtime's record (dockerd's own containerd) does not beat
                    // what the container's own runtime said.
                    s.cache[key] = .found(provisional, expires: now + positiveTTL, refreshing: false, rank: known)
                case (.found(let m), _):
                    s.cache[key] = .found(m, expires: now + positiveTTL, refreshing: false, rank: rank)
                case (_, .found(let m, _, _, let known)):
                    // A refresh that failed keeps the answer it had, for a while.
                    s.cache[key] = .found(m, expires: now + retryAfter * 10, refreshing: false, rank: known)
                case (_, .pending(let provisional?, let known)):
                    // No answer: what the event said is the best there is.
                    s.cache[key] = .found(provisional, expires: now + positiveTTL, refreshing: false, rank: known)
                case (_, .gone):
                    break // destroyed while being refreshed: kept for its grace
                case (.unknown, _):
                    s.cache[key] = .absent(expires: now + negativeTTL)
                case (.unavailable, _):
                    s.cache[key] = .absent(expires: now + retryAfter)
                }
            }
        }
        state.withLock { $0.lookupThreads -= 1 }
    }
}
