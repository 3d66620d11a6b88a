import CLibbpf
import Foundation
import Glibc

/// An opened BPF ELF object (libbpf `struct bpf_object`). Owns the object: programs, maps
/// and links die with it. Not thread-safe: configure, load and attach from one thread.
///
/// Unchecked Sendable: a libbpf object, changed only before it is shared (open, configure,
/// load, attach); after that other threads only read its maps by descriptor and its
/// programs' statistics, which are syscalls.
public final class BPFObject: @unchecked Sendable {
    let raw: OpaquePointer
    public let name: String
    /// Programs skipped before load because their tracepoint does not exist here.
    public private(set) var skipped: [(program: String, target: String)] = []
    private var links: [BPFLink] = []

    /// Opens an object from bytes that must stay valid for the object's lifetime (plugin
    /// descriptors keep theirs until the process exits).
    public init(bytes: UnsafeRawBufferPointer, name: String) throws(BPFError) {
        LibbpfLog.install()
        guard FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") else { throw .noBTF }
        self.name = name
        var opts = bpf_object_open_opts()
        opts.sz = MemoryLayout<bpf_object_open_opts>.size
        let objectName = strdup(name)
        defer { free(objectName) }
        opts.object_name = UnsafePointer(objectName)
        guard let object = bpf_object__open_mem(bytes.baseAddress, bytes.count, &opts), libbpf_get_error(UnsafeRawPointer(object)) == 0 else {
            let log = LibbpfLog.drain().last ?? errnoText(errno)
            throw .open(log)
        }
        raw = object
    }

    deinit {
        links.removeAll()
        bpf_object__close(raw)
    }

    /// The object's programs with their section (attach point) names.
    public var programs: [(name: String, section: String)] {
        var out: [(String, String)] = []
        var prog = bpf_object__next_program(raw, nil)
        while let p = prog {
            out.append((String(cString: bpf_program__name(p)), String(cString: bpf_program__section_name(p))))
            prog = bpf_object__next_program(raw, p)
        }
        return out
    }

