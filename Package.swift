// swift-tools-version: 6.1
//
// InfraSight: an eBPF auditing tracer. The `infrasight` executable is the host; every
// probe plugin under Plugins/ is its own dynamic library, loaded at run time through the
// C ABI in Sources/CInfraSightABI. BPF C under bpf/ is compiled by the ProbeBuilder
// build-tool plugin as part of `swift build`.
import PackageDescription

/// First-party probe plugins, each one folder under Plugins/ holding everything it is
/// (its Swift, `<folder>.bpf.c`, the DDL of its tables as `<table>.sql`, and its
/// ring-buffer record layout in `record/`), built exactly as a third-party plugin is:
/// folder → target → product libinfrasight-<folder>.so.
/// Adding a plugin is a new folder and one line here.
let probePlugins: [(folder: String, target: String, tables: [String])] = [
    ("tracing", "TracingPlugin", ["tracing_events"]),
    ("ptrace", "PtracePlugin", ["ptrace_events"]),
    ("mmap", "MmapPlugin", ["mmap_events"]),
    ("mount", "MountPlugin", ["mount_events"]),
    ("resource", "ResourcePlugin", ["resource_events"]),
    ("network", "NetworkPlugin", ["network_events"]),
]

/// The C target of a plugin's record layout, "NetworkPlugin" → "NetworkRecord": the
/// header in `Plugins/<folder>/record/include/<folder>_record.h` that the plugin's BPF C
/// includes and its Swift imports, and `<folder>_layout.c` that pins its size and offsets.
func recordTarget(of plugin: String) -> String {
    precondition(plugin.hasSuffix("Plugin"), "a plugin target's name ends in Plugin: \(plugin)")
    return String(plugin.dropLast("Plugin".count)) + "Record"
}
let recordTargets = probePlugins.map { Target.Dependency.target(name: recordTarget(of: $0.target)) }

