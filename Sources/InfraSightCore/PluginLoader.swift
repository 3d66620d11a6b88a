import CInfraSightABI
import Crypto
import Foundation
import Glibc
import InfraSightSchema

/// Why a plugin file was refused: printed as "PATH: reason".
public struct PluginLoadError: Error, Equatable, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// A plugin file that passed every check that needs none of its code: opened once, its
/// owner and mode, its ELF header and its SHA-256 pin checked on that descriptor. Nothing
/// of it has run yet; `PluginLoader.load(_:)` dlopens it through the same descriptor.
public struct PluginCandidate: Sendable {
    public let path: String
    /// The name its file name promises (see `PluginLoader.expectedName(fileName:)`).
    public let name: String
    /// Lower-case hex SHA-256 of the bytes read through `fd`.
    public let sha256: String
    /// Kept open for the life of the process: the plugin is loaded as /proc/self/fd/N, and
    /// glibc treats a library name it has already loaded as that library, so N must never
    /// be closed and reused for another file.
    let fd: Int32
}

/// Checks and loads plugin files in two steps, so that a plugin's code (its ELF
/// constructors included) runs only after everything that can be checked without it.
///
/// `check(_:)`, no code of the file runs; the first failure refuses the file with one line:
///  1. the file name promises a valid plugin name: `libinfrasight-NAME.so`, `libNAME.so`
///     or `NAME.so` gives NAME;
///  2. opened once with O_NOFOLLOW (a symlink is refused), a regular file owned by root or
///     the current user, not writable by group or others, and so is every directory up
///     to `/` (sticky directories such as /tmp excepted), checked by `TrustedFile` on the
///     descriptors;
///  3. an ELF shared object for this machine, read through that descriptor;
///  4. its SHA-256 (same bytes) against the pins: a name pin for NAME must equal it; when
///     the config lists bare digests, the file must match one of them or its name pin;
///  5. no earlier file claimed NAME.
/// Whether a plugin is enabled is the caller's decision, between the two steps.
///
/// `load(_:)` dlopens "/proc/self/fd/N" (RTLD_NOW | RTLD_LOCAL), the descriptor checked
/// above, then checks: 6. the entry symbol; 7. the descriptor's magic; 8. ABI (major
/// equal, minor <= ours); 9. descriptor size; 10. a valid name equal to NAME (so name pins
/// and `plugins.enabled`, applied to NAME before loading, apply to the plugin that runs);
/// 11. at least one table, each with a DDL that parses.
/// A loaded plugin is never dlclosed. Not thread-safe; used from the control thread.
public struct PluginLoader {
    /// The directories being searched. The checks do not depend on them: a file is judged
    /// on its own descriptor and the directories above it.
    public let pluginDirs: [String]
    /// Plugin name → SHA-256 (`plugins.pins` as a mapping, or `NAME: DIGEST` list items).
    public let pins: [String: String]
    /// Bare digests (`plugins.pins` as a list); when non-nil, only pinned files load.
    public let pinnedDigests: Set<String>?
    private(set) var claimedBy: [String: String] = [:]

    public init(pluginDirs: [String], pins: [String: String], pinnedDigests: Set<String>? = nil) {
        self.pluginDirs = pluginDirs
        self.pins = pins
        self.pinnedDigests = pinnedDigests
    }

    public init(pluginDirs: [String], config: InfraSightConfig) {
        self.init(pluginDirs: pluginDirs, pins: config.pins, pinnedDigests: config.pinnedDigests)
    }

    /// Why a symlinked plugin file is refused.
    public static let symlinkReason = "plugins are opened without following links"

    /// The plugin name a file name promises: `libinfrasight-NAME.so`, `libNAME.so` or
    /// `NAME.so` → NAME. The loaded plugin must report this name.
    public static func expectedName(fileName: String) -> String {
        var name = fileName.hasSuffix(".so") ? String(fileName.dropLast(3)) : fileName
        if name.hasPrefix("libinfrasight-") {
            name.removeFirst("libinfrasight-".count)
        } else if name.hasPrefix("lib"), name.count > 3 {
            name.removeFirst(3)
        }
        return name
    }

    /// Why `name` is not a valid plugin name, or nil.
    static func invalidName(_ name: String) -> String? {
        let valid = !name.isEmpty && name.utf8.count <= 64
            && name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_" || $0 == "-") })
        return valid ? nil : "use [a-z0-9_-], at most 64 characters"
    }

