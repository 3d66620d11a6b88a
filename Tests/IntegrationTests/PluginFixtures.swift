import Foundation
import Glibc
import InfraSightTestSupport

/// Builds small C plugins (good and bad) against the real ABI header.
enum PluginFixture {
    static let source = """
        #ifdef MARKER
        #include <fcntl.h>
        #include <unistd.h>
        /* Runs inside dlopen, before any symbol is looked up: proof that the file was loaded. */
        __attribute__((constructor)) static void mark_loaded(void) {
            int fd = open(MARKER, O_WRONLY | O_CREAT, 0644);
            if (fd >= 0) close(fd);
        }
        #endif
        #include <stdint.h>
        #include "infrasight_plugin.h"
        #ifndef MAGIC
        #define MAGIC IS_PLUGIN_MAGIC
        #endif
        #ifndef MAJOR
        #define MAJOR IS_PLUGIN_ABI_MAJOR
        #endif
        #ifndef MINOR
        #define MINOR IS_PLUGIN_ABI_MINOR
        #endif
        #ifndef SIZE
        #define SIZE sizeof(is_plugin_descriptor)
        #endif
        #ifndef TABLE_COUNT
        #define TABLE_COUNT 1
        #endif
        #ifndef DDL
        #define DDL "CREATE TABLE IF NOT EXISTS audit.fixture_events (pid UInt32, comm String) ENGINE = MergeTree() ORDER BY pid"
        #endif
        #ifndef TABLE
        #define TABLE "audit.fixture_events"
        #endif
        #ifndef ENTRY
        #define ENTRY infrasight_plugin_entry
        #endif
        #ifndef OPTION_SIZE
        #define OPTION_SIZE sizeof(is_option_descriptor)
        #endif
        #ifdef DERIVED
        static const is_derived_column derived[] = { DERIVED };
        static const is_table_descriptor tables[] = {{ sizeof(is_table_descriptor), TABLE, DDL, derived, 1 }};
        #else
        static const is_table_descriptor tables[] = {{ sizeof(is_table_descriptor), TABLE, DDL }};
        #endif
        static const is_option_descriptor options[] = {{ OPTION_SIZE, "level", "int", "a number", "1" }};
        static is_plugin_instance *create(const char *o, const char **e) { (void)o; (void)e; return (is_plugin_instance *)1; }
        static int32_t decode(is_plugin_instance *i, const void *r, size_t s, const is_row_writer *w) { (void)i; (void)r; (void)s; (void)w; return IS_DECODE_SKIP; }
        static const char *last_error(is_plugin_instance *i) { (void)i; return 0; }
        static const is_plugin_descriptor d = {
            MAGIC, MAJOR, MINOR, SIZE, NAME, "1.2.3", "a test fixture", 0, 0,
            tables, TABLE_COUNT, options, 1, create, 0, decode, last_error };
        const is_plugin_descriptor *ENTRY(void) { return &d; }
        """

    /// Compiles a fixture plugin named `name` into `path`; `defines` override the macros.
    /// With `marker`, an ELF constructor creates that file when the library is loaded.
    static func build(_ path: String, name: String, defines: [String: String] = [:], marker: String? = nil) throws {
        var flags = ["-shared", "-fPIC", "-O1", "-I", Paths.abiHeaderDir, "-DNAME=\"\(name)\""]
        if let marker { flags.append("-DMARKER=\"\(marker)\"") }
        for (k, v) in defines.sorted(by: { $0.key < $1.key }) { flags.append("-D\(k)=\(v)") }
        try compileC(source, to: path, flags: flags)
        chmod(path, 0o755)
    }

    static func copy(_ from: String, to: String, mode: mode_t = 0o755) throws {
        try? FileManager.default.removeItem(atPath: to)
        try FileManager.default.copyItem(atPath: from, toPath: to)
        chmod(to, mode)
    }
}

/// C plugins built against other versions of the ABI header than the host's: one with
/// every struct larger than the host knows (a header copy with extra trailing members,
/// as a newer header would have), one built against ABI 1.0 (before derived columns and
/// the host's log).
enum ABIFixture {
    static let tableOne = "CREATE TABLE IF NOT EXISTS audit.abi_one (op Int64, op_name String, took_ns UInt64, took_ms Float64) ENGINE = MergeTree() ORDER BY op"
    static let tableTwo = "CREATE TABLE IF NOT EXISTS audit.abi_two (pid UInt32, comm String, latency_ns UInt64, latency_ms Float64) ENGINE = MergeTree() ORDER BY pid"
    static let tableOld = "CREATE TABLE IF NOT EXISTS audit.abi_old (pid UInt32, latency_ns UInt64, latency_ms Float64, wall_time_ms Int64, wall_time_dt DateTime64(3), ppid UInt32, comm String, payload UInt64, start_time_ns UInt64, parent_start_time_ns UInt64) ENGINE = MergeTree() ORDER BY pid"

