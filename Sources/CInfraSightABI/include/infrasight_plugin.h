/*
 * infrasight_plugin.h — the C ABI between the infrasight host and a probe plugin.
 *
 * A probe plugin is one ELF shared object that exports one symbol,
 * IS_PLUGIN_ENTRY_SYMBOL, a function returning a pointer to an is_plugin_descriptor.
 * Swift has no stable ABI on Linux and Swift types linked into two images are two
 * different types, so nothing but the C types below ever crosses the boundary.
 *
 * Versioning
 *   - The descriptor starts with magic, abi_major, abi_minor and struct_size, in that
 *     order, at fixed offsets. The host reads these four before anything else.
 *   - abi_major must equal the host's IS_PLUGIN_ABI_MAJOR. A major bump means a member
 *     changed meaning or moved.
 *   - abi_minor must be <= the host's IS_PLUGIN_ABI_MINOR: a newer plugin may rely on
 *     members an older host does not know. An older plugin (smaller abi_minor) loads.
 *   - Structs are append-only. A new member goes at the end and bumps abi_minor. Each
 *     member below says "since 1.N" (the minor that added it) and "required: yes/no".
 *   - Every struct starts with (or, for the descriptor, holds at offset 8) its own
 *     struct_size: sizeof the struct as the side that filled it was compiled. The
 *     reader reads a member only when struct_size covers it whole (offset + size <=
 *     struct_size); a member it does not cover is absent, and the reader does what that
 *     member's comment says for "absent". Members past what the reader knows are
 *     ignored. A plugin's struct_size may not be less than the size the struct had in
 *     the minor that added it (1.0 for most, 1.1 for is_derived_column): the host
 *     refuses the plugin then.
 *   - Arrays (tables, options, derived columns) are walked by each element's
 *     struct_size: element i+1 starts struct_size bytes after element i. So a plugin
 *     compiled against a newer header, with larger elements, is read right by an older
 *     host, and an older plugin's smaller elements by a newer host. Every element's
 *     struct_size must be at least that first size and at most 65536; a plugin has at
 *     most 256 tables and 1024 options, a table at most 1000 derived columns.
 *   - The version numbers are macros compiled into the plugin: the host never reads a
 *     Swift global of the plugin to learn them.
 *   - The ring-buffer record's common header (struct is_event_header,
 *     bpf/include/infrasight_event.h) is versioned by the same minor. 1.2 appended
 *     start_time_ns and parent_start_time_ns (the process's and its parent's start,
 *     boot-based ns), making it 104 bytes; a plugin built against 1.0 or 1.1 sends the
 *     88-byte header that ends before them. The host reads each plugin's records with the
 *     header size of the plugin's abi_minor, and stores 0 in the start_time_ns and
 *     parent_start_time_ns columns of an older plugin's rows. A plugin rebuilt against
 *     1.2 gets the new header from the same header file its BPF C and decoder share:
 *     its records' layout shifts by 16 bytes after the header, in both at once.
 *
 * Memory ownership
 *   - The descriptor and everything it points to (strings, the BPF object bytes, table,
 *     option and derived-column arrays) are owned by the plugin, are immutable, and must
 *     live until the process exits. The host never frees them and never dlcloses a plugin.
 *   - Strings are NUL-terminated UTF-8.
 *   - is_plugin_instance pointers are created by create() or create_with_input() and
 *     owned by the plugin.
 *   - Buffers passed to decode (the record) belong to the host and are valid only during
 *     the call; the plugin must not keep pointers into them. Strings handed to the row
 *     writer are copied by the host before put_string returns.
 *   - The string returned by last_error is owned by the plugin and valid until the next
 *     call on the same instance.
 *   - The is_create_input passed to create_with_input is the host's and valid only
 *     during that call; the owner pointer and the log function in it are valid for the
 *     life of the process. Log messages are copied by the host before log returns.
 *
 * Threads
 *   - create, create_with_input, configure_bpf and last_error are called from the host's
 *     control thread, before tracing starts.
 *   - decode is called from exactly one thread (the dispatcher), never concurrently for
 *     the same instance, and must not block, allocate per call when avoidable, or call
 *     back into the host except through the row writer it is given and the log function.
 *   - stop is called from the dispatcher thread too, once, after the last decode.
 *   - The log function may be called from any thread, from the call of
 *     create_with_input that passed it on, but it writes a line to the host's log and
 *     may block: do not log once per record.
 */
#ifndef INFRASIGHT_PLUGIN_H
#define INFRASIGHT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IS_PLUGIN_MAGIC 0x47505349u /* "ISPG" in little-endian memory order */
#define IS_PLUGIN_ABI_MAJOR 1
#define IS_PLUGIN_ABI_MINOR 2
#define IS_PLUGIN_ENTRY_SYMBOL "infrasight_plugin_entry"