var products: [Product] = [
    .executable(name: "infrasight", targets: ["infrasight"]),
    // Plugin authors link the SDK statically into their own dynamic library.
    .library(name: "InfraSightSDK", targets: ["InfraSightSDK"]),
    .plugin(name: "ProbeBuilder", targets: ["ProbeBuilder"]),
]
var targets: [Target] = [
    // The dlopen boundary: C types only.
    .target(name: "CInfraSightABI"),
    // What every ring-buffer record shares (the common header), shared verbatim with the
    // BPF C; each plugin's own record layout is its record target (see recordTarget).
    .target(name: "CInfraSightEvent", path: "bpf", sources: ["event_layout.c"], publicHeadersPath: "include"),
    .systemLibrary(name: "CLibbpf", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev", "libelf-dev", "zlib1g-dev"])]),
    .target(name: "InfraSightSchema"),
    // Names for numeric codes (ptrace requests), for plugins and the server alike.
    .target(name: "InfraSightCodes"),
    // Linux calls the Swift Glibc module does not expose (open_by_handle_at).
    .target(name: "CHostShims"),
    .target(name: "InfraSightSDK", dependencies: ["CInfraSightABI", "CInfraSightEvent", "InfraSightSchema"]),
    .target(name: "InfraSightBPF", dependencies: ["CLibbpf"]),
    .target(
        name: "InfraSightCore",
        dependencies: [
            "CInfraSightABI", "CInfraSightEvent", "InfraSightSchema", "InfraSightBPF", "CHostShims",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
    // The ADBC and Arrow C declarations that drive embedded ClickHouse (chdb).
    .target(name: "CChdbADBC"),
    .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
    // Storage: embedded ClickHouse and ClickHouse over HTTP, batching, the query socket.
    .target(
        name: "InfraSightStorage",
        dependencies: [
            "InfraSightCore", "InfraSightSchema", "InfraSightCodes", "CChdbADBC", "CZlib",
        ]),
    // The agent → server wire protocol (proto/), generated code committed
    // (scripts/gen-proto.sh). Only the pipeline targets depend on gRPC.
    .target(
        name: "InfraSightPipelineProto",
        dependencies: [
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
    // Fleet mode: the agent's spool and sender, the server's service and its store.
    .target(
        name: "InfraSightPipeline",
        dependencies: [
            "InfraSightPipelineProto", "InfraSightStorage", "InfraSightSchema",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    // The container runtimes the enricher asks for a container's image and labels, side by
    // side: Docker and podman (their HTTP API over a unix socket) and containerd (gRPC).
    .target(
        name: "InfraSightContainers",
        dependencies: [
            "InfraSightCore",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        ]),
    // Prometheus /metrics, /healthz and /readyz (swift-prometheus over a small NIO HTTP server).
    .target(
        name: "InfraSightMetrics",
        dependencies: [
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    // The catalog of named queries (queries/*.sql, embedded by AssetEmbedder) that the
    // console and the Grafana dashboards are made of.
    // tables/ links the first-party tables' DDL, so the console can create the tables it
    // reads that no enabled plugin made.
    .target(name: "InfraSightCatalog", dependencies: ["InfraSightCore", "InfraSightStorage", "InfraSightSchema"], exclude: ["queries", "tables"], plugins: ["AssetEmbedder"]),
    // Detection: rules (ClickHouse boolean expressions) evaluated on every stored batch,
    // alerts into audit.alerts and out to stdout, a file and webhooks; drift detection.
    // rules/ (the default ruleset) and tables/ (its tables' DDL) are embedded.
    .target(
        name: "InfraSightRules",
        dependencies: ["InfraSightStorage", "InfraSightSchema", "InfraSightCore", .product(name: "Yams", package: "Yams")],
        exclude: ["rules", "tables"], plugins: ["AssetEmbedder"]),
    // The web console (--ui-listen): pages from web/ (embedded) and a JSON API over the catalog.
    .target(
        name: "InfraSightConsole",
        dependencies: [
            "InfraSightCatalog", "InfraSightStorage", "InfraSightCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ],
        exclude: ["web"], plugins: ["AssetEmbedder"]),
    .executableTarget(
        name: "infrasight",
        dependencies: [
            "InfraSightCatalog", "InfraSightConsole", "InfraSightRules", "InfraSightCore", "InfraSightStorage", "InfraSightMetrics", "InfraSightPipeline", "InfraSightPipelineProto", "InfraSightContainers", "CHostShims",
            "InfraSightBPF", "InfraSightSDK",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ],
        // The host's own BPF (cgroup names), compiled and embedded by ProbeBuilder.
        exclude: ["cgroup_names.bpf.c"],
        plugins: ["ProbeBuilder"]),
    // Benchmarks (bench/): `swift run -c release infrasight-bench decode`.
    .executableTarget(
        name: "infrasight-bench",
        dependencies: [
            "InfraSightCore", "InfraSightStorage", "InfraSightSchema", "InfraSightBPF", "InfraSightSDK", "TracingRecord", "InfraSightRules",
            // The console benchmark serves the console and drives headless Chromium as the tests do.
            "InfraSightCatalog", "InfraSightConsole", "InfraSightTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ],
        path: "bench/Sources", exclude: ["floor.bpf.c"], plugins: ["ProbeBuilder"]),
    // ProbeBuilder's tool: BPF objects and DDL into Swift, column handles from the DDL.
    .executableTarget(name: "probe-embed", dependencies: ["InfraSightSchema"], path: "BuildTools/probe-embed"),
    .plugin(name: "ProbeBuilder", capability: .buildTool(), dependencies: ["probe-embed"], path: "BuildTools/ProbeBuilder"),
    // AssetEmbedder's tool: a target's queries/ and web/ files into Swift.
    .executableTarget(name: "asset-embed", path: "BuildTools/asset-embed"),
    .plugin(name: "AssetEmbedder", capability: .buildTool(), dependencies: ["asset-embed"], path: "BuildTools/AssetEmbedder"),
    // Helpers the tests share: processes, temp dirs, fixture compilation, paths.
    .target(name: "InfraSightTestSupport", dependencies: ["InfraSightCore"], path: "Tests/Support"),
    .testTarget(
        name: "UnitTests",
        dependencies: ["InfraSightCore", "InfraSightSchema", "InfraSightStorage", "InfraSightCatalog", "InfraSightRules", "InfraSightPipelineProto", "InfraSightPipeline", "InfraSightContainers", "InfraSightTestSupport"]
            // The decoder tests build records from every plugin's own structs.
            + recordTargets),
    // Run the built `infrasight` and plugins on the real kernel (root required):
    // `swift build` first, so every product exists.
    .testTarget(
        name: "IntegrationTests",
        dependencies: [
            "InfraSightBPF", "InfraSightCore", "InfraSightSchema", "InfraSightStorage", "InfraSightTestSupport", "InfraSightPipelineProto",
            // MalformedRecordTests sends the tracing plugin's record, damaged.
            "TracingRecord",
            // A hostile agent in the tests speaks raw gRPC to the real server.
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        ]),
]

for plugin in probePlugins {
    let record = recordTarget(of: plugin.target)
    products.append(.library(name: "infrasight-\(plugin.folder)", type: .dynamic, targets: [plugin.target]))
    // The record layout, one header for the plugin's BPF C (ProbeBuilder passes the public
    // headers of the plugin's C dependencies as -I) and its Swift decoder.
    targets.append(.target(name: record, dependencies: ["CInfraSightEvent"], path: "Plugins/\(plugin.folder)/record"))
    targets.append(
        .target(
            name: plugin.target,
            dependencies: ["InfraSightSDK", "InfraSightCodes", .target(name: record)],
            path: "Plugins/\(plugin.folder)",
            // ProbeBuilder compiles the BPF C and embeds the DDL, and record/ is its own
            // target: not Swift sources.
            exclude: ["\(plugin.folder).bpf.c", "record"] + plugin.tables.map { "\($0).sql" },
            plugins: ["ProbeBuilder"]))
}

let package = Package(
    name: "infrasight",
    platforms: [.macOS(.v14)],
    products: products,
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.36.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: targets,
    swiftLanguageModes: [.v6]
)