    /// The host's header with `uint64_t future_a; const char *future_b;` appended to every
    /// struct whose size travels in struct_size: what a plugin built against a later minor
    /// has, before it bumps the minor.
    static func largerHeader() throws -> String {
        var text = try String(contentsOfFile: "\(Paths.abiHeaderDir)/infrasight_plugin.h", encoding: .utf8)
        for name in ["is_derived_column", "is_table_descriptor", "is_option_descriptor", "is_create_input", "is_plugin_descriptor"] {
            let end = "} \(name);"
            guard text.contains(end) else { throw TestFailure("the ABI header has no \(end)") }
            text = text.replacingOccurrences(of: end, with: "    uint64_t future_a;\n    const char *future_b;\n" + end)
        }
        return text
    }

    /// Garbage in every future member: a host that walked an array by its own element size
    /// would read it as the next element's struct_size or name.
    static let largerSource = """
        #include <stddef.h>
        #include <stdio.h>
        #include "infrasight_plugin.h"
        #define FUTURE .future_a = 0xFFFFFFFFFFFFFFFFull, .future_b = (const char *)0x1
        static const is_derived_column derived[] = {
            { .struct_size = sizeof(is_derived_column), .kind = IS_DERIVE_MILLISECONDS_FROM_NANOSECONDS, .column = "took_ms", .source = "took_ns", FUTURE },
            { .struct_size = sizeof(is_derived_column), .kind = IS_DERIVE_CODE_NAME, .column = "op_name", .source = "op", .code_table = "ptrace_request", FUTURE },
        };
        static const is_table_descriptor tables[] = {
            { .struct_size = sizeof(is_table_descriptor), .name = "audit.abi_one", .ddl = TABLE_ONE, .derived_columns = derived, .derived_column_count = 2, FUTURE },
            { .struct_size = sizeof(is_table_descriptor), .name = "audit.abi_two", .ddl = TABLE_TWO, FUTURE },
        };
        static const is_option_descriptor options[] = {
            { .struct_size = sizeof(is_option_descriptor), .name = "first", .type = "int", .description = "the first", .default_value = "1", FUTURE },
            { .struct_size = sizeof(is_option_descriptor), .name = "second", .type = "string", .description = "the second", .default_value = "two", FUTURE },
            { .struct_size = sizeof(is_option_descriptor), .name = "third", .type = "bool", .description = "the third", FUTURE },
        };
        static is_plugin_instance *create(const char *o, const char **e) { (void)o; (void)e; return (is_plugin_instance *)1; }
        /* Reads the host's input by its struct_size, as the header says: the host knows no future_a. */
        static void (*host_log)(void *, uint32_t, const char *);
        static void *host_owner;
        static is_plugin_instance *create_with_input(const is_create_input *input, const char **e) {
            (void)e;
            host_log = input->log;
            host_owner = input->owner;
            char line[256];
            int hasFuture = input->struct_size >= offsetof(is_create_input, future_a) + sizeof(uint64_t);
            snprintf(line, sizeof line, "created with %s;\\nthe host's input %s future_a", input->options_json, hasFuture ? "has" : "lacks");
            input->log(input->owner, IS_LOG_WARNING, line);
            return (is_plugin_instance *)2;
        }
        static int32_t decode(is_plugin_instance *i, const void *r, size_t s, const is_row_writer *w) { (void)i; (void)r; (void)s; (void)w; return IS_DECODE_SKIP; }
        static const char *last_error(is_plugin_instance *i) { (void)i; return 0; }
        static void stop(is_plugin_instance *i) {
            char line[64];
            snprintf(line, sizeof line, "instance %lu stopped", (unsigned long)(uintptr_t)i);
            host_log(host_owner, IS_LOG_INFO, line);
        }
        static const is_plugin_descriptor d = {
            .magic = IS_PLUGIN_MAGIC, .abi_major = IS_PLUGIN_ABI_MAJOR, .abi_minor = IS_PLUGIN_ABI_MINOR, .struct_size = sizeof(is_plugin_descriptor),
            .name = NAME, .version = "9.9.9", .description = "larger structs than the host knows",
            .tables = tables, .table_count = 2, .options = options, .option_count = 3,
            .create = create, .decode = decode, .last_error = last_error, .create_with_input = create_with_input, .stop = stop, FUTURE };
        const is_plugin_descriptor *infrasight_plugin_entry(void) { return &d; }
        """