/* Kinds of derived column (is_derived_column.kind). Since 1.1. */
/* A Float64 column of milliseconds from an integer column of nanoseconds. */
#define IS_DERIVE_MILLISECONDS_FROM_NANOSECONDS 1u
/* A DateTime or DateTime64 column from an integer column of Unix epoch milliseconds. */
#define IS_DERIVE_TIME_FROM_MILLISECONDS 2u
/* A String column holding the name of an integer column's value, looked up in the code
 * table code_table (Sources/InfraSightCodes, e.g. "ptrace_request"); a value the table
 * lacks gets the table's "unknown" form, e.g. PTRACE_UNKNOWN_<n>. The host does not
 * check the name at load: an agent whose build does not know the code table sends the
 * column as decoded, and a server that does not know it refuses the agent's hello. */
#define IS_DERIVE_CODE_NAME 3u

/* One column of a table that can be computed from another column of the same row
 * (Inspektor Gadget and Tetragon: the plugin that owns a column says what it is; the
 * host and the server name no plugin). An agent may leave such a column out of the
 * batches it sends; the server computes it from `source` with `kind`. The plugin still
 * writes the column (or the host does, for its own time columns): local stores get it
 * from the row. The source is a plain integer column; the derived column has the type
 * its kind names, or that type in Nullable. Since 1.1. */
typedef struct is_derived_column {
    uint32_t struct_size; /* since 1.1; required: yes */
    uint32_t kind;        /* since 1.1; required: yes; an IS_DERIVE_* value */
    const char *column;   /* since 1.1; required: yes; the derived column, in this table */
    const char *source;   /* since 1.1; required: yes; the integer column it comes from */
    const char *code_table; /* since 1.1; required: for IS_DERIVE_CODE_NAME; NULL otherwise */
} is_derived_column;

/* One table a plugin writes. */
typedef struct is_table_descriptor {
    uint32_t struct_size; /* since 1.0; required: yes */
    /* Since 1.0; required: yes. Database-qualified, e.g. "audit.tracing_events". */
    const char *name;
    /* Since 1.0; required: yes. A complete CREATE TABLE IF NOT EXISTS statement for
     * `name`; the host derives the column list, names and ClickHouse types from it. */
    const char *ddl;
    /* Since 1.1; required: no. The table's derived columns; NULL when the count is 0.
     * The host refuses the plugin when one lacks its column or source, names a column
     * the table lacks, derives a column from itself or from another derived column,
     * derives a column twice, has an unknown kind or a code name without code_table, or
     * its column types do not fit the kind (see IS_DERIVE_*).
     * Absent (a plugin built before 1.1): the host takes latency_ms from latency_ns and
     * wall_time_dt from wall_time_ms as derived, for the pairs the table has with
     * fitting types (the columns the host itself fills from the record's timestamps). */
    const is_derived_column *derived_columns;
    uint32_t derived_column_count; /* since 1.1; required: with derived_columns */
} is_table_descriptor;

/* One option a plugin accepts under plugins.options.<name> in the config file. */
typedef struct is_option_descriptor {
    uint32_t struct_size;    /* since 1.0; required: yes */
    const char *name;        /* since 1.0; required: yes; an option without one is skipped */
    const char *type;        /* since 1.0; required: no ("string" when NULL); "int",
                              * "string", "bool", "int-list" or "string-list" */
    const char *description; /* since 1.0; required: no */
    const char *default_value; /* since 1.0; required: no; as text; NULL when there is none */
} is_option_descriptor;

/* The row writer the host passes to decode. `column` is the index of the column in the
 * table's DDL. A value is stored only when the column can hold it exactly; a value of
 * the wrong kind makes the whole record a decode error (counted, never a row), not a
 * truncated value. What each column type takes (Nullable(T) takes what T takes, and
 * put_null; no other column takes put_null):
 *   UIntN, IntN   put_uint and put_int of a value in the type's range; put_float of a
 *                 finite whole number in range.
 *   Float32/64    put_uint and put_int of a value the type represents exactly; put_float
 *                 of any value (rounded to nearest for Float32; a finite value beyond
 *                 Float32's range is wrong).
 *   DateTime,     Unix epoch milliseconds: put_uint and put_int of a value in Int64 range
 *   DateTime64    (for DateTime: 0 up to the year 2106), put_float of a whole number.
 *   String, JSON  put_string only.
 * A column index past the table's columns is a decode error too. Since 1.0 (the checks
 * since 1.1: earlier hosts truncated). */
typedef struct is_row_writer {
    void *host;
    void (*put_uint)(void *host, uint32_t column, uint64_t value);
    void (*put_int)(void *host, uint32_t column, int64_t value);
    void (*put_float)(void *host, uint32_t column, double value);
    /* bytes need not be NUL-terminated nor valid UTF-8: the host repairs them. */
    void (*put_string)(void *host, uint32_t column, const char *bytes, size_t length);
    void (*put_null)(void *host, uint32_t column);
} is_row_writer;

/* The BPF hooks the host offers between opening the plugin's BPF object and loading it. */
typedef struct is_bpf_configurator {
    void *host;
    /* Sets a `const volatile` global of the object's .rodata by name. Returns 0, or a
     * negative errno when the variable is missing (-ENOENT) or the size differs (-EINVAL). */
    int (*set_rodata)(void *host, const char *name, const void *value, size_t size);
} is_bpf_configurator;

