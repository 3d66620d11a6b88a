import CInfraSightEvent
import InfraSightCore
import Testing
import TracingRecord

/// Builds `tracing` records: opens and chmods end where argv starts (as the BPF side
/// sends them), execs carry the whole struct.
enum TracingRecords {
    static let argvOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.argv)!
    static let filenameOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.filename)!
    static let filenameLenOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.filename_len)!
    static let argvLenOffset = MemoryLayout<is_tracing_event>.offset(of: \is_tracing_event.argv_len)!
    static let fullSize = MemoryLayout<is_tracing_event>.size

    static func kind(_ k: is_tracing_kind) -> UInt16 { UInt16(k.rawValue) }

    /// A record of `kind` on `filename` (its length from the kernel is `filenameLength`,
    /// the byte count by default); exec kinds carry `argv` (NUL-separated).
    static func event(
        _ kind: is_tracing_kind, filename: [UInt8], filenameLength: Int? = nil, flags: UInt64 = 0, mode: UInt32 = 0,
        fd: Int32 = -100, argv: [UInt8] = [], argc: UInt32 = 0, argvTruncated: Bool = false, returnCode: Int64 = 0
    ) -> (header: is_event_header, bytes: [UInt8]) {
        let exec = kind == IS_TRACING_EXECVE || kind == IS_TRACING_EXECVEAT
        let size = exec ? fullSize : argvOffset
        var e = is_tracing_event()
        e.hdr = Records.header(kind: Self.kind(kind), size: size, returnCode: returnCode)
        e.flags = flags
        e.mode = mode
        e.fd = fd
        Records.set(&e.filename, filename)
        e.filename_len = UInt32(filenameLength ?? filename.count)
        Records.set(&e.argv, argv)
        e.argv_len = UInt32(argv.count)
        e.argc = argc
        e.argv_truncated = argvTruncated ? 1 : 0
        e.filename_ptr = 0x7ffd_dead_beef // kernel side only: never a column
        return (e.hdr, Records.bytes(of: e, count: size))
    }

    static func open(_ path: String = "/etc/shadow") -> (header: is_event_header, bytes: [UInt8]) {
        event(IS_TRACING_OPENAT, filename: Array(path.utf8), flags: 0x80000 /* O_RDONLY|O_CLOEXEC */, returnCode: 3)
    }
}

/// The `tracing` decoder on synthetic records: exact rows for every syscall kind, argv
/// joined as stored, and every malformed record counted as a decode error.
@Suite struct TracingDecoderTests {
    typealias R = TracingRecords

    @Test func anOpenatRecordBecomesARowWithEveryColumnExact() throws {
        let d = try DecoderHarness("tracing")
        let (h, bytes) = R.event(IS_TRACING_OPENAT, filename: Array("/etc/shadow".utf8), flags: 0o100 | 0o2 | 0x80000,
                                 mode: 0o640, fd: 7, returnCode: 3)
        let outcome = d.feed(bytes)
        expectSame(outcome, d.expectedRow(h, plugin: [
            "filename": .string("/etc/shadow"), "event_type": .string("open"), "syscall": .string("openat"),
            "flags": .uint(0o100 | 0o2 | 0x80000), "mode": .uint(0o640), "fd": .int(7),
        ]))
    }

    static let kinds: [(is_tracing_kind, String, String)] = [
        (IS_TRACING_EXECVE, "execve", "execve"), (IS_TRACING_EXECVEAT, "execve", "execveat"),
        (IS_TRACING_OPEN, "open", "open"), (IS_TRACING_OPENAT, "open", "openat"), (IS_TRACING_OPENAT2, "open", "openat2"),
        (IS_TRACING_CREAT, "open", "creat"), (IS_TRACING_CHMOD, "chmod", "chmod"), (IS_TRACING_FCHMOD, "chmod", "fchmod"),
        (IS_TRACING_FCHMODAT, "chmod", "fchmodat"), (IS_TRACING_FCHMODAT2, "chmod", "fchmodat2"),
    ]

