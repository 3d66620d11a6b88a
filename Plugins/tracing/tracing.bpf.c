// SPDX-License-Identifier: GPL-2.0
/*
 * tracing.bpf.c — execve/execveat, open/openat/openat2/creat, chmod/fchmod/fchmodat(2).
 *
 * Enter and exit are joined in the kernel (execs in an LRU hash keyed by the thread, opens
 * and chmods in task-local storage), and the exit handler completes the record with the return code, the exit timestamp and the
 * task's identity after the call (so an execve row carries the new program's comm).
 *
 * Two paths, because this is the hottest probe: opens and chmods keep only their
 * arguments (a few words) at enter, and at exit build the record directly in the ring
 * buffer, reading the path then (the kernel has just read it, so its page is resident).
 * Execs must read path and argv at enter (a successful exec replaces the address
 * space), so they keep the whole record in the map.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "infrasight_common.bpf.h"
#include "tracing_record.h"

char LICENSE[] SEC("license") = "GPL";

#define AT_FDCWD_VALUE -100

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

/* Execs in flight, whole records. LRU so a thread that dies inside a call cannot leak. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct is_tracing_event);
} inflight SEC(".maps");

/* Opens and chmods in flight: just the arguments, in task-local storage. A thread is in
 * at most one syscall at a time, so one slot per task joins enter and exit without a
 * hash lookup and delete (measured: the LRU hash join was ~40% of exit_openat's cost).
 * The slot lives and dies with the task: nothing can leak. `active` marks a slot
 * written by an enter and not yet consumed by its exit. */
struct pending_file {
    __u64 ts_enter_ns;
    __u64 path;
    __u64 flags;
    __u32 mode;
    __s32 fd;
    __u16 kind;
    __u16 active;
    /* Records this thread has sent: picks which submissions look at the ring's fill
     * level (a counter in a slot already at hand costs less than bpf_get_prandom_u32). */
    __u32 submissions;
    __u32 _pad;
    /* This thread's identity (ppid, start times, namespace pids), kept between its calls. */
    struct is_identity identity;
};

struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct pending_file);
} inflight_file SEC(".maps");

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
    e->hdr.size = sizeof(*e); /* only execs take this path, and only they carry argv */
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

/* After a successful exec, what the enter could not read (strings in pages the caller
 * had not touched: BPF cannot fault them in) is read from the new image, whose stack the
 * kernel has just written: argv between mm->arg_start and arg_end, NUL-separated as
 * read_argv leaves it, and the path execve was given right above the environment strings
 * (where AT_EXECFN points). For a script, that argv is the one the kernel built (the
 * interpreter first), not the caller's. */
static __always_inline void read_from_new_image(struct is_tracing_event *e)
{
    struct mm_struct *mm = bpf_get_current_task_btf()->mm;
    if (!mm)
        return;
    if (!e->filename_len) {
        long n = bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)mm->env_end);
        e->filename_len = n > 0 ? n - 1 : 0;
    }
    if (!e->argv_len) {
        __u64 len = mm->arg_end - mm->arg_start;
        e->argv_truncated = len > IS_ARGV_LEN;
        if (len > IS_ARGV_LEN)
            len = IS_ARGV_LEN;
        if (len && !bpf_probe_read_user(e->argv, len, (const void *)mm->arg_start)) {
            e->argv_len = len;
            __u64 argc = 0;
            bpf_probe_read_user(&argc, sizeof(argc), (const void *)mm->start_stack);
            e->argc = argc > IS_MAX_ARGS ? IS_MAX_ARGS : argc;
        }
    }
}

static __always_inline int remember(struct is_tracing_event *e)
{
    is_inflight_put(&inflight, e);
    return 0;
}

static __always_inline int finish(long ret)
{
    __u64 id = is_thread_key();
    struct is_tracing_event *e = bpf_map_lookup_elem(&inflight, &id);
    if (!e)
        return 0; /* the enter happened before we attached, or was filtered */
    /* A path the enter could not read is resident now, unless the exec succeeded and
     * replaced the address space: then the new image has its own copy. */
    if (!e->filename_len && e->filename_ptr && ret < 0) {
        long n = bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)e->filename_ptr);
        e->filename_len = n > 0 ? n - 1 : 0;
    }
    if (ret == 0 && (!e->filename_len || !e->argv_len))
        read_from_new_image(e);
    is_inflight_send(&inflight, &events, id, &e->hdr, ret, sizeof(*e));
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

