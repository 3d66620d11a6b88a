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

/// Checks and loads plugin files. Checks run in this order, and the first that fails
/// refuses the file with one line:
///  1. a regular file (a symlink is followed only when its target is inside a plugin dir);
///  2. owned by root or the current user; neither the file nor its directory writable by
///     group or others;
///  3. an ELF shared object for this machine;
///  4. dlopen(RTLD_NOW | RTLD_LOCAL) succeeds and the entry symbol is present;
///  5. the descriptor's magic; 6. ABI (major equal, minor <= ours); 7. descriptor size;
///  8. a valid, unique name; 9. at least one table, each with a DDL that parses;
///  10. the SHA-256 pin, when the config has one for that name.
/// A loaded plugin is never dlclosed. Not thread-safe; used from the control thread.
public struct PluginLoader {
    public let pluginDirs: [String]
    public let pins: [String: String]
    private(set) var loadedByName: [String: String] = [:]

    public init(pluginDirs: [String], pins: [String: String]) {
        self.pluginDirs = pluginDirs
        self.pins = pins
    }

    /// Loads one file, recording its name so a later file with the same name is refused.
    public mutating func load(_ path: String) throws(PluginLoadError) -> LoadedPlugin {
        func fail(_ reason: String) -> PluginLoadError { PluginLoadError(path: path, reason: reason) }

        // 1. Regular file; symlinks only into a plugin directory.
        var st = stat()
        guard lstat(path, &st) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
        var real = path
        if (st.st_mode & S_IFMT) == S_IFLNK {
            guard let resolved = realpath(path, nil) else { throw fail("dangling symlink") }
            real = String(cString: resolved)
            free(resolved)
            let dirs = pluginDirs.compactMap { dir -> String? in
                guard let r = realpath(dir, nil) else { return nil }
                defer { free(r) }
                return String(cString: r)
            }
            guard dirs.contains(where: { real.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }) else {
                throw fail("symlink to \(real), which is outside the plugin directories")
            }
            guard stat(real, &st) == 0 else { throw fail("cannot stat \(real)") }
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }

        // 2. Ownership and permissions, as sudo and the module loader insist.
        let me = geteuid()
        guard st.st_uid == 0 || st.st_uid == me else { throw fail("owned by uid \(st.st_uid), not by root or the current user") }
        guard st.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw fail(String(format: "writable by group or others (mode %04o); run chmod go-w", st.st_mode & 0o7777))
        }
        let dir = (real as NSString).deletingLastPathComponent
        var dst = stat()
        guard stat(dir.isEmpty ? "." : dir, &dst) == 0 else { throw fail("cannot stat its directory") }
        guard dst.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw fail(String(format: "its directory %@ is writable by group or others (mode %04o)", dir, dst.st_mode & 0o7777))
        }
        guard dst.st_uid == 0 || dst.st_uid == me else { throw fail("its directory \(dir) is owned by uid \(dst.st_uid), not by root or the current user") }

        // 3. ELF shared object for this machine.
        guard let handle = FileHandle(forReadingAtPath: real) else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        let contents = handle.readDataToEndOfFile()
        try? handle.close()
        try ELFCheck.check(contents).mapError(fail)
        let digest = SHA256.hash(data: contents).map { String(format: "%02x", $0) }.joined()

        // 4. dlopen and the entry symbol. Never dlclosed: the ABI gives plugin memory
        //    process lifetime, and Swift images cannot be unloaded safely.
        _ = dlerror()
        guard let image = dlopen(real, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw fail("cannot load: \(why.replacingOccurrences(of: real + ": ", with: ""))")
        }
        guard let symbol = dlsym(image, IS_PLUGIN_ENTRY_SYMBOL) else {
            throw fail("no entry symbol \(IS_PLUGIN_ENTRY_SYMBOL): not an InfraSight plugin")
        }
        let entry = unsafeBitCast(symbol, to: is_plugin_entry_fn.self)
        guard let raw = entry() else { throw fail("the entry symbol returned no descriptor") }

        // 5-7. The fixed prefix, read before anything else.
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

        // 8. Name.
        guard let namePointer = d.name else { throw fail("descriptor has no name") }
        let name = String(cString: namePointer)
        guard !name.isEmpty, name.utf8.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_" || $0 == "-") }) else {
            throw fail("invalid plugin name '\(name)': use [a-z0-9_-], at most 64 characters")
        }
        if let other = loadedByName[name] { throw fail("duplicate plugin name \(name) (already loaded from \(other))") }

        // 9. Tables.
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

        // 10. Pin.
        if let pin = pins[name], pin != digest {
            throw fail("SHA-256 \(digest) does not match the pin for \(name) in the config (\(pin))")
        }
        loadedByName[name] = path
        return LoadedPlugin(path: path, sha256: digest, descriptor: raw, tables: tables)
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
