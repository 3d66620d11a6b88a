import ArgumentParser
import Foundation
import InfraSightBPF
import InfraSightCore

struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List, describe and verify probe plugins.",
        subcommands: [List.self, Info.self, Verify.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every plugin found, whether it is enabled, and why a file was refused.",
            discussion: """
                Every file is checked (owner, mode, ELF header, SHA-256 pins) without running \
                any of its code; only enabled plugins are loaded. A plugin that is not enabled \
                is listed as disabled with the name its file name gives and its sha256; its \
                version and abi are null and its tables empty unless --inspect loads it.
                """)
        @OptionGroup var source: PluginSourceOptions
        @Flag(help: "Print a JSON array: name, version, abi, path, tables, enabled, status (loaded|disabled|error), error, sha256, kernel (ok, needs FEATURE (Linux X.Y+)..., unknown: WHY, or null when not loaded).") var json = false
        @Flag(help: "Also load the plugins that are not enabled (their code runs, after the same checks) to show their version and tables.")
        var inspect = false

        func run() throws {
            let config = try source.loadConfig()
            let catalog = PluginCatalog.discover(config: config, extraDirs: source.pluginDirs, inspect: inspect)
            if json {
                let items: [JSON] = catalog.entries.map { e in
                    .object([
                        ("name", e.name.json),
                        ("version", e.plugin.map { .string($0.version) } ?? .null),
                        ("abi", e.plugin.map { .string($0.abi) } ?? .null),
                        ("path", .string(e.path)),
                        ("tables", .array((e.plugin?.tables ?? []).map { .string($0.qualifiedName) })),
                        ("enabled", .bool(e.enabled)),
                        ("status", .string(e.status.rawValue)),
                        ("error", e.error.json),
                        ("sha256", e.sha256.json),
                        ("kernel", e.plugin.map { .string(Self.kernelVerdict($0)) } ?? .null),
                    ])
                }
                print(JSON.array(items).text)
            } else {
                var rows = [["NAME", "VERSION", "ABI", "TABLES", "ENABLED", "STATUS", "KERNEL", "PATH"]]
                for e in catalog.entries {
                    rows.append([
                        e.name ?? "-", e.plugin?.version ?? "-", e.plugin?.abi ?? "-",
                        e.plugin.map { $0.tables.map(\.qualifiedName).joined(separator: ",") } ?? "-",
                        e.enabled ? "yes" : "no", e.status.rawValue, e.plugin.map(Self.kernelVerdict) ?? "-", e.path,
                    ])
                }
                printTable(rows)
                if catalog.entries.isEmpty {
                    print("no plugins found; searched: \(catalog.searchedDirs.joined(separator: ", "))")
                }
                for e in catalog.entries where e.error != nil {
                    printError("\(e.path): \(e.error!)")
                }
            }
            if let missing = catalog.missingError { throw failure(missing) }
        }

        /// Whether this kernel has every feature the plugin's BPF object needs, asked
        /// without loading it: `ok`, `needs ... (Linux X.Y+)`, or `unknown: WHY`.
        static func kernelVerdict(_ plugin: LoadedPlugin) -> String {
            guard plugin.bpfObject.count > 0 else { return "ok" }
            do {
                let object = try BPFObject(bytes: plugin.bpfObject, name: plugin.name)
                let requirements = object.kernelRequirements
                let missing = KernelProbe.missing(requirements)
                if !missing.isEmpty { return BPFError.kernelLacks(missing, release: KernelProbe.release).description }
                if requirements.contains(where: { KernelProbe.has($0) == nil }) { return geteuid() == 0 ? "unknown" : "unknown: not root" }
                return "ok"
            } catch {
                return "unknown: \(error)"
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Describe one plugin: tables with their DDL, BPF programs and attach points, options.",
            discussion: "A plugin that is not enabled is loaded to describe it (its code runs, after the checks that run none of it).")
        @OptionGroup var source: PluginSourceOptions
        @Argument(help: "The plugin's name.") var name: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let config = try source.loadConfig()
            let catalog = source.catalog(config)
            let entry: PluginEntry
            do {
                entry = try catalog.entry(named: name)
            } catch {
                throw failure(error.description)
            }
            guard let plugin = entry.plugin else { throw failure("\(entry.path): \(entry.error ?? "not loaded")") }
            var programs: [(name: String, section: String)] = []
            var programError: String?
            if plugin.bpfObject.count > 0 {
                do {
                    programs = try BPFObject(bytes: plugin.bpfObject, name: plugin.name).programs
                } catch {
                    programError = "\(error)"
                }
            }
            let options = PluginOptions.accepted(by: plugin)
            if json {
                let value = JSON.object([
                    ("name", .string(plugin.name)), ("version", .string(plugin.version)), ("abi", .string(plugin.abi)),
                    ("path", .string(plugin.path)), ("sha256", .string(plugin.sha256)),
                    ("description", .string(plugin.summary)), ("enabled", .bool(entry.enabled)),
                    ("status", .string(entry.status.rawValue)), ("error", entry.error.json),
                    ("tables", .array(plugin.tables.map { t in
                        .object([
                            ("name", .string(t.qualifiedName)), ("ddl", .string(t.ddl)),
                            ("columns", .array(t.columns.map { .object([("name", .string($0.name)), ("type", .string($0.type.description))]) })),
                        ])
                    })),
                    ("programs", .array(programs.map { .object([("name", .string($0.name)), ("attach", .string($0.section))]) })),
                    ("options", .array(options.map { o in
                        .object([("name", .string(o.name)), ("type", .string(o.type)), ("description", .string(o.description)), ("default", o.defaultValue.json)])
                    })),
                ])
                print(value.text)
                return
            }
            print("\(plugin.name) \(plugin.version) (ABI \(plugin.abi)) — \(plugin.summary)")
            print("path: \(plugin.path)\nsha256: \(plugin.sha256)\nenabled: \(entry.enabled ? "yes" : "no")   status: \(entry.status.rawValue)\(entry.error.map { " (\($0))" } ?? "")")
            print("\nBPF programs:")
            if let programError { print("  (cannot read the BPF object: \(programError))") }
            if programs.isEmpty && programError == nil { print("  (none)") }
            for p in programs { print("  \(p.name)  \(p.section)") }
            print("\nOptions (plugins.options.\(plugin.name).*):")
            for o in options {
                print("  \(o.name) (\(o.type))\(o.defaultValue.map { ", default \($0)" } ?? ""): \(o.description)")
            }
            for t in plugin.tables {
                print("\nTable \(t.qualifiedName):\n\(t.ddl)")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run every loader check on one plugin file; exit 0 only if it would load.",
            discussion: "The file is loaded (its code runs) once the checks that run none of it pass: owner, mode, ELF header, pins.")
        @OptionGroup var source: PluginSourceOptions
        @Argument(help: "The plugin file.") var file: String

        func run() throws {
            let config = try source.loadConfig()
            do {
                let plugin = try PluginCatalog.verify(file: file, config: config, extraDirs: source.pluginDirs)
                print("\(file): ok: plugin \(plugin.name) \(plugin.version), ABI \(plugin.abi), tables \(plugin.tables.map(\.qualifiedName).joined(separator: ", ")), sha256 \(plugin.sha256)")
            } catch {
                print("\(error)")
                throw ExitCode(1)
            }
        }
    }
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = first.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
    }
    for row in rows {
        let cells = row.enumerated().map { i, cell in
            i + 1 == row.count ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
        }
        print(cells.joined(separator: "  "))
    }
}
