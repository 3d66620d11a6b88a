import CInfraSightABI
import Foundation
@testable import InfraSightContainers
@testable import InfraSightCore
import InfraSightSchema
import Testing

/// The container metadata path without a runtime: what the Docker event stream means,
/// which runtime's word counts, and rows held back until their container is known.
@Suite struct ContainerMetadataTests {
    /// A runtime whose lookups hang until `finish()` (then it knows nothing): its
    /// containers are known only by `announce`, as from an event stream.
    final class QuietRuntime: ContainerMetadataSource, @unchecked Sendable {
        let description = "quiet"
        let finished = DispatchSemaphore(value: 0)
        func inspect(_ id: String, timeout: Double) -> ContainerResolver.Answer {
            _ = finished.wait(timeout: .now() + 30)
            finished.signal()
            return .unknown
        }
        func watch(_ resolver: ContainerResolver, stop: SignalFlag) {}
        func finish() { finished.signal() }
    }

    @Test func dockerEventsNameContainersAtCreateWithoutTheirName() {
        let create = #"{"status":"create","id":"abc","from":"img:1","Type":"container","Action":"create","Actor":{"ID":"abababababababababababababababababababababababababababababababab","Attributes":{"image":"img:1","name":"web","app":"demo","tier":"x"}},"time":1}"#
        #expect(DockerEngineSource.event(Array(create.utf8)) == .created(id: String(repeating: "ab", count: 32), ContainerResolver.Metadata(image: "img:1", labels: ["app": "demo", "tier": "x"])))
        // podman's create mixes in more than the name.
        let podman = #"{"Type":"container","Action":"create","Actor":{"ID":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","Attributes":{"image":"localhost/i:2","name":"n","podId":"","containerExitCode":"0","app":"pod"}}}"#
        #expect(DockerEngineSource.event(Array(podman.utf8)) == .created(id: String(repeating: "cd", count: 32), ContainerResolver.Metadata(image: "localhost/i:2", labels: ["app": "pod"])))
        let start = #"{"Type":"container","Action":"start","Actor":{"ID":"abababababababababababababababababababababababababababababababab","Attributes":{}}}"#
        #expect(DockerEngineSource.event(Array(start.utf8)) == nil)
        let destroy = #"{"Type":"container","Action":"destroy","Actor":{"ID":"abababababababababababababababababababababababababababababababab"}}"#
        #expect(DockerEngineSource.event(Array(destroy.utf8)) == .destroyed(id: String(repeating: "ab", count: 32)))
        #expect(DockerEngineSource.event(Array(#"{"Type":"network","Action":"create","Actor":{"ID":"n"}}"#.utf8)) == nil)
        #expect(DockerEngineSource.event(Array("not json".utf8)) == nil)
        // An id that is not one goes nowhere (it would be pasted into a request line).
        let forged = #"{"Type":"container","Action":"create","Actor":{"ID":"x/json HTTP/1.0\r\n\r\nDELETE /containers/y","Attributes":{}}}"#
        #expect(DockerEngineSource.event(Array(forged.utf8)) == nil)
        if case .unknown = DockerEngineSource(socketPath: "/nonexistent").inspect("../../version", timeout: 0.1) {} else { Issue.record("a non-id was asked for") }
        #expect(DockerEngineSource.event(Array(#"{"Type":"container","Action":"create"}"#.utf8)) == nil)
    }

    @Test func theFirstRuntimesWordWinsAndDestroyedContainersAreForgottenAfterTheirGrace() {
        let docker = QuietRuntime(), containerd = QuietRuntime()
        defer { docker.finish(); containerd.finish() }
        let resolver = ContainerResolver(sources: [docker, containerd], destroyedGrace: 0.3)
        let id = Array("c1".utf8)
        resolver.announce("c1", .init(image: "real:1", labels: ["app": "a"]), from: docker)
        // dockerd's own containerd knows the container too, without image or labels.
        resolver.announce("c1", .init(image: "", labels: ["com.docker/engine.bundle.path": "/x"]), from: containerd)
        #expect(resolver.lookup(id) == .found(.init(image: "real:1", labels: ["app": "a"])))
        // Destroyed: its last rows (still in a ring buffer) keep its metadata for the grace.
        resolver.forget("c1")
        #expect(resolver.lookup(id) == .found(.init(image: "real:1", labels: ["app": "a"])))
        usleep(400_000)
        #expect(resolver.peek(id) == .none)
        // The other order: the first runtime's word replaces the second's.
        resolver.announce("c2", .init(image: "", labels: [:]), from: containerd)
        resolver.announce("c2", .init(image: "real:2", labels: [:]), from: docker)
        #expect(resolver.peek(Array("c2".utf8)) == .found(.init(image: "real:2", labels: [:])))
        // An inexact word (a create event's attributes) makes the container wait for its
        // lookup, with that word to fall back on; an exact one from the same runtime settles it.
        resolver.announce("c3", .init(image: "i:3", labels: ["guess": "1"]), from: docker, exact: false)
        #expect(resolver.lookup(Array("c3".utf8)) == .pending(.init(image: "i:3", labels: ["guess": "1"])))
        resolver.announce("c3", .init(image: "i:3", labels: ["exact": "1"]), from: docker)
        #expect(resolver.lookup(Array("c3".utf8)) == .found(.init(image: "i:3", labels: ["exact": "1"])))
        // No runtime at all: nothing to wait for.
        #expect(ContainerResolver(sources: []).lookup(id) == .none)
    }