    /// Sets a `const volatile` global in .rodata. Must be called before `load()`.
    /// Returns 0, -ENOENT when there is no such variable, -EINVAL on a size mismatch.
    public func setReadOnly(_ variable: String, bytes: UnsafeRawBufferPointer) -> Int32 {
        guard let btf = bpf_object__btf(raw) else { return -ENOENT }
        guard let m = maps.first(where: { String(cString: bpf_map__name($0)).hasSuffix(".rodata") }) else { return -ENOENT }
        let sectionId = btf__find_by_name_kind(btf, ".rodata", 15 /* BTF_KIND_DATASEC (the name is declared twice in the imported headers) */)
        guard sectionId > 0, let section = btf__type_by_id(btf, UInt32(sectionId)) else { return -ENOENT }
        var size = 0
        guard let data = bpf_map__initial_value(m, &size) else { return -ENOENT }
        let count = Int(btf_vlen(section))
        guard let infos = btf_var_secinfos(section) else { return -ENOENT }
        for i in 0..<count {
            let info = infos[i]
            guard let varType = btf__type_by_id(btf, info.type),
                let varName = btf__name_by_offset(btf, varType.pointee.name_off),
                String(cString: varName) == variable
            else { continue }
            guard Int(info.size) == bytes.count, Int(info.offset) + bytes.count <= size else { return -EINVAL }
            // libbpf 1.1 hands out the initial value read-only: patch a copy and
            // set it back, the sanctioned way before load.
            var copy = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
            copy.withUnsafeMutableBytes { ($0.baseAddress! + Int(info.offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            return copy.withUnsafeBytes { bpf_map__set_initial_value(m, $0.baseAddress, size) }
        }
        return -ENOENT
    }

    /// Disables, before load, every tracepoint program whose tracepoint this kernel lacks
    /// (e.g. `open` on arm64, `fchmodat2` before 6.6); `skipped` lists them and
    /// `SkippedTracepoint.explain` says what that means for the rows.
    public func skipMissingTracepoints() {
        var prog = bpf_object__next_program(raw, nil)
        while let p = prog {
            let section = String(cString: bpf_program__section_name(p))
            for prefix in ["tracepoint/", "tp/"] where section.hasPrefix(prefix) {
                let target = String(section.dropFirst(prefix.count))
                if !Tracefs.hasTracepoint(target) {
                    bpf_program__set_autoload(p, false)
                    skipped.append((String(cString: bpf_program__name(p)), target))
                }
            }
            prog = bpf_object__next_program(raw, p)
        }
    }

    /// Loads the object into the kernel (verifier, maps). First asks the kernel for every
    /// feature the object needs, so a kernel without one is refused by name.
    public func load() throws(BPFError) {
        let missing = missingKernelFeatures()
        if !missing.isEmpty { throw .kernelLacks(missing, release: KernelProbe.release) }
        _ = LibbpfLog.drain()
        let rc = bpf_object__load(raw)
        guard rc != 0 else { return }
        let log = LibbpfLog.drain()
        // libbpf prints "prog 'NAME': failed to load" and the verifier log between
        // BEGIN/END PROG LOAD LOG markers. A verifier log means the kernel looked at the
        // program: a rejection, whatever the errno (EACCES and EPERM both occur).
        if let failed = log.last(where: { $0.contains("failed to load") && $0.contains("prog '") }),
            let begin = log.lastIndex(where: { $0.contains("BEGIN PROG LOAD LOG") }),
            let end = log.lastIndex(where: { $0.contains("END PROG LOAD LOG") }), begin < end
        {
            let program = failed.split(separator: "'").dropFirst().first.map(String.init) ?? "?"
            var verifier = log[(begin + 1)..<end].filter { !$0.hasPrefix("processed ") && !$0.hasPrefix("verification time") }
            if verifier.isEmpty { verifier = [errnoText(rc)] }
            if let lacking = helperRefused(verifier, program: program) { throw .kernelLacks([lacking], release: KernelProbe.release) }
            throw .verifierRejected(program: program, log: Array(verifier))
        }
        if rc == -EPERM || rc == -EACCES {
            throw .notPermitted("loading BPF object \(name)")
        }
        throw .load(log.last ?? errnoText(rc))
    }

    /// The feature behind a verifier refusal of a helper call the kernel does not have
    /// (`invalid func unknown#N`, `unknown func bpf_x#N`, `program of this type cannot use
    /// helper bpf_x#N`), when the kernel confirms it lacks that helper: calls inside
    /// subprograms are not in the instructions read before load.
    private func helperRefused(_ verifier: [String], program: String) -> KernelFeature? {
        guard let line = verifier.last(where: { $0.contains("func ") || $0.contains("cannot use helper") }),
            let hash = line.lastIndex(of: "#"), let id = Int32(line[line.index(after: hash)...].prefix { $0.isNumber }),
            let p = bpf_object__find_program_by_name(raw, program)
        else { return nil }
        let requirement = KernelRequirement.helper(id, programType: bpf_program__type(p).rawValue)
        return KernelProbe.has(requirement) == false ? requirement.feature : nil
    }

    /// Attaches every loaded program by its section name (tracepoint/, raw_tp/, tp_btf/).
    /// The links live as long as the object.
    public func attachAll() throws(BPFError) {
        var prog = bpf_object__next_program(raw, nil)
        var attached = 0
        while let p = prog {
            defer { prog = bpf_object__next_program(raw, p) }
            guard bpf_program__autoload(p) else { continue }
            let programName = String(cString: bpf_program__name(p))
            let section = String(cString: bpf_program__section_name(p))
            guard let link = bpf_program__attach(p), libbpf_get_error(UnsafeRawPointer(link)) == 0 else {
                let code = errno
                if code == EPERM || code == EACCES { throw .notPermitted("attaching \(programName)") }
                throw .attach(program: programName, target: section, errnoText(code))
            }
            links.append(BPFLink(link))
            attached += 1
        }
        if attached == 0 { throw .noAttachableProgram(name) }
    }

    /// The file descriptor of map `name`, or nil.
    public func mapDescriptor(_ name: String) -> Int32? {
        guard let map = bpf_object__find_map_by_name(raw, name) else { return nil }
        let fd = bpf_map__fd(map)
        return fd >= 0 ? fd : nil
    }

    /// The object's maps, in declaration order.
    var maps: [OpaquePointer] {
        var out: [OpaquePointer] = []
        var map = bpf_object__next_map(raw, nil)
        while let m = map {
            out.append(m)
            map = bpf_object__next_map(raw, m)
        }
        return out
    }

    /// The sizes in bytes of the BPF_MAP_TYPE_RINGBUF maps, as declared (valid before load).
    public var ringBufferSizes: [UInt32] {
        maps.filter { bpf_map__type($0) == BPF_MAP_TYPE_RINGBUF }.map { bpf_map__max_entries($0) }
    }

    /// Sets every BPF_MAP_TYPE_RINGBUF map's size to `bytes` (a power of two, a multiple
    /// of the page size: the kernel refuses anything else at load). Before `load()` only.
    public func setRingBufferSizes(_ bytes: UInt32) throws(BPFError) {
        for m in maps where bpf_map__type(m) == BPF_MAP_TYPE_RINGBUF {
            let rc = bpf_map__set_max_entries(m, bytes)
            if rc != 0 { throw .map("cannot size ring buffer \(String(cString: bpf_map__name(m))) to \(bytes) bytes: \(String(cString: strerror(-rc)))") }
        }
    }

    /// Hash maps whose names start with `is_held`: records a plugin holds back in the
    /// kernel (infrasight_common.bpf.h), with their key and value sizes.
    public var heldRecordMaps: [(fd: Int32, keySize: Int, valueSize: Int)] {
        maps.filter { bpf_map__type($0) == BPF_MAP_TYPE_HASH && String(cString: bpf_map__name($0)).hasPrefix("is_held") }
            .map { (bpf_map__fd($0), Int(bpf_map__key_size($0)), Int(bpf_map__value_size($0))) }
    }

    /// Takes every entry out of the hash map `fd`, calling `body` with each value; returns
    /// how many were taken. Entries added meanwhile may be taken or left.
    public static func drainHashMap(fd: Int32, keySize: Int, valueSize: Int, _ body: (UnsafeRawBufferPointer) -> Void) -> Int {
        var key = [UInt8](repeating: 0, count: keySize)
        var value = [UInt8](repeating: 0, count: valueSize)
        var taken = 0
        // Always ask for the first key: each one found is deleted before the next question.
        while bpf_map_get_next_key(fd, nil, &key) == 0 {
            guard bpf_map_lookup_and_delete_elem(fd, key, &value) == 0 else {
                if bpf_map_delete_elem(fd, key) != 0 { break } // cannot make progress
                continue
            }
            value.withUnsafeBytes { body($0) }
            taken += 1
        }
        return taken
    }

    /// The value under a 64-bit `key` in map `fd` (`valueSize` bytes), or nil when absent.
    public static func lookup(fd: Int32, key: UInt64, valueSize: Int) -> [UInt8]? {
        var k = key
        var value = [UInt8](repeating: 0, count: valueSize)
        return bpf_map_lookup_elem(fd, &k, &value) == 0 ? value : nil
    }

    /// The maps of type BPF_MAP_TYPE_RINGBUF, by name.
    public var ringBufferMaps: [(name: String, fd: Int32)] {
        maps.filter { bpf_map__type($0) == BPF_MAP_TYPE_RINGBUF }.map { (String(cString: bpf_map__name($0)), bpf_map__fd($0)) }
    }
}

/// An attached program; detached when released.
public final class BPFLink {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
    deinit { bpf_link__destroy(raw) }
}

/// Reads a BPF_MAP_TYPE_PERCPU_ARRAY of u64 counters, summed over CPUs.
public struct PerCPUCounters: Sendable {
    let fd: Int32
    let cpus: Int

    public init(fd: Int32) {
        self.fd = fd
        cpus = Int(max(1, libbpf_num_possible_cpus()))
    }

    /// The sum over all CPUs of slot `key`, or nil when the lookup fails.
    public func sum(_ key: UInt32) -> UInt64? {
        var k = key
        var buffer = [UInt64](repeating: 0, count: cpus)
        let rc = buffer.withUnsafeMutableBytes { bpf_map_lookup_elem(fd, &k, $0.baseAddress) }
        guard rc == 0 else { return nil }
        var total: UInt64 = 0
        for i in 0..<cpus { total &+= buffer[i] }
        return total
    }
}