    /// ABI 1.0's structs, as a plugin built before 1.1 has them, and its record: the
    /// common header as it was before 1.2 (88 bytes, ending with comm) and one member of
    /// its own, which decode writes into `payload` (column 7).
    static let version10Source = """
        #include <stddef.h>
        #include <stdint.h>
        #include <string.h>
        struct is_event_header {
            uint16_t table; uint16_t kind; uint32_t size;
            uint32_t pid, tid, ppid, uid, gid, ns_pid, ns_ppid, _pad0;
            uint64_t cgroup_id, ts_enter_ns, ts_exit_ns; int64_t return_code;
            char comm[16];
        };
        _Static_assert(sizeof(struct is_event_header) == 88, "ABI 1.0's record header");
        struct old_record { struct is_event_header hdr; uint64_t payload; };
        /* ABI 1.0's row writer, as far as this plugin uses it (its first members). */
        typedef struct { void *host; void (*put_uint)(void *host, uint32_t column, uint64_t value); } is_row_writer;
        typedef struct { uint32_t struct_size; const char *name; const char *ddl; } is_table_descriptor;
        typedef struct { uint32_t struct_size; const char *name; const char *type; const char *description; const char *default_value; } is_option_descriptor;
        typedef struct is_plugin_instance is_plugin_instance;
        typedef struct {
            uint32_t magic; uint16_t abi_major; uint16_t abi_minor; uint32_t struct_size;
            const char *name; const char *version; const char *description;
            const uint8_t *bpf_object; size_t bpf_object_size;
            const is_table_descriptor *tables; uint32_t table_count;
            const is_option_descriptor *options; uint32_t option_count;
            is_plugin_instance *(*create)(const char *options_json, const char **error);
            int (*configure_bpf)(is_plugin_instance *instance, const void *bpf);
            int32_t (*decode)(is_plugin_instance *instance, const void *record, size_t size, const is_row_writer *row);
            const char *(*last_error)(is_plugin_instance *instance);
        } is_plugin_descriptor;
        static const is_table_descriptor tables[] = {{ sizeof(is_table_descriptor), "audit.abi_old", TABLE_OLD }};
        static const is_option_descriptor options[] = {
            { sizeof(is_option_descriptor), "alpha", "int", "a", "1" },
            { sizeof(is_option_descriptor), "beta", "string-list", "b", 0 },
        };
        static is_plugin_instance *create(const char *o, const char **e) { (void)o; (void)e; return (is_plugin_instance *)3; }
        static int32_t decode(is_plugin_instance *i, const void *r, size_t s, const is_row_writer *w) {
            (void)i;
            struct old_record e;
            if (s < sizeof e) return -2;
            memcpy(&e, r, sizeof e);
            w->put_uint(w->host, 7, e.payload);
            return 0;
        }
        static const char *last_error(is_plugin_instance *i) { (void)i; return 0; }
        static const is_plugin_descriptor d = {
            0x47505349u, 1, 0, sizeof(is_plugin_descriptor), NAME, "1.0.0", "built against ABI 1.0", 0, 0,
            tables, 1, options, 2, create, 0, decode, last_error };
        const is_plugin_descriptor *infrasight_plugin_entry(void) { return &d; }
        """

    static func quoted(_ s: String) -> String { "\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\"" }

    /// Builds the larger-struct fixture into `path`, against a header copy in a directory of its own.
    static func buildLarger(_ path: String, name: String) throws {
        let include = try makeTempDir(prefix: "abi-include")
        try largerHeader().write(toFile: "\(include)/infrasight_plugin.h", atomically: true, encoding: .utf8)
        try compileC(largerSource, to: path, flags: [
            "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-I", include, "-DNAME=\"\(name)\"",
            "-DTABLE_ONE=\(quoted(tableOne))", "-DTABLE_TWO=\(quoted(tableTwo))",
        ])
        chmod(path, 0o755)
    }

    /// Builds the ABI 1.0 fixture into `path`.
    static func buildVersion10(_ path: String, name: String) throws {
        try compileC(version10Source, to: path, flags: ["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-DNAME=\"\(name)\"", "-DTABLE_OLD=\(quoted(tableOld))"])
        chmod(path, 0o755)
    }
}
