// SPDX-License-Identifier: GPL-2.0
/*
 * tracing.bpf.c — execve/execveat, open/openat/openat2/creat, chmod/fchmod/fchmodat(2).
 *
 * Enter and exit are joined in the kernel: the enter handler copies the arguments into
 * an LRU hash keyed by pid_tgid, the exit handler completes the record with the return
 * code, the exit timestamp and the task's identity after the call (so an execve row
 * carries the new program's comm), and emits it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "infrasight_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define AT_FDCWD_VALUE -100

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

/* Calls in flight. LRU so a thread that dies inside a call cannot leak an entry. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct is_tracing_event);
} inflight SEC(".maps");

/* The record is too big for the 512-byte BPF stack: it is built in a per-CPU slot. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct is_tracing_event);
} scratch SEC(".maps");

static __always_inline struct is_tracing_event *begin(__u16 kind)
{
    if (!is_task_wanted())
        return NULL;
    __u32 zero = 0;
    struct is_tracing_event *e = bpf_map_lookup_elem(&scratch, &zero);
    if (!e)
        return NULL;
    e->hdr.table = 0;
    e->hdr.kind = kind;
    /* Only exec records carry argv: the others end where it starts. */
    e->hdr.size = (kind == IS_TRACING_EXECVE || kind == IS_TRACING_EXECVEAT)
                      ? sizeof(*e)
                      : __builtin_offsetof(struct is_tracing_event, argv);
    e->hdr.ts_enter_ns = bpf_ktime_get_ns();
    e->flags = 0;
    e->mode = 0;
    e->fd = AT_FDCWD_VALUE;
    e->filename_len = 0;
    e->argv_len = 0;
    e->argc = 0;
    e->argv_truncated = 0;
    e->filename[0] = 0;
    e->filename_ptr = 0;
    return e;
}

static __always_inline void read_filename(struct is_tracing_event *e, const char *path)
{
    e->filename_ptr = (__u64)path;
    long n = bpf_probe_read_user_str(e->filename, sizeof(e->filename), path);
    e->filename_len = n > 0 ? n - 1 : 0;
}

/* Reads argv as NUL-separated strings, at most IS_MAX_ARGS of them. An argument starts
 * in the first half of the buffer and reads at most half of it, which the verifier can
 * prove stays inside the buffer. */
static __always_inline void read_argv(struct is_tracing_event *e, const char *const *argv)
{
    __u32 off = 0;
    for (int i = 0; i < IS_MAX_ARGS; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
            goto done;
        if (off >= IS_ARGV_LEN / 2) {
            e->argv_truncated = 1;
            goto done;
        }
        long n = bpf_probe_read_user_str(&e->argv[off & (IS_ARGV_LEN / 2 - 1)], IS_ARGV_LEN / 2, arg);
        if (n <= 0)
            goto done;
        off += n;
        e->argc++;
    }
    {
        const char *more = NULL;
        if (!bpf_probe_read_user(&more, sizeof(more), &argv[IS_MAX_ARGS]) && more)
            e->argv_truncated = 1;
    }
done:
    e->argv_len = off > IS_ARGV_LEN ? IS_ARGV_LEN : off;
}

static __always_inline int remember(struct is_tracing_event *e)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (bpf_map_update_elem(&inflight, &id, e, BPF_ANY))
        is_count_drop(IS_DROP_MAP_FULL);
    return 0;
}

static __always_inline int finish(long ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct is_tracing_event *e = bpf_map_lookup_elem(&inflight, &id);
    if (!e)
        return 0; /* the enter happened before we attached, or was filtered */
    e->hdr.ts_exit_ns = bpf_ktime_get_ns();
    e->hdr.return_code = ret;
    /* A path the enter could not read is resident now (the kernel copied it), except
     * after a successful exec, which replaced the address space. */
    if (!e->filename_len && e->filename_ptr && e->hdr.kind != IS_TRACING_EXECVE && e->hdr.kind != IS_TRACING_EXECVEAT) {
        long n = bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)e->filename_ptr);
        e->filename_len = n > 0 ? n - 1 : 0;
    }
    is_fill_task(&e->hdr);
    if (e->hdr.size == sizeof(*e))
        is_output(&events, e, sizeof(*e));
    else
        is_output(&events, e, __builtin_offsetof(struct is_tracing_event, argv));
    bpf_map_delete_elem(&inflight, &id);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int enter_execve(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_EXECVE);
    if (!e)
        return 0;
    read_filename(e, (const char *)ctx->args[0]);
    read_argv(e, (const char *const *)ctx->args[1]);
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_EXECVEAT);
    if (!e)
        return 0;
    e->fd = (__s32)ctx->args[0];
    read_filename(e, (const char *)ctx->args[1]);
    read_argv(e, (const char *const *)ctx->args[2]);
    e->flags = ctx->args[4];
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_open")
int enter_open(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_OPEN);
    if (!e)
        return 0;
    read_filename(e, (const char *)ctx->args[0]);
    e->flags = ctx->args[1];
    e->mode = ctx->args[2];
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_OPENAT);
    if (!e)
        return 0;
    e->fd = (__s32)ctx->args[0];
    read_filename(e, (const char *)ctx->args[1]);
    e->flags = ctx->args[2];
    e->mode = ctx->args[3];
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_OPENAT2);
    if (!e)
        return 0;
    e->fd = (__s32)ctx->args[0];
    read_filename(e, (const char *)ctx->args[1]);
    struct open_how how = {};
    if (!bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2])) {
        e->flags = how.flags;
        e->mode = how.mode;
    }
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int enter_creat(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_CREAT);
    if (!e)
        return 0;
    read_filename(e, (const char *)ctx->args[0]);
    e->flags = 0x241; /* creat() is open(O_CREAT|O_WRONLY|O_TRUNC) */
    e->mode = ctx->args[1];
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int enter_chmod(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_CHMOD);
    if (!e)
        return 0;
    read_filename(e, (const char *)ctx->args[0]);
    e->mode = ctx->args[1];
    return remember(e);
}

/* fchmod names no path: filename stays empty and fd says which file. */
SEC("tracepoint/syscalls/sys_enter_fchmod")
int enter_fchmod(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_FCHMOD);
    if (!e)
        return 0;
    e->fd = (__s32)ctx->args[0];
    e->mode = ctx->args[1];
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int enter_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_FCHMODAT);
    if (!e)
        return 0;
    e->fd = (__s32)ctx->args[0];
    read_filename(e, (const char *)ctx->args[1]);
    e->mode = ctx->args[2];
    return remember(e);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int enter_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
    struct is_tracing_event *e = begin(IS_TRACING_FCHMODAT2);
    if (!e)
        return 0;
    e->fd = (__s32)ctx->args[0];
    read_filename(e, (const char *)ctx->args[1]);
    e->mode = ctx->args[2];
    e->flags = ctx->args[3];
    return remember(e);
}

#define EXIT_HANDLER(call)                                                \
    SEC("tracepoint/syscalls/sys_exit_" #call)                            \
    int exit_##call(struct trace_event_raw_sys_exit *ctx)                 \
    {                                                                     \
        return finish(ctx->ret);                                          \
    }

EXIT_HANDLER(execve)
EXIT_HANDLER(execveat)
EXIT_HANDLER(open)
EXIT_HANDLER(openat)
EXIT_HANDLER(openat2)
EXIT_HANDLER(creat)
EXIT_HANDLER(chmod)
EXIT_HANDLER(fchmod)
EXIT_HANDLER(fchmodat)
EXIT_HANDLER(fchmodat2)