    /// Checks 1-5 (above): nothing of the file runs. On success the file's name is claimed,
    /// so a later file with the same name is refused.
    public mutating func check(_ path: String) throws(PluginLoadError) -> PluginCandidate {
        func fail(_ reason: String) -> PluginLoadError { PluginLoadError(path: path, reason: reason) }

        // 1. The name, from the file name: pins and `plugins.enabled` are decided on it
        //    before any code of the file runs.
        let name = Self.expectedName(fileName: (path as NSString).lastPathComponent)
        if let why = Self.invalidName(name) {
            throw fail("the file name gives the plugin name '\(name)', which is invalid: \(why); name the file libinfrasight-NAME.so")
        }

        // 2. Owner and mode of the file and every directory above it, on the descriptor.
        let file: TrustedFile
        do {
            file = try TrustedFile.open(path, finalLink: .refuse(why: Self.symlinkReason))
        } catch {
            throw fail(error.reason)
        }
        // Closed on refusal: nothing was loaded from it, so its number may be reused.
        var keep = false
        defer { if !keep { close(file.fd) } }

        // 3. ELF shared object for this machine, from the same descriptor.
        let contents: Data
        do {
            contents = try file.contents()
        } catch {
            throw fail(error.reason)
        }
        try ELFCheck.check(contents).mapError(fail)

        // 4. Pins, on the same bytes.
        let digest = SHA256.hash(data: contents).map { String(format: "%02x", $0) }.joined()
        if let pin = pins[name] {
            guard pin == digest else { throw fail("SHA-256 \(digest) does not match the pin for \(name) in the config (\(pin))") }
        } else if let pinnedDigests, !pinnedDigests.contains(digest) {
            throw fail("not pinned: its SHA-256 \(digest) is not among plugins.pins in the config")
        }

        // 5. One file per name: the first found wins.
        if let other = claimedBy[name] { throw fail("duplicate plugin name \(name) (already found at \(other))") }
        claimedBy[name] = path
        keep = true
        return PluginCandidate(path: path, name: name, sha256: digest, fd: file.fd)
    }

    /// Checks 6-11 (above): dlopens the candidate's descriptor, so its code runs.
    public func load(_ candidate: PluginCandidate) throws(PluginLoadError) -> LoadedPlugin {
        func fail(_ reason: String) -> PluginLoadError { PluginLoadError(path: candidate.path, reason: reason) }

        // 6. dlopen through the checked descriptor, and the entry symbol. Never dlclosed:
        //    the ABI gives plugin memory process lifetime, and Swift images cannot be
        //    unloaded safely. From here on the descriptor stays open (see PluginCandidate).
        let procPath = "/proc/self/fd/\(candidate.fd)"
        _ = dlerror()
        guard let image = dlopen(procPath, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw fail("cannot load: \(why.replacingOccurrences(of: procPath + ": ", with: ""))")
        }
        guard let symbol = dlsym(image, IS_PLUGIN_ENTRY_SYMBOL) else {
            throw fail("no entry symbol \(IS_PLUGIN_ENTRY_SYMBOL): not an InfraSight plugin")
        }
        let entry = unsafeBitCast(symbol, to: is_plugin_entry_fn.self)
        guard let raw = entry() else { throw fail("the entry symbol returned no descriptor") }

        // 7-9. The fixed prefix, read before anything else.
        let magic = UnsafeRawPointer(raw).loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        guard magic == IS_PLUGIN_MAGIC else { throw fail(String(format: "bad magic 0x%08x (expected 0x%08x)", magic, IS_PLUGIN_MAGIC)) }
        let major = UnsafeRawPointer(raw).loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        let minor = UnsafeRawPointer(raw).loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        guard Int32(major) == IS_PLUGIN_ABI_MAJOR else {
            throw fail("plugin ABI \(major).\(minor) is incompatible with this host's ABI \(IS_PLUGIN_ABI_MAJOR).\(IS_PLUGIN_ABI_MINOR) (major versions differ)")
        }
        guard Int32(minor) <= IS_PLUGIN_ABI_MINOR else {
            throw fail("plugin ABI \(major).\(minor) is newer than this host's ABI \(IS_PLUGIN_ABI_MAJOR).\(IS_PLUGIN_ABI_MINOR); upgrade infrasight")
        }
        let size = UnsafeRawPointer(raw).loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard Int(size) >= MemoryLayout<is_plugin_descriptor>.size else {
            throw fail("descriptor is \(size) bytes; ABI \(major).\(minor) requires at least \(MemoryLayout<is_plugin_descriptor>.size)")
        }
        let d = raw.pointee
        guard d.create != nil, d.decode != nil, d.last_error != nil else { throw fail("descriptor lacks create, decode or last_error") }

        // 10. The name it reports is the one its file name promised.
        guard let namePointer = d.name else { throw fail("descriptor has no name") }
        let name = String(cString: namePointer)
        if let why = Self.invalidName(name) { throw fail("invalid plugin name '\(name)': \(why)") }
        guard name == candidate.name else {
            throw fail("reports the name \(name) but its file name gives \(candidate.name); rename the file libinfrasight-\(name).so")
        }

        // 11. Tables.
        guard d.table_count > 0, let tableList = d.tables else { throw fail("declares no table") }
        var tables: [TableSchema] = []
        for i in 0..<Int(d.table_count) {
            let t = tableList[i]
            let tableName = t.name.map { String(cString: $0) } ?? "#\(i)"
            guard let ddl = t.ddl else { throw fail("table \(tableName) has no DDL") }
            do {
                let schema = try TableSchema(ddl: String(cString: ddl))
                guard schema.qualifiedName == tableName || schema.name == tableName else {
                    throw DDLError("DDL creates \(schema.qualifiedName), not \(tableName)")
                }
                tables.append(schema)
            } catch {
                throw fail("bad DDL for table \(tableName): \(error)")
            }
        }
        return LoadedPlugin(path: candidate.path, sha256: candidate.sha256, descriptor: raw, tables: tables)
    }

