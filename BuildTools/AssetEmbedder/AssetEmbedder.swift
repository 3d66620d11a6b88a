import Foundation
import PackagePlugin

/// Embeds a target's text assets as part of `swift build`: every file under the target's
/// `queries/`, `rules/`, `tables/` and `web/` folders (a symbolic link counts as the file it names)
/// becomes an entry of `EmbeddedAssets.files`, keyed by its
/// path in the target ("queries/recent_execs.sql"), so the binary carries its query
/// catalog and console pages and nothing is looked up on disk at run time.
@main
struct AssetEmbedder: BuildToolPlugin {
    static let folders = ["queries", "rules", "tables", "web"]

    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let target = target as? SourceModuleTarget else { return [] }
        let root = target.directoryURL
        let inputs = Self.folders.flatMap { files(under: root.appending(path: $0)) }
        guard !inputs.isEmpty else { return [] }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedAssets.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) assets of \(target.name)",
                executable: try context.tool(named: "asset-embed").url,
                arguments: ["--output", output.path, "--root", root.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }

    /// Regular files below `dir`, recursively, in a stable order.
    func files(under dir: URL) -> [URL] {
        guard let walker = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var out: [URL] = []
        for case let url as URL in walker where (try? url.resolvingSymlinksInPath().resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            out.append(url)
        }
        return out.sorted { $0.path < $1.path }
    }
}
