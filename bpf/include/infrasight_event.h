/*
 * infrasight_event.h — the one definition of every record that crosses the ring buffer.
 *
 * Included by the BPF C (after vmlinux.h) and imported by Swift through the
 * CInfraSightEvent target, so BPF and user space can never disagree on a layout.
 * Every ring-buffer record starts with struct is_event_header. Members are laid out
 * with explicit padding so the layout is the same for -target bpf and x86_64/aarch64.
 */
#ifndef INFRASIGHT_EVENT_H
#define INFRASIGHT_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define IS_COMM_LEN 16
#define IS_PATH_LEN 256
#define IS_ARGV_LEN 1024 /* bytes of argv kept; each argument starts in the first half */

/* Strings are read from user memory at syscall enter and, when that fails, again at
 * exit: a tracepoint cannot fault pages in, and a path in a page the process has not
 * touched yet (a string literal in a fresh binary) is only resident once the kernel has
 * read it during the call. */
#define IS_MAX_ARGS 20

/* Indices of the per-CPU drop counters every plugin's BPF object keeps in map is_drops. */
enum is_drop_reason {
    IS_DROP_RINGBUF_FULL = 0, /* bpf_ringbuf_reserve/output failed */
    IS_DROP_MAP_FULL = 1,     /* an in-flight map refused an update */
    IS_DROP_REASONS = 4,
};

/* The common header. `pid` is the thread-group id (what user space calls a pid), `tid`
 * the thread id; ns_pid/ns_ppid are the same ids as seen from the task's own pid
 * namespace. Timestamps are CLOCK_MONOTONIC (bpf_ktime_get_ns) nanoseconds; a record
 * with no duration has ts_exit_ns == ts_enter_ns. */
struct is_event_header {
    __u16 table;       /* index into the plugin's table descriptors */
    __u16 kind;        /* plugin-defined event kind (e.g. which syscall) */
    __u32 size;        /* total record size in bytes, header included */
    __u32 pid;
    __u32 tid;
    __u32 ppid;
    __u32 uid;
    __u32 gid;
    __u32 ns_pid;
    __u32 ns_ppid;
    __u32 _pad0;
    __u64 cgroup_id;
    __u64 ts_enter_ns;
    __u64 ts_exit_ns;
    __s64 return_code;
    char comm[IS_COMM_LEN];
};

/* ---- tracing plugin: execve/execveat, open/openat/openat2/creat, chmod family ---- */

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

/* ---- ptrace plugin ---- */

struct is_ptrace_event {
    struct is_event_header hdr;
    __s64 request;
    __s64 target_pid;
    __u64 addr;
    __u64 data;
};

/* ---- mmap plugin ---- */

struct is_mmap_event {
    struct is_event_header hdr;
    __u64 addr;
    __u64 len;
    __u64 prot;
    __u64 flags;
    __s64 fd; /* -1 for anonymous mappings */
    __u64 off;
};

/* ---- mount plugin: mount(2) and umount2(2) ---- */

enum is_mount_kind {
    IS_MOUNT_MOUNT = 1,
    IS_MOUNT_UMOUNT,
};

#define IS_MOUNT_STR_LEN 256

struct is_mount_event {
    struct is_event_header hdr;
    __u64 flags;
    __u32 dev_name_len;
    __u32 dir_name_len;
    __u32 type_len;
    __u32 _pad;
    /* The user pointers, to re-read at exit (kernel side only). */
    __u64 dev_name_ptr;
    __u64 dir_name_ptr;
    __u64 type_ptr;
    char dev_name[IS_MOUNT_STR_LEN];
    char dir_name[IS_MOUNT_STR_LEN];
    char type[IS_MOUNT_STR_LEN];
};


/* ---- resource plugin: per-process usage per interval ---- */

struct is_resource_counters {
    __u64 cpu_ns;
    __u64 user_faults;
    __u64 kernel_faults;
    __u64 vm_mmap_bytes;
    __u64 vm_munmap_bytes;
    __u64 vm_brk_grow_bytes;
    __u64 vm_brk_shrink_bytes;
    __u64 bytes_read;
    __u64 bytes_written;
};

/* One interval of one process (thread group). ts_enter_ns == ts_exit_ns == emission time. */
struct is_resource_event {
    struct is_event_header hdr;
    struct is_resource_counters c;
    __u32 is_active; /* 0 on the last row, emitted when the process exits */
    __u32 _pad;
};

/* ---- network plugin: connect, accept, accept4 ---- */

enum is_network_kind {
    IS_NET_CONNECT = 1,
    IS_NET_ACCEPT,
    IS_NET_ACCEPT4,
};

#define IS_UNIX_PATH_LEN 108

/* Addresses are in network byte order as the kernel keeps them (IPv4 in the first four
 * bytes); ports in host order. For every row, `s` is the connection's initiator and `d`
 * its responder: a connect row's s is the local socket, an accept row's s the peer. */
struct is_network_event {
    struct is_event_header hdr;
    __u16 family;       /* AF_INET, AF_INET6, AF_UNIX, ... */
    __u16 protocol;     /* IPPROTO_TCP, IPPROTO_UDP, ...; 0 when unknown */
    __u16 sport;
    __u16 dport;
    __u8 saddr[16];
    __u8 daddr[16];
    __s32 fd;           /* the socket: connect's fd, accept's new fd (or -1) */
    __u32 unix_path_len;
    __u64 sockaddr_ptr; /* the user pointer, to re-read at exit (kernel side only) */
    char unix_path[IS_UNIX_PATH_LEN]; /* sun_path; an abstract name starts with NUL */
    __u32 _pad;
};

#endif
