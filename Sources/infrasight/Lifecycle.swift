import Foundation
import Logging
import ServiceLifecycle

/// Runs a command's long-running parts as one ServiceGroup and returns when all have
/// stopped.
///
/// Order is the contract: SIGINT, SIGTERM, or any service returning (the tracing loop
/// reaching `--duration`, a sender giving up) starts a graceful shutdown that stops the
/// services in the reverse of their order in `services`, each one finished before the next
/// is told. So list sources before what they feed (`[store, ..., writer, dispatcher]`):
/// the dispatcher stops reading first, the writer then flushes what it holds, and the
/// store closes last, with nothing accepted left behind. A service that throws stops the
/// group the same way, and `run` throws its error once everything has stopped.
enum Lifecycle {
    static func run(_ services: [any Service], logger: Logger) throws {
        let group = ServiceGroup(configuration: .init(
            services: services.map {
                .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
            },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try blockingWait { try await group.run() }
    }
}

/// Runs `body` on a thread of its own and returns its result. Blocking work (a poll loop,
/// a flush that waits for the store) stays off Swift's cooperative pool, which has one
/// thread per core: blocking one of two would stall every async part (gRPC, the sender).
func onThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.start()
    }
}

/// A blocking loop (the dispatcher's ring-buffer poll) as a service: `body` runs on its own
/// thread; graceful shutdown or cancellation calls `stop`, which must make `body` return.
/// When `body` returns by itself (its deadline), the group shuts down.
struct LoopService: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () -> Void
    let stop: @Sendable () -> Void

    init(_ name: String, stop: @escaping @Sendable () -> Void, body: @escaping @Sendable () -> Void) {
        description = name
        self.stop = stop
        self.body = body
    }

    func run() async throws {
        let stop = self.stop
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await onThread(description, body)
            } onCancel: { stop() }
        } onGracefulShutdown: { stop() }
    }
}

/// A part that works on its own once started (the batch writer's sink thread, a listener,
/// the store) and needs an ordered stop: `started` runs when the group is up (its signal
/// handlers are in place, so a "started" line printed here is a promise that SIGINT is
/// handled); at graceful shutdown, or cancellation, `stop` runs on a thread of its own
/// (stops block: a flush waits for the store).
struct StopService: Service, CustomStringConvertible {
    let description: String
    let started: @Sendable () -> Void
    let stop: @Sendable () throws -> Void

    init(_ name: String, started: @escaping @Sendable () -> Void = {}, stop: @escaping @Sendable () throws -> Void) {
        description = name
        self.started = started
        self.stop = stop
    }

    func run() async throws {
        started()
        do {
            try await gracefulShutdown()
        } catch is CancellationError {
            // The group is cancelled rather than shut down: stop all the same.
        }
        try await onThread(description, stop)
    }
}
