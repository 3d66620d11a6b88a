import CChdbADBC
import Foundation
import Synchronization
import Glibc
import InfraSightCore

/// Finds and loads embedded ClickHouse: the chdb-core wheel's `_chdb.abi3.so`, driven
/// through its ADBC entry point `chdb_adbc_init`.
///
/// Where it looks, in order: `$INFRASIGHT_CHDB_LIBRARY`, the config's
/// `storage.chdb_library`, `.chdb/chdb/_chdb.abi3.so` in the directory holding the
/// executable or any of its parents (where scripts/setup.sh installs the pinned wheel),
/// `/usr/lib/infrasight/chdb/_chdb.abi3.so`.
///
/// Loading rules (measured, ENVIRONMENT.md): libpython3.11 is loaded first with
/// RTLD_GLOBAL (the library needs its symbols; Python is never started), then the library
/// with RTLD_DEEPBIND, so it binds its own C++ runtime instead of the one Swift loaded
/// (without it, any query error kills the process).
///
/// Trust: the library runs as root inside infrasight, so before dlopen it must pass the
/// plugin files' owner and mode checks (`TrustedFile`: owned by root or the current user,
/// neither it nor any directory above it writable by group or others). It is then loaded
/// by its resolved path, not through the checked descriptor as plugins are, because it
/// finds its own dependencies through `$ORIGIN/../chdb_core.libs`, which /proc/self/fd
/// would break; the directories just checked are not writable by anyone else, so the
/// path still names the checked file.
public enum ChdbLibrary {
    public static let pinnedVersion = "26.9.0"
    public static let environmentVariable = "INFRASIGHT_CHDB_LIBRARY"
    public static let installHint = "install it with `sudo scripts/setup.sh` (pip install --target .chdb chdb-core==\(pinnedVersion)), or point \(environmentVariable) or storage.chdb_library at its _chdb.abi3.so"

    /// The initializer, once the library is loaded (it stays loaded for the process).
    private static let loaded = Mutex<is_adbc_driver_init_fn?>(nil)

    /// The library path that would be used, or nil.
    public static func locate(configured: String?) -> String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment[environmentVariable], !env.isEmpty { candidates.append(env) }
        if let configured { candidates.append(configured) }
        if let exe = Bundle.main.executablePath {
            var dir = URL(fileURLWithPath: exe).resolvingSymlinksInPath().deletingLastPathComponent()
            for _ in 0..<6 {
                candidates.append(dir.appendingPathComponent(".chdb/chdb/_chdb.abi3.so").path)
                dir.deleteLastPathComponent()
            }
        }
        candidates.append("/usr/lib/infrasight/chdb/_chdb.abi3.so")
        // An explicit setting that points nowhere is an error, not a reason to look elsewhere.
        if let first = candidates.first, ProcessInfo.processInfo.environment[environmentVariable] != nil || configured != nil {
            return first
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// Loads the library once per process and returns its ADBC driver initializer.
    static func load(configured: String?) throws(StorageError) -> is_adbc_driver_init_fn {
        try loaded.withLock { (loaded: inout is_adbc_driver_init_fn?) throws(StorageError) -> is_adbc_driver_init_fn in
            if let loaded { return loaded }
            let initialize = try open(configured: configured)
            loaded = initialize
            return initialize
        }
    }

    private static func open(configured: String?) throws(StorageError) -> is_adbc_driver_init_fn {
        guard let path = locate(configured: configured) else {
            throw StorageError("embedded ClickHouse (chdb-core) is not installed; \(installHint)")
        }
        guard FileManager.default.fileExists(atPath: path) else {
            throw StorageError("embedded ClickHouse library \(path) does not exist; \(installHint)")
        }
        let realPath: String
        do {
            let trusted = try TrustedFile.open(path, finalLink: .follow)
            close(trusted.fd)
            realPath = trusted.realPath
        } catch {
            throw StorageError("embedded ClickHouse library \(path) is refused: \(error.reason)")
        }
        if dlopen("libpython3.11.so.1.0", RTLD_NOW | RTLD_GLOBAL) == nil {
            throw StorageError("embedded ClickHouse needs libpython3.11.so.1.0 (apt-get install libpython3.11): \(dlerror().map { String(cString: $0) } ?? "")")
        }
        guard let handle = dlopen(realPath, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND) else {
            throw StorageError("cannot load embedded ClickHouse from \(path): \(dlerror().map { String(cString: $0) } ?? "")")
        }
        guard let symbol = dlsym(handle, "chdb_adbc_init") else {
            throw StorageError("\(path) has no chdb_adbc_init: not a chdb-core \(pinnedVersion) library")
        }
        return unsafeBitCast(symbol, to: is_adbc_driver_init_fn.self)
    }
}

/// A storage failure, printed as one line. The case decides what the caller does:
/// retry (`unavailable`, `noSpace`), make room first (`noSpace`), or give up and say why.
public enum StorageError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The store could not be reached or answered that it cannot serve now: retrying
    /// later may succeed.
    case unavailable(String)
    /// The store has no room (its file system is full, or ClickHouse said
    /// NOT_ENOUGH_SPACE): retryable once the disk budget has dropped the oldest rows.
    case noSpace(String)
    /// The store refused the credentials.
    case unauthorized(String)
    /// ClickHouse refused the statement, with its error code.
    case refused(code: ClickHouseCode, message: String)
    /// Anything else: what went wrong, for a person.
    case failed(String)

