/*
 * infrasight_adbc.h — the parts of the Arrow C data interface and of the ADBC 1.1 driver
 * API that InfraSight uses to drive embedded ClickHouse (chdb's `chdb_adbc_init`).
 * Declared from the published specifications (Apache Arrow C data interface; ADBC API
 * 1.1.0); the member order of AdbcDriver is the specification's and must not change.
 * Only the members used by InfraSight are named; the 1.1 additions are reserved space.
 */
#ifndef INFRASIGHT_ADBC_H
#define INFRASIGHT_ADBC_H

#include <stddef.h>
#include <stdint.h>

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};

typedef uint8_t AdbcStatusCode;
#define IS_ADBC_STATUS_OK 0
#define IS_ADBC_VERSION_1_1_0 1001000

struct AdbcDriver;

struct AdbcError {
    char *message;
    int32_t vendor_code;
    char sqlstate[5];
    void (*release)(struct AdbcError *);
    void *private_data;            /* 1.1 */
    struct AdbcDriver *private_driver; /* 1.1 */
};

struct AdbcDatabase { void *private_data; struct AdbcDriver *private_driver; };
struct AdbcConnection { void *private_data; struct AdbcDriver *private_driver; };
struct AdbcStatement { void *private_data; struct AdbcDriver *private_driver; };

typedef void *is_adbc_unused_fn;

struct AdbcDriver {
    void *private_data;
    void *private_manager;
    AdbcStatusCode (*release)(struct AdbcDriver *, struct AdbcError *);

    AdbcStatusCode (*DatabaseInit)(struct AdbcDatabase *, struct AdbcError *);
    AdbcStatusCode (*DatabaseNew)(struct AdbcDatabase *, struct AdbcError *);
    AdbcStatusCode (*DatabaseSetOption)(struct AdbcDatabase *, const char *, const char *, struct AdbcError *);
    AdbcStatusCode (*DatabaseRelease)(struct AdbcDatabase *, struct AdbcError *);

    is_adbc_unused_fn ConnectionCommit;
    is_adbc_unused_fn ConnectionGetInfo;
    is_adbc_unused_fn ConnectionGetObjects;
    is_adbc_unused_fn ConnectionGetTableSchema;
    is_adbc_unused_fn ConnectionGetTableTypes;
    AdbcStatusCode (*ConnectionInit)(struct AdbcConnection *, struct AdbcDatabase *, struct AdbcError *);
    AdbcStatusCode (*ConnectionNew)(struct AdbcConnection *, struct AdbcError *);
    is_adbc_unused_fn ConnectionSetOption;
    is_adbc_unused_fn ConnectionReadPartition;
    AdbcStatusCode (*ConnectionRelease)(struct AdbcConnection *, struct AdbcError *);
    is_adbc_unused_fn ConnectionRollback;

    is_adbc_unused_fn StatementBind;
    is_adbc_unused_fn StatementBindStream;
    AdbcStatusCode (*StatementExecuteQuery)(struct AdbcStatement *, struct ArrowArrayStream *, int64_t *, struct AdbcError *);
    is_adbc_unused_fn StatementExecutePartitions;
    is_adbc_unused_fn StatementGetParameterSchema;
    AdbcStatusCode (*StatementNew)(struct AdbcConnection *, struct AdbcStatement *, struct AdbcError *);
    is_adbc_unused_fn StatementPrepare;
    AdbcStatusCode (*StatementRelease)(struct AdbcStatement *, struct AdbcError *);
    is_adbc_unused_fn StatementSetOption;
    AdbcStatusCode (*StatementSetSqlQuery)(struct AdbcStatement *, const char *, struct AdbcError *);
    is_adbc_unused_fn StatementSetSubstraitPlan;

    /* ADBC 1.1 members (error details, typed options, cancellation, statistics): the
     * driver fills them when initialised for 1.1; InfraSight does not call them. */
    is_adbc_unused_fn reserved_1_1[64];
};

typedef AdbcStatusCode (*is_adbc_driver_init_fn)(int version, void *driver, struct AdbcError *error);

#endif
