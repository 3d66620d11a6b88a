/*
 * tracing_record.h — the one definition of the tracing plugin's ring-buffer record:
 * execve/execveat, open/openat/openat2/creat and the chmod family. Included by
 * tracing.bpf.c and imported by the Swift decoder (module TracingRecord).
 */
#ifndef INFRASIGHT_TRACING_RECORD_H
#define INFRASIGHT_TRACING_RECORD_H

#include "infrasight_event.h"

#define IS_ARGV_LEN 1024 /* bytes of argv kept; each argument starts in the first half */
#define IS_MAX_ARGS 20

enum is_tracing_kind {
    IS_TRACING_EXECVE = 1,
    IS_TRACING_EXECVEAT,
    IS_TRACING_OPEN,
    IS_TRACING_OPENAT,
    IS_TRACING_OPENAT2,
    IS_TRACING_CREAT,
    IS_TRACING_CHMOD,
    IS_TRACING_FCHMOD,
    IS_TRACING_FCHMODAT,
    IS_TRACING_FCHMODAT2,
};

struct is_tracing_event {
    struct is_event_header hdr;
    __u64 flags;            /* open flags; AT_* flags of execveat/fchmodat2 */
    __u32 mode;             /* creation mode of open, new mode of chmod */
    __s32 fd;               /* dirfd of *at calls, fd of fchmod; -100 is AT_FDCWD */
    __u32 filename_len;     /* bytes in filename, NUL excluded */
    __u32 argv_len;         /* bytes in argv: arguments separated by NUL */
    __u32 argc;             /* arguments read (capped at IS_MAX_ARGS) */
    __u32 argv_truncated;   /* 1 when more arguments or bytes existed */
    __u64 filename_ptr;     /* the user pointer, to re-read at exit (kernel side only) */
    char filename[IS_PATH_LEN];
    char argv[IS_ARGV_LEN]; /* only exec records carry it: others end at this member */
};

#endif