    /// A failure that is none of the particular cases.
    public init(_ description: String) { self = .failed(description) }

    public var description: String {
        switch self {
        case .unavailable(let m): "unavailable: \(m)"
        case .noSpace(let m): "unavailable: no space left: \(m)"
        case .unauthorized(let m), .failed(let m): m
        case .refused(_, let m): m
        }
    }

    /// Whether retrying the same operation later may succeed.
    public var retryable: Bool {
        switch self {
        case .unavailable, .noSpace: true
        case .unauthorized, .refused, .failed: false
        }
    }

    /// The store is out of disk: the writer asks the disk budget to make room first.
    public var isNoSpace: Bool {
        if case .noSpace = self { return true }
        return false
    }

    /// The same failure with `context` before its message ("adding columns to t: ...").
    public func prefixed(_ context: String) -> StorageError {
        switch self {
        case .unavailable(let m): .unavailable(context + m)
        // Retryable, said as before ("unavailable: CONTEXT no space left: ...").
        case .noSpace(let m): .unavailable(context + "no space left: " + m)
        case .unauthorized(let m): .unauthorized(context + m)
        case .refused(let code, let m): .refused(code: code, message: context + m)
        case .failed(let m): .failed(context + m)
        }
    }

    /// Whether ClickHouse's error says it ran out of disk, decided by the error's own code
    /// (the first `Code: N.`, which ClickHouse writes before any text it quotes): 243
    /// NOT_ENOUGH_SPACE, or a failed write (74 CANNOT_WRITE_TO_FILE_DESCRIPTOR, 75
    /// CANNOT_FSYNC) with errno 28. Never from words elsewhere in the message: a row's
    /// value quoted in a parse error ("Cannot parse JSON ... No space left") would let an
    /// agent make the store drop data.
    public static func saysNoSpace(_ message: String) -> Bool {
        guard let code = leadingCode(message).map(ClickHouseCode.init(rawValue:)) else { return false }
        return code == .notEnoughSpace || ([.cannotWriteToFileDescriptor, .cannotFsync].contains(code) && message.contains("errno: 28,"))
    }

    /// The N of the first "Code: N" in a ClickHouse error message.
    public static func leadingCode(_ message: String) -> Int? {
        guard let r = message.range(of: "Code: ") else { return nil }
        return Int(message[r.upperBound...].prefix(while: { $0.isNumber }))
    }
}

/// ClickHouse's error codes that InfraSight decides on (src/Common/ErrorCodes.cpp), by
/// name; any other code keeps its number.
public struct ClickHouseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public var description: String { "\(rawValue)" }

    public static let cannotParseText = ClickHouseCode(rawValue: 6)
    public static let sizesOfColumnsDoesntMatch = ClickHouseCode(rawValue: 9)
    public static let cannotParseInputAssertionFailed = ClickHouseCode(rawValue: 27)
    public static let cannotReadAllData = ClickHouseCode(rawValue: 33)
    public static let unknownIdentifier = ClickHouseCode(rawValue: 47)
    public static let typeMismatch = ClickHouseCode(rawValue: 53)
    public static let unknownTable = ClickHouseCode(rawValue: 60)
    public static let syntaxError = ClickHouseCode(rawValue: 62)
    public static let cannotConvertType = ClickHouseCode(rawValue: 70)
    public static let cannotWriteToFileDescriptor = ClickHouseCode(rawValue: 74)
    public static let cannotFsync = ClickHouseCode(rawValue: 75)
    public static let incorrectData = ClickHouseCode(rawValue: 117)
    public static let unknownUser = ClickHouseCode(rawValue: 192)
    public static let wrongPassword = ClickHouseCode(rawValue: 193)
    public static let requiredPassword = ClickHouseCode(rawValue: 194)
    public static let notEnoughSpace = ClickHouseCode(rawValue: 243)
    public static let authenticationFailed = ClickHouseCode(rawValue: 516)

    /// Codes for credentials the server will not take: retrying does not help.
    public static let credentials: Set<ClickHouseCode> = [.unknownUser, .wrongPassword, .requiredPassword, .authenticationFailed]
    /// Codes for a statement or data the server refuses as such (even when it answers
    /// HTTP 500): the same request will be refused again.
    public static let refusedRequest: Set<ClickHouseCode> = [
        .syntaxError, .unknownTable, .unknownIdentifier, .cannotParseInputAssertionFailed, .cannotReadAllData, .typeMismatch,
        .cannotConvertType, .incorrectData,
    ]
}
