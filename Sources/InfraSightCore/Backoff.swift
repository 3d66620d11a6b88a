/// Exponential backoff with ±20 % jitter: the one retry policy of every loop that waits
/// for something to come back (a store, a server). Jitter keeps a fleet of agents, or the
/// agents of one server, from retrying in lockstep. Not thread-safe: one per loop.
public struct Backoff: Sendable {
    public let initial: Double
    public let maximum: Double
    private var base: Double

    /// Waits start at `initial` seconds and double up to `maximum`.
    public init(initial: Double, maximum: Double) {
        self.initial = initial
        self.maximum = maximum
        base = initial
    }

    /// The next wait in seconds (the base ±20 %); the base then doubles, up to `maximum`.
    public mutating func next() -> Double {
        defer { base = min(base * 2, maximum) }
        return base * Double.random(in: 0.8...1.2)
    }

    /// Back to `initial` (after a success).
    public mutating func reset() { base = initial }
}
