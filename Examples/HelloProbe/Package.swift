// swift-tools-version: 6.1
//
// An out-of-tree InfraSight probe plugin: who sends which signal to whom. It depends only
// on the InfraSight SDK and builds to libinfrasight-signals.so; drop that file into a
// plugin directory and `infrasight plugins list` shows it.
import PackageDescription

let package = Package(
    name: "HelloProbe",
    products: [
        .library(name: "infrasight-signals", type: .dynamic, targets: ["SignalProbe"]),
    ],
    dependencies: [
        // In your own package: .package(url: "https://github.com/<org>/infrasight", from: "...")
        .package(name: "infrasight", path: "../.."),
    ],
    targets: [
        // The record layout, shared by the BPF C and the Swift decoder.
        .target(name: "CSignalEvent"),
        .target(
            name: "SignalProbe",
            dependencies: ["CSignalEvent", .product(name: "InfraSightSDK", package: "infrasight")],
            // ProbeBuilder compiles the BPF C and embeds the DDL; SwiftPM must not see
            // them as sources of this Swift target.
            exclude: ["signals.bpf.c", "signal_events.sql"],
            plugins: [.plugin(name: "ProbeBuilder", package: "infrasight")]),
    ],
    swiftLanguageModes: [.v5]
)
