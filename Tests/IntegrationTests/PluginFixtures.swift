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
        static const is_table_descriptor tables[] = {{ sizeof(is_table_descriptor), TABLE, DDL }};
        static const is_option_descriptor options[] = {{ sizeof(is_option_descriptor), "level", "int", "a number", "1" }};
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
