import CLibbpf
import Glibc

/// libbpf's ring-buffer manager over any number of BPF_MAP_TYPE_RINGBUF maps (one epoll
/// set). Records are handed to the callback registered with their map, on the thread
/// that calls `poll`/`consume`. Not thread-safe: one thread drives it.
public final class RingBufferPoller {
    public typealias Callback = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int) -> Int32
    private var raw: OpaquePointer?

    public init() {}

    deinit {
        if let raw { ring_buffer__free(raw) }
    }

    /// Adds the ring buffer `fd`; `context` is passed to `callback` with every record and
    /// must outlive the poller.
    public func add(fd: Int32, context: UnsafeMutableRawPointer, callback: Callback) throws(BPFError) {
        if let raw {
            let rc = ring_buffer__add(raw, fd, callback, context)
            if rc != 0 { throw .map("cannot add ring buffer: \(errnoText(rc))") }
        } else {
            guard let rb = ring_buffer__new(fd, callback, context, nil) else {
                throw .map("cannot create ring-buffer manager: \(errnoText(errno))")
            }
            raw = rb
        }
    }

    /// Waits up to `timeoutMs` for a wake-up, then drains every ring (producers submit
    /// without waking us below their fill threshold, so a timed drain is what delivers a
    /// quiet ring's records). Returns the number of records consumed, or a negative errno.
    @discardableResult
    public func poll(timeoutMs: Int32) -> Int32 {
        guard let raw else {
            usleep(UInt32(max(0, timeoutMs)) * 1000)
            return 0
        }
        let woke = ring_buffer__poll(raw, timeoutMs)
        if woke < 0, woke != -EINTR { return woke }
        let drained = ring_buffer__consume(raw)
        if drained < 0 { return drained }
        return max(0, woke) + drained
    }

    /// Drains every ring without waiting.
    @discardableResult
    public func consume() -> Int32 {
        guard let raw else { return 0 }
        return ring_buffer__consume(raw)
    }
}