    @Test(arguments: kinds)
    func eachKindNamesItsFamilyAndItsSyscall(kind: is_tracing_kind, eventType: String, syscall: String) throws {
        let d = try DecoderHarness("tracing")
        let (h, bytes) = R.event(kind, filename: Array("/srv/f".utf8), flags: 0x1000, mode: 0o4755, fd: -100, returnCode: -13)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "filename": .string("/srv/f"), "event_type": .string(eventType), "syscall": .string(syscall),
            "flags": .uint(0x1000), "mode": .uint(0o4755), "fd": .int(-100),
        ]))
    }

    @Test func fchmodNamesNoPathAndKeepsItsDescriptor() throws {
        let d = try DecoderHarness("tracing")
        let (h, bytes) = R.event(IS_TRACING_FCHMOD, filename: [], mode: 0o600, fd: 5)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "filename": .string(""), "event_type": .string("chmod"), "syscall": .string("fchmod"),
            "flags": .uint(0), "mode": .uint(0o600), "fd": .int(5),
        ]))
    }

    @Test func anExecveRecordStoresItsArgumentsSpaceSeparated() throws {
        let d = try DecoderHarness("tracing")
        let (h, bytes) = R.event(IS_TRACING_EXECVE, filename: Array("/usr/bin/ls".utf8), fd: 0,
                                 argv: Array("ls\0-la\0/tmp\0".utf8), argc: 3)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "filename": .string("/usr/bin/ls"), "event_type": .string("execve"), "syscall": .string("execve"),
            "flags": .uint(0), "mode": .uint(0), "fd": .int(0), "argv": .string("ls -la /tmp"),
        ]))
    }

    static let argvCases: [(argv: String, truncated: Bool, stored: String)] = [
        ("ls\0-la\0/tmp\0", true, "ls -la /tmp ..."),  // the kernel side cut it
        ("sh\0-c\0\0", false, "sh -c"),                // trailing terminators dropped
        ("a\0\0b\0", false, "a  b"),                   // an empty argument stays a gap
        ("no-terminator", false, "no-terminator"),
        ("\0\0\0", true, " ..."),                       // only terminators, but cut
    ]

    @Test(arguments: argvCases)
    func argvIsJoinedAsPromised(argv: String, truncated: Bool, stored: String) throws {
        let d = try DecoderHarness("tracing")
        let (_, bytes) = R.event(IS_TRACING_EXECVEAT, filename: Array("/bin/x".utf8), argv: Array(argv.utf8), argvTruncated: truncated)
        #expect(d.feed(bytes).cells["argv"] == .string(stored))
    }

    @Test func aFullArgvWithoutTerminatorIsKeptWhole() throws {
        let d = try DecoderHarness("tracing")
        let argv = [UInt8](repeating: UInt8(ascii: "x"), count: Int(IS_ARGV_LEN))
        let (_, bytes) = R.event(IS_TRACING_EXECVE, filename: Array("/bin/x".utf8), argv: argv, argvTruncated: true)
        #expect(d.feed(bytes).cells["argv"] == .string(String(repeating: "x", count: Int(IS_ARGV_LEN)) + " ..."))
    }

    @Test func invalidUTF8InArgvIsRepaired() throws {
        let d = try DecoderHarness("tracing")
        let (_, bytes) = R.event(IS_TRACING_EXECVE, filename: Array("/bin/x".utf8), argv: Array("x\0".utf8) + [0xFF, 0xC3, 0] + Array("\u{E9}\0".utf8))
        #expect(d.feed(bytes).cells["argv"] == .string("x \u{FFFD}\u{FFFD} \u{E9}"))
    }

    @Test func argvPastTheRecordOrPastItsFieldIsADecodeError() throws {
        let d = try DecoderHarness("tracing")
        let (_, exec) = R.event(IS_TRACING_EXECVE, filename: Array("/bin/x".utf8), argv: Array("x\0y\0".utf8))
        // argv_len says 4 bytes, the record declares (and has) only 3 of them.
        #expect(d.feed(Records.truncated(exec, to: R.argvOffset + 3)) == .decodeError)
        // An open record (no argv member) that claims argv bytes.
        let (_, open) = R.open()
        #expect(d.feed(Records.patch(open, at: R.argvLenOffset, UInt32(1))) == .decodeError)
        // argv_len beyond IS_ARGV_LEN, in a record long enough to hold it.
        let long = Records.extended(exec, to: R.fullSize + 64)
        #expect(d.feed(Records.patch(long, at: R.argvLenOffset, UInt32(IS_ARGV_LEN) + 1)) == .decodeError)
        // The exact fit still decodes.
        #expect(d.feed(Records.truncated(exec, to: R.argvOffset + 4)).cells["argv"] == .string("x y"))
    }

    @Test func aFilenameIsTheKernelsLengthNotUpToItsNUL() throws {
        let d = try DecoderHarness("tracing")
        // Shorter than the text: the length wins (the kernel read only this much).
        let (_, cut) = R.event(IS_TRACING_OPENAT, filename: Array("/etc/passwd".utf8), filenameLength: 4)
        #expect(d.feed(cut).cells["filename"] == .string("/etc"))
        // No NUL anywhere in the field: the longest length the field allows is kept.
        let full = [UInt8](repeating: UInt8(ascii: "a"), count: Int(IS_PATH_LEN))
        let (_, noNUL) = R.event(IS_TRACING_OPENAT, filename: full, filenameLength: Int(IS_PATH_LEN) - 1)
        #expect(d.feed(noNUL).cells["filename"] == .string(String(repeating: "a", count: Int(IS_PATH_LEN) - 1)))
    }

    @Test(arguments: [Int(IS_PATH_LEN), Int(IS_PATH_LEN) + 1, 0xFFFF, Int(UInt32.max)])
    func aFilenameLengthPastItsFieldIsADecodeError(length: Int) throws {
        let d = try DecoderHarness("tracing")
        let (_, bytes) = R.event(IS_TRACING_OPENAT, filename: Array("/etc/passwd".utf8), filenameLength: length)
        #expect(d.feed(bytes) == .decodeError)
    }

    @Test(arguments: BadUTF8.cases)
    func invalidUTF8InAFilenameIsRepaired(bytes name: [UInt8], stored: String) throws {
        let d = try DecoderHarness("tracing")
        let (h, bytes) = R.event(IS_TRACING_CREAT, filename: name, mode: 0o644, fd: -100, returnCode: 4)
        expectSame(d.feed(bytes), d.expectedRow(h, plugin: [
            "filename": .string(stored), "event_type": .string("open"), "syscall": .string("creat"),
            "flags": .uint(0), "mode": .uint(0o644), "fd": .int(-100),
        ]))
    }

    @Test func anExecRecordLongerThanItsStructFromANewerProducerStillDecodes() throws {
        let d = try DecoderHarness("tracing")
        let (h, exec) = R.event(IS_TRACING_EXECVE, filename: Array("/bin/true".utf8), argv: Array("true\0".utf8))
        expectSame(d.feed(Records.extended(exec, to: R.fullSize + 32)), d.expectedRow(h, plugin: [
            "filename": .string("/bin/true"), "event_type": .string("execve"), "syscall": .string("execve"),
            "flags": .uint(0), "mode": .uint(0), "fd": .int(-100), "argv": .string("true"),
        ]))
    }

    @Test func aRowKeepsNothingOfThePreviousRecord() throws {
        let d = try DecoderHarness("tracing")
        let (_, exec) = R.event(IS_TRACING_EXECVE, filename: Array("/bin/sh".utf8), argv: Array("sh\0".utf8))
        #expect(d.feed(exec).cells["argv"] == .string("sh"))
        // Refused after it wrote event_type and syscall: nothing of it may leak.
        let (_, bad) = R.event(IS_TRACING_CHMOD, filename: Array("/x".utf8), filenameLength: Int(IS_PATH_LEN))
        #expect(d.feed(bad) == .decodeError)
        let (h, open) = R.open("/etc/hosts")
        expectSame(d.feed(open), d.expectedRow(h, plugin: [
            "filename": .string("/etc/hosts"), "event_type": .string("open"), "syscall": .string("openat"),
            "flags": .uint(0x80000), "mode": .uint(0), "fd": .int(-100),
        ]))
        #expect(d.channel.counters.received.load(ordering: .relaxed) == 3)
        #expect(d.channel.counters.decodeErrors.load(ordering: .relaxed) == 1)
        #expect(d.channel.counters.rows.load(ordering: .relaxed) == 2)
    }
}

extension TracingRecords {
    static var sample: Sample {
        let (h, bytes) = open()
        return Sample(
            header: h, bytes: bytes,
            columns: ["filename": .string("/etc/shadow"), "event_type": .string("open"), "syscall": .string("openat"),
                      "flags": .uint(0x80000), "mode": .uint(0), "fd": .int(-100)],
            fixedPart: argvOffset, kinds: kind(IS_TRACING_EXECVE)...kind(IS_TRACING_FCHMODAT2))
    }
}
