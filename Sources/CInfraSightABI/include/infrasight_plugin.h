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
 *     members an older host does not know.
 *   - Structs are append-only. A new member goes at the end, bumps abi_minor, and the
 *     host reads it only when struct_size says the plugin has it.
 *   - The version numbers are macros compiled into the plugin: the host never reads a
 *     Swift global of the plugin to learn them.
 *
 * Memory ownership
 *   - The descriptor and everything it points to (strings, the BPF object bytes, table
 *     and option arrays) are owned by the plugin, are immutable, and must live until the
 *     process exits. The host never frees them and never dlcloses a plugin.
 *   - Strings are NUL-terminated UTF-8.
 *   - is_plugin_instance pointers are created by create() and owned by the plugin.
 *   - Buffers passed to decode (the record) belong to the host and are valid only during
 *     the call; the plugin must not keep pointers into them. Strings handed to the row
 *     writer are copied by the host before put_string returns.
 *   - The string returned by last_error is owned by the plugin and valid until the next
 *     call on the same instance.
 *
 * Threads
 *   - create, configure_bpf and last_error are called from the host's control thread,
 *     before tracing starts.
 *   - decode is called from exactly one thread (the dispatcher), never concurrently for
 *     the same instance, and must not block, allocate per call when avoidable, or call
 *     back into the host except through the row writer it is given.
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
#define IS_PLUGIN_ABI_MINOR 0
#define IS_PLUGIN_ENTRY_SYMBOL "infrasight_plugin_entry"

/* One table a plugin writes. ddl is a complete CREATE TABLE IF NOT EXISTS statement for
 * `name` (database-qualified, e.g. "audit.tracing_events"); the host derives the column
 * list, names and ClickHouse types from it. */
typedef struct is_table_descriptor {
    uint32_t struct_size;
    const char *name;
    const char *ddl;
} is_table_descriptor;

/* One option a plugin accepts under plugins.options.<name> in the config file. */
typedef struct is_option_descriptor {
    uint32_t struct_size;
    const char *name;
    const char *type;        /* "int", "string", "bool", "int-list", "string-list" */
    const char *description;
    const char *default_value; /* as text; NULL when there is none */
} is_option_descriptor;

/* The row writer the host passes to decode. `column` is the index of the column in the
 * table's DDL. Values of the wrong kind for a column are converted by the host when
 * lossless and otherwise counted as a decode error. */
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

typedef struct is_plugin_instance is_plugin_instance;

/* Result codes of decode. */
#define IS_DECODE_ROW 0      /* the row is complete */
#define IS_DECODE_SKIP (-1)  /* a well-formed record that produces no row */
#define IS_DECODE_ERROR (-2) /* a malformed record; counted as a decode error */

typedef struct is_plugin_descriptor {
    /* Fixed prefix: read before anything else. */
    uint32_t magic;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size;

    const char *name;        /* unique plugin name, [a-z0-9_-]+ */
    const char *version;     /* the plugin's own version, free text */
    const char *description; /* one line */

    const uint8_t *bpf_object;   /* the compiled BPF ELF object; may be NULL */
    size_t bpf_object_size;

    const is_table_descriptor *tables;
    uint32_t table_count;

    const is_option_descriptor *options;
    uint32_t option_count;

    /* Creates an instance from options_json (a JSON object, "{}" when none). Returns
     * NULL on failure and then, if error is not NULL, points *error at a message owned
     * by the plugin and valid until the next create call. */
    is_plugin_instance *(*create)(const char *options_json, const char **error);

    /* Called once after the BPF object is opened and before it is loaded; may be NULL.
     * Returns 0 or a negative errno; then last_error says why. */
    int (*configure_bpf)(is_plugin_instance *instance, const is_bpf_configurator *bpf);

    /* Decodes one ring-buffer record. Every record starts with struct is_event_header
     * (bpf/include/infrasight_event.h); its `table` member selects the table. The host has
     * checked size >= sizeof(struct is_event_header) and the table index, has already
     * written every column it knows from the header, and writes enrichment columns
     * afterwards; the plugin writes its own columns and may overwrite any. Returns
     * IS_DECODE_ROW, IS_DECODE_SKIP or IS_DECODE_ERROR. */
    int32_t (*decode)(is_plugin_instance *instance, const void *record, size_t size,
                      const is_row_writer *row);

    /* The last error of this instance, or NULL. */
    const char *(*last_error)(is_plugin_instance *instance);
} is_plugin_descriptor;

typedef const is_plugin_descriptor *(*is_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
