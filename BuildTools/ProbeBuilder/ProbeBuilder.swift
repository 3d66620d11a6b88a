import Foundation
import PackagePlugin

/// Builds what a probe plugin embeds, as part of `swift build`:
/// - its BPF C, compiled with the toolchain's clang (`-target bpf`) into an object that is
///   embedded as generated Swift (`EmbeddedBPFObject.<stem>`);
/// - its tables' DDL, embedded verbatim from `.sql` files (`EmbeddedDDL.<stem>`), so the
///   DDL a plugin reports is byte for byte the file under `schema/`.
///
/// Sources: every `*.bpf.c` and `*.sql` in the target's own folder: a plugin, first-party
/// or third-party, carries its own. BPF include paths: the target's folder, the public
/// headers of the C targets it depends on, then `bpf/include` and `bpf/vmlinux` of the
/// package that ships the InfraSight headers (found among the dependencies).
@main
struct ProbeBuilder: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let target = target as? SourceModuleTarget else { return [] }
        let folder = target.directoryURL
        let bpfSources = files(in: folder, suffix: ".bpf.c")
        let sqlSources = files(in: folder, suffix: ".sql")

        let embed = try context.tool(named: "probe-embed").url
        var commands: [Command] = sqlSources.map { source in
            let stem = String(source.lastPathComponent.dropLast(".sql".count))
            let output = context.pluginWorkDirectoryURL.appending(path: "\(stem)_ddl.swift")
            return .buildCommand(
                displayName: "Embedding DDL \(source.lastPathComponent)",
                executable: embed,
                arguments: ["sql", "--source", source.path, "--output", output.path, "--name", stem],
                inputFiles: [source],
                outputFiles: [output])
        }
        guard !bpfSources.isEmpty else { return commands }

        guard let headers = Self.headerPackage(context.package) else {
            throw ProbeBuilderError("no package with bpf/include/infrasight_event.h among the dependencies of \(context.package.displayName)")
        }
        // The target's folder, the public headers of every C target it depends on (a
        // plugin's own event header lives in one, so BPF and Swift share it), then ours.
        var includeDirs = [folder]
        for case let dependency as ClangSourceModuleTarget in target.recursiveTargetDependencies {
            if let dir = dependency.publicHeadersDirectoryURL, !includeDirs.contains(dir) { includeDirs.append(dir) }
        }
        for dir in [headers.appending(path: "bpf/include"), headers.appending(path: "bpf/vmlinux")] where !includeDirs.contains(dir) {
            includeDirs.append(dir)
        }
        let headerFiles = includeDirs.flatMap { files(in: $0, suffix: ".h") }
        let clang = try context.tool(named: "clang").url
        let objcopy = try? context.tool(named: "llvm-objcopy").url
        for source in bpfSources {
            let stem = String(source.lastPathComponent.dropLast(".bpf.c".count))
            let output = context.pluginWorkDirectoryURL.appending(path: "\(stem)_bpf_object.swift")
            var arguments = ["bpf", "--clang", clang.path, "--source", source.path, "--output", output.path,
                             "--name", stem, "--work", context.pluginWorkDirectoryURL.path]
            if let objcopy { arguments += ["--objcopy", objcopy.path] }
            for dir in includeDirs { arguments += ["-I", dir.path] }
            commands.append(
                .buildCommand(
                    displayName: "Compiling BPF \(source.lastPathComponent)",
                    executable: embed,
                    arguments: arguments,
                    inputFiles: [source] + headerFiles,
                    outputFiles: [output]))
        }
        return commands
    }

    func files(in dir: URL, suffix: String) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(suffix) }.sorted().map { dir.appending(path: $0) }
    }

    /// The package (the target's own or a dependency, depth first) that ships the headers.
    static func headerPackage(_ package: Package) -> URL? {
        var seen = Set<String>()
        func visit(_ p: Package) -> URL? {
            guard seen.insert(p.id).inserted else { return nil }
            let probe = p.directoryURL.appending(path: "bpf/include/infrasight_event.h")
            if FileManager.default.fileExists(atPath: probe.path) { return p.directoryURL }
            for dependency in p.dependencies {
                if let found = visit(dependency.package) { return found }
            }
            return nil
        }
        return visit(package)
    }
}

struct ProbeBuilderError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