static __always_inline int remember_file(__u16 kind, __s32 fd, __u64 path, __u64 flags, __u32 mode)
{
    struct task_struct *task = bpf_get_current_task_btf();
    if (!is_task_wanted_from(task))
        return 0;
    struct pending_file *p = bpf_task_storage_get(&inflight_file, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!p) {
        is_count_drop(IS_DROP_MAP_FULL);
        return 0;
    }
    p->ts_enter_ns = bpf_ktime_get_ns();
    p->path = path;
    p->flags = flags;
    p->mode = mode;
    p->fd = fd;
    p->kind = kind;
    p->active = 1;
    return 0;
}

/* Builds an open/chmod record in the ring buffer at exit. */
static __always_inline int finish_file(long ret)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct pending_file *p = bpf_task_storage_get(&inflight_file, task, 0, 0);
    if (!p || !p->active)
        return 0; /* the enter happened before we attached, or was filtered */
    p->active = 0;
    const __u32 size = __builtin_offsetof(struct is_tracing_event, argv);
    struct is_tracing_event *e = bpf_ringbuf_reserve(&events, size, 0);
    if (!e) {
        is_count_drop(IS_DROP_RINGBUF_FULL);
        return 0;
    }
    e->hdr.table = 0;
    e->hdr.kind = p->kind;
    e->hdr.size = size;
    e->hdr.ts_enter_ns = p->ts_enter_ns;
    e->hdr.ts_exit_ns = bpf_ktime_get_ns();
    e->hdr.return_code = ret;
    e->flags = p->flags;
    e->mode = p->mode;
    e->fd = p->fd;
    e->argv_len = 0;
    e->argc = 0;
    e->argv_truncated = 0;
    e->filename_ptr = p->path;
    long n = p->path ? bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)p->path) : 0;
    e->filename_len = n > 0 ? n - 1 : 0;
    if (n <= 0)
        e->filename[0] = 0;
    is_fill_task_local(&e->hdr, &p->identity, task);
    bpf_ringbuf_submit(e, is_wakeup_flags_sampled(&events, ++p->submissions));
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int enter_open(struct trace_event_raw_sys_enter *ctx)
{
    return remember_file(IS_TRACING_OPEN, AT_FDCWD_VALUE, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
    return remember_file(IS_TRACING_OPENAT, (__s32)ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
    __u64 dfd = ctx->args[0], path = ctx->args[1], uhow = ctx->args[2];
    struct open_how how = {};
    bpf_probe_read_user(&how, sizeof(how), (void *)uhow);
    return remember_file(IS_TRACING_OPENAT2, (__s32)dfd, path, how.flags, how.mode);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int enter_creat(struct trace_event_raw_sys_enter *ctx)
{
    /* creat() is open(O_CREAT|O_WRONLY|O_TRUNC) */
    return remember_file(IS_TRACING_CREAT, AT_FDCWD_VALUE, ctx->args[0], 0x241, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int enter_chmod(struct trace_event_raw_sys_enter *ctx)
{
    return remember_file(IS_TRACING_CHMOD, AT_FDCWD_VALUE, ctx->args[0], 0, ctx->args[1]);
}

/* fchmod names no path: filename stays empty and fd says which file. */
SEC("tracepoint/syscalls/sys_enter_fchmod")
int enter_fchmod(struct trace_event_raw_sys_enter *ctx)
{
    return remember_file(IS_TRACING_FCHMOD, (__s32)ctx->args[0], 0, 0, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int enter_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
    return remember_file(IS_TRACING_FCHMODAT, (__s32)ctx->args[0], ctx->args[1], 0, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int enter_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
    return remember_file(IS_TRACING_FCHMODAT2, (__s32)ctx->args[0], ctx->args[1], ctx->args[3], ctx->args[2]);
}

#define EXIT_HANDLER(call)                                                \
    SEC("tracepoint/syscalls/sys_exit_" #call)                            \
    int exit_##call(struct trace_event_raw_sys_exit *ctx)                 \
    {                                                                     \
        return finish(ctx->ret);                                          \
    }

EXIT_HANDLER(execve)
EXIT_HANDLER(execveat)

#define FILE_EXIT_HANDLER(call)                                           \
    SEC("tracepoint/syscalls/sys_exit_" #call)                            \
    int exit_##call(struct trace_event_raw_sys_exit *ctx)                 \
    {                                                                     \
        return finish_file(ctx->ret);                                     \
    }

FILE_EXIT_HANDLER(open)
FILE_EXIT_HANDLER(openat)
FILE_EXIT_HANDLER(openat2)
FILE_EXIT_HANDLER(creat)
FILE_EXIT_HANDLER(chmod)
FILE_EXIT_HANDLER(fchmod)
FILE_EXIT_HANDLER(fchmodat)
FILE_EXIT_HANDLER(fchmodat2)
