/*
 * infrasight_event.h — what every ring-buffer record shares: the common header every
 * record starts with, and the constants all plugins use.
 *
 * Included by the BPF C (after vmlinux.h) and imported by Swift through the
 * CInfraSightEvent target. A plugin's own record layout lives in its own header, in a C
 * target of the plugin (Plugins/<name>/record/include/<name>_record.h for a first-party
 * plugin; CSignalEvent in Examples/HelloProbe), which includes this one and is shared
 * the same way by the plugin's BPF C and its Swift decoder. Members are laid out with
 * explicit padding so the layout is the same for -target bpf and x86_64/aarch64.
 */
#ifndef INFRASIGHT_EVENT_H
#define INFRASIGHT_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define IS_COMM_LEN 16
#define IS_PATH_LEN 256 /* bytes of a path a record keeps (PATH_MAX is 4096); plugins use it too */

/* Strings are read from user memory at syscall enter and, when that fails, again at
 * exit: a tracepoint cannot fault pages in, and a path in a page the process has not
 * touched yet (a string literal in a fresh binary) is only resident once the kernel has
 * read it during the call. Records keep the user pointers (`*_ptr` members) for that. */

/* Indices of the per-CPU drop counters every plugin's BPF object keeps in map is_drops. */
enum is_drop_reason {
    IS_DROP_RINGBUF_FULL = 0, /* bpf_ringbuf_reserve/output failed */
    IS_DROP_MAP_FULL = 1,     /* a per-thread slot could not be created, or a bounded map was full */
    IS_DROP_REASONS = 4,
};

/* The common header. `pid` is the thread-group id (what user space calls a pid), `tid`
 * the thread id; ns_pid/ns_ppid are the same ids as seen from the task's own pid
 * namespace. Timestamps are CLOCK_MONOTONIC (bpf_ktime_get_ns) nanoseconds; a record
 * with no duration has ts_exit_ns == ts_enter_ns.
 *
 * start_time_ns and parent_start_time_ns (since ABI 1.2, see infrasight_plugin.h) are
 * when the process and its parent process started: the thread-group leader's
 * start_boottime, CLOCK_BOOTTIME nanoseconds (what /proc/<pid>/stat's starttime counts
 * in clock ticks). A pid is reused once its process is gone; (pid, start_time_ns) is
 * not, so it names one process on one host, and (ppid, parent_start_time_ns) its
 * parent. A plugin built against ABI 1.0 or 1.1 sends the header without them (88
 * bytes); the host reads its records with that size. */
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
    __u64 start_time_ns;        /* since ABI 1.2 */
    __u64 parent_start_time_ns; /* since ABI 1.2 */
};

#endif
