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
/// equal, minor <= ours); 9. descriptor size (at least ABI 1.0's) and the required
/// functions; 10. a valid name equal to NAME (so name pins and `plugins.enabled`, applied
/// to NAME before loading, apply to the plugin that runs); 11. at least one table, each
/// with a DDL that parses and derived columns that fit it (`DerivedColumn.problem`);
/// 12. options. Every struct and array element is read by its own `struct_size`, as
/// infrasight_plugin.h says (`ABIStructs`).
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
        let size = Int(UnsafeRawPointer(raw).loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard size >= ABIStructs.descriptorMinimum else {
            throw fail("descriptor is \(size) bytes; ABI \(major).\(minor) requires at least \(ABIStructs.descriptorMinimum)")
        }
        let d = ABIStructs.descriptor(UnsafeRawPointer(raw), size: size)
        guard d.create != nil, d.decode != nil, d.last_error != nil else { throw fail("descriptor lacks create, decode or last_error") }

        // 10. The name it reports is the one its file name promised.
        guard let namePointer = d.name else { throw fail("descriptor has no name") }
        let name = String(cString: namePointer)
        if let why = Self.invalidName(name) { throw fail("invalid plugin name '\(name)': \(why)") }
        guard name == candidate.name else {
            throw fail("reports the name \(name) but its file name gives \(candidate.name); rename the file libinfrasight-\(name).so")
        }

        // 11. Tables, walked by each element's struct_size, and their derived columns.
        guard d.table_count > 0, let tableList = d.tables else { throw fail("declares no table") }
        var tables: [TableSchema] = []
        var derived: [String: [DerivedColumn]] = [:]
        let tableElements: [(element: is_table_descriptor, size: Int)]
        do {
            tableElements = try ABIStructs.elements(
                UnsafeRawPointer(tableList), count: Int(d.table_count), limit: 256, what: "table", minimum: ABIStructs.tableMinimum,
                read: ABIStructs.table)
        } catch {
            throw fail(error.description)
        }
        for (i, (t, _)) in tableElements.enumerated() {
            let tableName = t.name.map { String(cString: $0) } ?? "#\(i)"
            guard let ddl = t.ddl else { throw fail("table \(tableName) has no DDL") }
            let schema: TableSchema
            do {
                schema = try TableSchema(ddl: String(cString: ddl))
                guard schema.qualifiedName == tableName || schema.name == tableName else {
                    throw DDLError("DDL creates \(schema.qualifiedName), not \(tableName)")
                }
            } catch {
                throw fail("bad DDL for table \(tableName): \(error)")
            }
            let declared: [DerivedColumn]
            do {
                declared = try ABIStructs.derivedColumns(of: t, in: schema)
            } catch {
                throw fail("bad derived columns for table \(schema.qualifiedName): \(error.description)")
            }
            tables.append(schema)
            derived[schema.qualifiedName] = declared
        }

        // 12. Options, walked by each element's struct_size.
        var options: [PluginOptionInfo] = []
        if let list = d.options, d.option_count > 0 {
            do {
                options = try ABIStructs.elements(
                    UnsafeRawPointer(list), count: Int(d.option_count), limit: 1024, what: "option", minimum: ABIStructs.optionMinimum,
                    read: ABIStructs.option
                ).compactMap { o, _ in
                    o.name.map {
                        PluginOptionInfo(
                            name: String(cString: $0), type: o.type.map { String(cString: $0) } ?? "string",
                            description: o.description.map { String(cString: $0) } ?? "",
                            defaultValue: o.default_value.map { String(cString: $0) })
                    }
                }
            } catch {
                throw fail(error.description)
            }
        }
        return LoadedPlugin(path: candidate.path, sha256: candidate.sha256, descriptor: d, tables: tables, derivedColumns: derived, options: options)
    }

    /// Both steps on one file, for callers that load every file they check.
    public mutating func load(_ path: String) throws(PluginLoadError) -> LoadedPlugin {
        try load(check(path))
    }
}

/// Reads the plugin's C structs as infrasight_plugin.h prescribes: a struct is copied into
/// the host's layout up to its `struct_size`, a member the size does not cover whole is
/// absent (zero), and arrays are walked by each element's `struct_size`.
enum ABIStructs {
    /// Each struct's size in ABI 1.0: the least `struct_size` accepted.
    static let descriptorMinimum = MemoryLayout<is_plugin_descriptor>.offset(of: \.create_with_input)!
    static let tableMinimum = MemoryLayout<is_table_descriptor>.offset(of: \.derived_columns)!
    static let optionMinimum = MemoryLayout<is_option_descriptor>.stride
    /// is_derived_column came in 1.1, whole.
    static let derivedMinimum = MemoryLayout<is_derived_column>.stride
    /// The largest element `struct_size` accepted: larger is a corrupt array.
    static let elementLimit = 65536

