import Dispatch
import Foundation
import Synchronization

/// A bounded first-in first-out queue with one consumer thread: the batch writer's sink,
/// the rule engine, each webhook.
///
/// Producers `offer` items; one that does not fit (more than `maxItems` waiting, or
/// their cost past `maxCost`) is refused and the producer counts it, so nothing is lost
/// silently and no producer ever blocks. The thread `start` makes hands each item to
/// `handle`, in order. An item counts in `backlog` until `handle` returns. `finish` lets
/// the thread work until the queue is empty or a deadline passes, takes back what is
/// still waiting (the caller counts it), waits for the item in hand, and ends the thread.
///
/// Waiting is on semaphores, never by polling: `wake` holds one signal per item offered
/// (and one from `finish`), `ended` is signalled once by the thread as it exits.
public final class WorkQueue<Item: Sendable>: Sendable {
    public let maxItems: Int
    public let maxCost: Int
    /// Whether an item costlier than `maxCost` is taken when nothing else waits (a batch
    /// larger than the whole queue is still stored rather than always refused).
    public let takesOversizedWhenEmpty: Bool
    private let cost: @Sendable (Item) -> Int

    private struct State {
        var items: [Item] = []
        /// The first waiting item's index in `items` (taken items are dropped in chunks).
        var head = 0
        /// Cost of the waiting items and of the one in hand.
        var cost = 0
        var inHand = false
        /// `finish` has begun: nothing more is taken.
        var finishing = false
        /// `finish`'s deadline passed: the handler should give up on the item in hand.
        var abandoned = false
        /// The thread has ended (a later `finish` returns at once).
        var ended = false
        var deadline = Date.distantFuture

        var waiting: Int { items.count - head }

        mutating func takeFirst() -> Item? {
            guard head < items.count else { return nil }
            let item = items[head]
            head += 1
            if head >= 64, head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            return item
        }

        mutating func takeAll() -> [Item] {
            let rest = Array(items[head...])
            items.removeAll()
            head = 0
            return rest
        }
    }
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)

    public init(maxItems: Int = .max, maxCost: Int = .max, takesOversizedWhenEmpty: Bool = false,
                cost: @escaping @Sendable (Item) -> Int = { _ in 0 }) {
        self.maxItems = maxItems
        self.maxCost = maxCost
        self.takesOversizedWhenEmpty = takesOversizedWhenEmpty
        self.cost = cost
    }

    /// Queues `item`; false when it does not fit or `finish` has begun (nothing queued).
    @discardableResult
    public func offer(_ item: Item) -> Bool {
        let c = cost(item)
        let taken = state.withLock { s in
            guard !s.finishing else { return false }
            let fits = s.waiting < maxItems && s.cost + c <= maxCost
            guard fits || (takesOversizedWhenEmpty && s.waiting == 0 && !s.inHand) else { return false }
            s.items.append(item)
            s.cost += c
            return true
        }
        if taken { wake.signal() }
        return taken
    }

    /// Items waiting or in hand, and their cost.
    public var backlog: (items: Int, cost: Int) {
        state.withLock { s in (s.waiting + (s.inHand ? 1 : 0), s.cost) }
    }

    /// True once `finish` has given up waiting: a handler retrying its item should stop.
    public var abandoned: Bool { state.withLock { $0.abandoned } }

    /// `finish`'s deadline (distant future before `finish`), for a handler that retries.
    public var deadline: Date { state.withLock { $0.deadline } }

    /// Starts the consumer thread (once).
    public func start(name: String, handle: @escaping @Sendable (Item) -> Void) {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            defer { ended.signal() }
            while true {
                wake.wait()
                let item: Item? = state.withLock { s in
                    guard let item = s.takeFirst() else { return nil }
                    s.inHand = true
                    return item
                }
                // No item for a signal: it was `finish`'s, and the queue is empty (items
                // are taken in order, each signalled before `finish`'s).
                guard let item else { return }
                handle(item)
                let c = cost(item)
                state.withLock { s in
                    s.inHand = false
                    s.cost -= c
                }
            }
        }
        thread.name = name
        thread.start()
    }

    /// Waits until everything queued was handled, for at most `timeout` seconds; then
    /// returns what is still waiting (taken out, never handled: the caller counts it),
    /// after the item in hand is done. Without a started thread, returns everything.
    @discardableResult
    public func finish(timeout: TimeInterval) -> [Item] {
        let deadline = Date().addingTimeInterval(timeout)
        state.withLock { s in
            s.finishing = true
            s.deadline = deadline
        }
        guard started.load(ordering: .relaxed), !state.withLock({ $0.ended }) else {
            return state.withLock { s in
                let left = s.takeAll()
                s.cost -= left.reduce(0) { $0 + cost($1) }
                return left
            }
        }
        wake.signal()
        var left: [Item] = []
        if ended.wait(timeout: .now() + max(0, timeout)) == .timedOut {
            left = state.withLock { s in
                s.abandoned = true
                let left = s.takeAll()
                s.cost -= left.reduce(0) { $0 + cost($1) }
                return left
            }
            ended.wait()
        }
        state.withLock { $0.ended = true }
        return left
    }
}