/* Log levels of is_create_input.log. The host maps them onto its own log levels and
 * may filter the lower ones; a level above IS_LOG_ERROR is logged as an error. */
#define IS_LOG_DEBUG 0u
#define IS_LOG_INFO 1u
#define IS_LOG_NOTICE 2u
#define IS_LOG_WARNING 3u
#define IS_LOG_ERROR 4u

/* What the host gives create_with_input. Filled by the host: the plugin reads a member
 * only when struct_size covers it (see Versioning). Since 1.1. */
typedef struct is_create_input {
    uint32_t struct_size;     /* since 1.1; always set */
    const char *options_json; /* since 1.1; a JSON object, "{}" when there are no options */
    void *owner;              /* since 1.1; pass it back to log */
    /* Since 1.1. Writes one line to the host's log as "plugin NAME: message" (through
     * swift-log: `infrasight: LEVEL: plugin NAME: message` on the console). The message
     * is NUL-terminated UTF-8 (invalid bytes are repaired), at most 1024 bytes are kept,
     * and control characters (newlines included) are shown as spaces, so one call is one
     * line. Never NULL. */
    void (*log)(void *owner, uint32_t level, const char *message);
} is_create_input;

typedef struct is_plugin_instance is_plugin_instance;

/* Result codes of decode. */
#define IS_DECODE_ROW 0      /* the row is complete */
#define IS_DECODE_SKIP (-1)  /* a well-formed record that produces no row */
#define IS_DECODE_ERROR (-2) /* a malformed record; counted as a decode error */

typedef struct is_plugin_descriptor {
    /* Fixed prefix: read before anything else. All since 1.0; required: yes. */
    uint32_t magic;       /* IS_PLUGIN_MAGIC */
    uint16_t abi_major;   /* IS_PLUGIN_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;   /* IS_PLUGIN_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(is_plugin_descriptor) as the plugin was built */

    /* Since 1.0; required: yes. Unique plugin name, [a-z0-9_-]+, at most 64 bytes, equal
     * to the name the file name gives (libinfrasight-NAME.so, libNAME.so or NAME.so). */
    const char *name;
    const char *version;     /* since 1.0; required: no; the plugin's own version, free text */
    const char *description; /* since 1.0; required: no; one line */

    /* Since 1.0; required: no. The compiled BPF ELF object; NULL (or a size of 0) for a
     * plugin without kernel side. */
    const uint8_t *bpf_object;
    size_t bpf_object_size;

    /* Since 1.0; required: yes, at least one. Array walked by struct_size. */
    const is_table_descriptor *tables;
    uint32_t table_count;

    /* Since 1.0; required: no (NULL or a count of 0 for none). Array walked by struct_size. */
    const is_option_descriptor *options;
    uint32_t option_count;

    /* Since 1.0; required: yes. Creates an instance from options_json (a JSON object,
     * "{}" when none). Returns NULL on failure and then, if error is not NULL, points
     * *error at a message owned by the plugin and valid until the next create call.
     * Not called when create_with_input is present and not NULL. */
    is_plugin_instance *(*create)(const char *options_json, const char **error);

    /* Since 1.0; required: no. Called once after the BPF object is opened and before it
     * is loaded. Returns 0 or a negative errno; then last_error says why. */
    int (*configure_bpf)(is_plugin_instance *instance, const is_bpf_configurator *bpf);

    /* Since 1.0; required: yes. Decodes one ring-buffer record. Every record starts with
     * struct is_event_header (bpf/include/infrasight_event.h) as the plugin was built
     * with it (see Versioning: 104 bytes from 1.2, 88 before); its `table` member selects
     * the table. The host has checked that the record and the size its header claims
     * (passed as `size`) are at least that header and that the claim fits the record,
     * and the table index; it has already written every column it knows from the header,
     * and writes enrichment columns afterwards; the plugin writes its own columns and may
     * overwrite any. Returns IS_DECODE_ROW, IS_DECODE_SKIP or IS_DECODE_ERROR; any other
     * value counts as IS_DECODE_ERROR. */
    int32_t (*decode)(is_plugin_instance *instance, const void *record, size_t size,
                      const is_row_writer *row);

    /* Since 1.0; required: yes. The last error of this instance, or NULL. */
    const char *(*last_error)(is_plugin_instance *instance);

    /* Since 1.1; required: no. Like create, with what the host offers every instance
     * (its options and its log). When present and not NULL the host calls it instead of
     * create; a plugin keeps create for hosts that call that (create's instances log
     * nothing). Returns NULL on failure, with *error as for create. */
    is_plugin_instance *(*create_with_input)(const is_create_input *input, const char **error);

    /* Since 1.2; required: no. Called once per instance when the host stops tracing,
     * from the dispatcher thread after the instance's last decode: the instance ends its
     * background work (threads, sockets, timers) so the host exits with nothing of the
     * plugin still running. decode is never called after it. */
    void (*stop)(is_plugin_instance *instance);
} is_plugin_descriptor;

typedef const is_plugin_descriptor *(*is_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