    /// Why an array cannot be read.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `zero` with the first `size` bytes (at most its own size) copied from `p`.
    static func copy<T>(_ p: UnsafeRawPointer, size: Int, into zero: T) -> T {
        var value = zero
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p, count: min(size, $0.count))) }
        return value
    }

    /// Whether a struct of `size` bytes holds the member at `offset`, `length` bytes, whole.
    static func covers(_ size: Int, _ offset: Int, _ length: Int) -> Bool { offset + length <= size }

    static func descriptor(_ p: UnsafeRawPointer, size: Int) -> is_plugin_descriptor {
        var d = copy(p, size: size, into: is_plugin_descriptor())
        if !covers(size, MemoryLayout<is_plugin_descriptor>.offset(of: \.create_with_input)!, MemoryLayout<UnsafeRawPointer>.size) {
            d.create_with_input = nil
        }
        if !covers(size, MemoryLayout<is_plugin_descriptor>.offset(of: \.stop)!, MemoryLayout<UnsafeRawPointer>.size) { d.stop = nil }
        return d
    }

    /// A table descriptor; derived_columns and its count are absent unless both are covered.
    static func table(_ p: UnsafeRawPointer, size: Int) -> is_table_descriptor {
        var t = copy(p, size: size, into: is_table_descriptor())
        if !hasDerivedColumns(size) {
            t.derived_columns = nil
            t.derived_column_count = 0
        }
        return t
    }

    static func hasDerivedColumns(_ size: Int) -> Bool {
        covers(size, MemoryLayout<is_table_descriptor>.offset(of: \.derived_column_count)!, MemoryLayout<UInt32>.size)
    }

    static func option(_ p: UnsafeRawPointer, size: Int) -> is_option_descriptor { copy(p, size: size, into: is_option_descriptor()) }

    static func derived(_ p: UnsafeRawPointer, size: Int) -> is_derived_column { copy(p, size: size, into: is_derived_column()) }

    /// The `count` elements of the array at `base`: element i + 1 starts `struct_size` of
    /// element i bytes after it. Each size must lie in `minimum...elementLimit`.
    static func elements<T>(
        _ base: UnsafeRawPointer, count: Int, limit: Int, what: String, minimum: Int, read: (UnsafeRawPointer, Int) -> T
    ) throws(Failure) -> [(element: T, size: Int)] {
        guard count <= limit else { throw Failure(description: "declares \(count) \(what)s (at most \(limit))") }
        var result: [(T, Int)] = []
        var p = base
        for i in 0..<count {
            let size = Int(p.loadUnaligned(as: UInt32.self))
            guard size >= minimum, size <= elementLimit else {
                throw Failure(description: "\(what) #\(i + 1) has struct_size \(size); it must be \(minimum) to \(elementLimit)")
            }
            result.append((read(p, size), size))
            p += size
        }
        return result
    }

    /// A table's derived columns: as declared when its struct has the member, else the
    /// host's fallback for plugins built before ABI 1.1 (`DerivedColumn.standard(in:)`).
    static func derivedColumns(of table: is_table_descriptor, in schema: TableSchema) throws(Failure) -> [DerivedColumn] {
        let size = Int(table.struct_size)
        guard hasDerivedColumns(size) else { return DerivedColumn.standard(in: schema) }
        guard table.derived_column_count > 0 else { return [] }
        guard let list = table.derived_columns else { throw Failure(description: "derived_columns is NULL with a count of \(table.derived_column_count)") }
        var declared: [DerivedColumn] = []
        for (i, (c, _)) in try elements(
            UnsafeRawPointer(list), count: Int(table.derived_column_count), limit: 1000, what: "derived column", minimum: derivedMinimum, read: derived
        ).enumerated() {
            guard let column = c.column, let source = c.source else { throw Failure(description: "derived column #\(i + 1) lacks its column or source") }
            let name = String(cString: column)
            let kind: DerivedColumn.Kind
            switch c.kind {
            case IS_DERIVE_MILLISECONDS_FROM_NANOSECONDS: kind = .millisecondsFromNanoseconds
            case IS_DERIVE_TIME_FROM_MILLISECONDS: kind = .timeFromMilliseconds
            case IS_DERIVE_CODE_NAME:
                guard let codes = c.code_table else { throw Failure(description: "\(name): a code name needs a code_table") }
                kind = .codeName(table: String(cString: codes))
            default: throw Failure(description: "\(name): unknown kind \(c.kind)")
            }
            declared.append(DerivedColumn(column: name, source: String(cString: source), kind: kind))
        }
        if let why = DerivedColumn.problem(declared, in: schema) { throw Failure(description: why) }
        return declared
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