    /// Both steps on one file, for callers that load every file they check.
    public mutating func load(_ path: String) throws(PluginLoadError) -> LoadedPlugin {
        try load(check(path))
    }
}

extension Result {
    fileprivate func mapError(_ transform: (String) -> PluginLoadError) throws(PluginLoadError) where Failure == ELFCheck.Failure {
        if case .failure(let f) = self { throw transform(f.reason) }
    }
}

/// The ELF header check, before anything is mapped.
enum ELFCheck {
    struct Failure: Error { let reason: String }

    #if arch(x86_64)
    static let machine: UInt16 = 62 // EM_X86_64
    #elseif arch(arm64)
    static let machine: UInt16 = 183 // EM_AARCH64
    #else
    static let machine: UInt16 = 0
    #endif

    static func check(_ data: Data) -> Result<Void, Failure> {
        guard data.count >= 64, data.prefix(4).elementsEqual([0x7f, 0x45, 0x4c, 0x46]) else {
            return .failure(Failure(reason: "not an ELF file"))
        }
        let bytes = [UInt8](data.prefix(64))
        guard bytes[4] == 2, bytes[5] == 1 else { return .failure(Failure(reason: "not a 64-bit little-endian ELF file")) }
        let type = UInt16(bytes[16]) | UInt16(bytes[17]) << 8
        guard type == 3 else { return .failure(Failure(reason: "not a shared object (ELF type \(type))")) }
        let machine = UInt16(bytes[18]) | UInt16(bytes[19]) << 8
        guard machine == Self.machine else { return .failure(Failure(reason: "built for another machine (ELF machine \(machine))")) }
        return checkLayout(data)
    }

    /// The dynamic loader maps segments without checking them against the file size: a
    /// truncated library kills the process with SIGBUS inside dlopen. So every header
    /// table and every loaded segment must lie inside the file before dlopen sees it.
    static func checkLayout(_ data: Data) -> Result<Void, Failure> {
        let size = UInt64(data.count)
        func u16(_ o: Int) -> UInt64 { UInt64(data[data.startIndex + o]) | UInt64(data[data.startIndex + o + 1]) << 8 }
        func u32(_ o: Int) -> UInt64 { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> UInt64 { u32(o) | u32(o + 4) << 32 }
        let phoff = u64(32), shoff = u64(40)
        let phentsize = u16(54), phnum = u16(56), shentsize = u16(58), shnum = u16(60)
        guard phentsize >= 56, phoff <= size, phnum * phentsize <= size - phoff else {
            return .failure(Failure(reason: "truncated or malformed ELF: the program headers lie outside the file"))
        }
        if shnum > 0 {
            guard shentsize >= 64, shoff <= size, shnum * shentsize <= size - shoff else {
                return .failure(Failure(reason: "truncated or malformed ELF: the section headers lie outside the file (\(size) bytes)"))
            }
        }
        for i in 0..<Int(phnum) {
            let base = Int(phoff) + i * Int(phentsize)
            let type = u32(base)
            guard type == 1 || type == 2 else { continue } // PT_LOAD, PT_DYNAMIC
            let offset = u64(base + 8), fileSize = u64(base + 32)
            guard offset <= size, fileSize <= size - offset else {
                return .failure(Failure(reason: "truncated or malformed ELF: segment \(i) ends at byte \(offset &+ fileSize), past the end of the file (\(size) bytes)"))
            }
        }
        return .success(())
    }
}