    final class Collector: RowConsumer {
        var rows: [(pid: UInt64, image: String?, labels: String?)] = []
        func consume(_ row: RowBuffer, from channel: PluginChannel) {
            rows.append((row.words[0], row.string(1), row.string(2)))
        }
    }

    func channel(_ collector: Collector) throws -> PluginChannel {
        var d = is_plugin_descriptor()
        d.name = UnsafePointer(strdup("held"))
        d.decode = { _, _, _, _ in IS_DECODE_ROW }
        let ddl = "CREATE TABLE IF NOT EXISTS audit.held (pid UInt32, container_image String, container_labels_json JSON) ENGINE = MergeTree() ORDER BY pid"
        let plugin = LoadedPlugin(path: "/test", sha256: "", descriptor: d, tables: [try TableSchema(ddl: ddl)], derivedColumns: [:], options: [])
        return PluginChannel(plugin: plugin, instance: OpaquePointer(bitPattern: 1)!, enricher: Enricher(nodeName: "t"), consumer: collector)
    }

    @Test func heldRowsGoInOrderWithTheirMetadataOnceKnownAndWithoutItPastTheBound() throws {
        let collector = Collector()
        let channel = try channel(collector)
        let runtime = QuietRuntime()
        let resolver = ContainerResolver(sources: [runtime], wait: 2)
        let held = HeldRows(wait: 2)
        let row = channel.rows[0]
        func hold(_ pid: UInt64, _ container: String, at now: Double) {
            row.reset()
            row.setUInt(0, pid)
            row.setString(1, "")
            row.setString(2, "{}")
            // The resolver starts a lookup: pending until a runtime names the container.
            #expect(resolver.lookup(Array(container.utf8)) != .none)
            held.hold(row, from: channel, container: Array(container.utf8), imageColumn: 1, labelsColumn: 2, now: now)
        }
        hold(1, "a", at: 100)
        hold(2, "b", at: 100.5)
        hold(3, "a", at: 101)
        #expect(held.holds(Array("a".utf8)))
        held.release(resolver, now: 101.1)
        #expect(collector.rows.isEmpty)
        // "a" is named: both its rows go, in order, with its metadata; "b" still waits.
        resolver.announce("a", .init(image: "img:a", labels: ["k": "v"]), from: runtime)
        held.release(resolver, now: 101.2)
        #expect(collector.rows.map(\.pid) == [1, 3])
        #expect(collector.rows.allSatisfy { $0.image == "img:a" && $0.labels == #"{"k":"v"}"# })
        #expect(!held.holds(Array("a".utf8)) && held.holds(Array("b".utf8)))
        // "b" never answers: stored without metadata once its 2 s are up, and counted.
        held.release(resolver, now: 102.4)
        #expect(collector.rows.count == 2)
        held.release(resolver, now: 102.6)
        #expect(collector.rows.map(\.pid) == [1, 3, 2])
        #expect(collector.rows.last?.image == "")
        #expect(held.isEmpty)
        // "c" was named by an event whose word is provisional: its row waits for the
        // lookup and, when its time is up, goes with that word.
        resolver.announce("c", .init(image: "img:c", labels: [:]), from: runtime, exact: false)
        hold(4, "c", at: 103)
        held.release(resolver, now: 104)
        #expect(collector.rows.count == 3)
        held.release(resolver, now: 105.1)
        #expect(collector.rows.map(\.pid) == [1, 3, 2, 4])
        #expect(collector.rows.last?.image == "img:c")
        #expect(held.counters.held.load(ordering: .relaxed) == 4)
        #expect(held.counters.releasedWithMetadata.load(ordering: .relaxed) == 3)
        #expect(held.counters.releasedWithout.load(ordering: .relaxed) == 1)
        #expect(channel.counters.rows.load(ordering: .relaxed) == 4)
        runtime.finish()
        resolver.stopWatching()
    }

    @Test func heldRowsStayWithinTheirMemoryBoundAndAllGoAtStop() throws {
        let collector = Collector()
        let channel = try channel(collector)
        let runtime = QuietRuntime()
        defer { runtime.finish() }
        let resolver = ContainerResolver(sources: [runtime], wait: 60)
        let row = channel.rows[0]
        row.reset()
        row.setUInt(0, 7)
        let held = HeldRows(wait: 60, maxBytes: row.heldBytes * 10)
        for i in 0..<25 {
            #expect(resolver.lookup(Array("c\(i % 3)".utf8)) != .none)
            held.hold(row, from: channel, container: Array("c\(i % 3)".utf8), imageColumn: 1, labelsColumn: 2, now: 0)
        }
        // The oldest went early, without metadata, to keep at most 10 rows' worth.
        #expect(collector.rows.count == 15)
        #expect(held.counters.waiting.load(ordering: .relaxed) == 10)
        held.release(resolver, now: 1, force: true)
        #expect(collector.rows.count == 25)
        #expect(held.counters.releasedWithout.load(ordering: .relaxed) == 25)
        resolver.stopWatching()
    }
}
