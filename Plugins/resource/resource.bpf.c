// SPDX-License-Identifier: GPL-2.0
/*
 * resource.bpf.c — per-process resource use, one record per process per interval:
 * CPU time (sched_switch), page faults (exceptions tracepoints), mmap/munmap/brk bytes,
 * bytes read and written. Counters accumulate per thread group in a bounded hash (a
 * process that finds it full is counted as a drop); what is per thread (when it was
 * switched in, a memory call in flight) lives in the thread's task-local slot. A
 * process's record is sent once its interval has elapsed, when it is switched out or at
 * the scheduler's runtime update for the running task (sched_stat_runtime, so a process
 * that keeps a core busy still reports), and a final one (is_active = 0) when its last
 * thread exits. A process that never runs has nothing to report, so nothing is lost by
 * waiting for it to run.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "infrasight_common.bpf.h"
#include "resource_record.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_EXITING_ 0x00000004 /* include/linux/sched.h */

/* The interval, set by the plugin from its `interval_seconds` option. */
const volatile __u64 interval_ns = 10ULL * 1000000000ULL;

struct stats {
    struct is_resource_counters c;
    __u64 last_emit_ns;
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/* Counters per thread group (tgid). A full map is counted as a drop. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 32768);
    __type(key, __u32);
    __type(value, struct stats);
} usage SEC(".maps");

/* What is kept per thread, in its task-local slot (see IS_TASK_STORAGE): nothing to
 * evict, however many threads there are (LRU hashes did this before, and silently lost a
 * thread's CPU time or a call's bytes once they were full). */
struct thread {
    __u64 switched_in_ns; /* when it was last switched in; 0 before that was seen */
    __u64 pending;        /* mmap/munmap length or the brk before the call, until it returns */
    __u32 pending_kind;   /* PENDING_*, 0 when no such call is in flight */
    __u32 _pad;
};
#define PENDING_MMAP 1
#define PENDING_MUNMAP 2
#define PENDING_BRK 3

IS_TASK_STORAGE(threads, struct thread);

static __always_inline struct stats *stats_for(__u32 tgid)
{
    struct stats *s = bpf_map_lookup_elem(&usage, &tgid);
    if (s)
        return s;
    struct stats zero = {};
    zero.last_emit_ns = bpf_ktime_get_ns();
    if (bpf_map_update_elem(&usage, &tgid, &zero, BPF_NOEXIST) && bpf_map_lookup_elem(&usage, &tgid) == NULL) {
        is_count_drop(IS_DROP_MAP_FULL);
        return NULL;
    }
    return bpf_map_lookup_elem(&usage, &tgid);
}

static __always_inline struct stats *current_stats(void)
{
    if (!is_task_wanted())
        return NULL;
    return stats_for(bpf_get_current_pid_tgid() >> 32);
}

/* Sends the process counters of `task`'s process and starts a new interval. The header
 * (pids, comm, start times, ...) is `task`'s, the task the counters were accounted to:
 * every caller passes it explicitly rather than leaning on which task is current. */
/* Whether `s`'s interval is over at `now`. Signed: an entry created after `now` was read
 * (stats_for stamps it with a later clock) is not an interval that wrapped around. */
static __always_inline bool interval_over(struct stats *s, __u64 now)
{
    return (__s64)(now - s->last_emit_ns) >= (__s64)interval_ns;
}

static __always_inline void emit(struct stats *s, __u32 active, __u64 now, struct task_struct *task)
{
    struct is_resource_event e = {};
    e.hdr.size = sizeof(e);
    e.hdr.ts_enter_ns = now;
    e.hdr.ts_exit_ns = now;
    is_fill_task_from(&e.hdr, task);
    e.c = s->c;
    e.is_active = active;
    is_output(&events, &e, sizeof(e));
    __builtin_memset(&s->c, 0, sizeof(s->c));
    s->last_emit_ns = now;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
    __u64 now = bpf_ktime_get_ns();
    /* The idle task (pid 0) is not a process; an exiting task already sent its last row
     * (accounting it again would re-create its entry after it is gone). */
    if (prev->pid && !(prev->flags & PF_EXITING_)) {
        struct thread *t = bpf_task_storage_get(&threads, prev, 0, 0);
        if (t && t->switched_in_ns && is_task_wanted_from(prev)) {
            struct stats *s = stats_for(prev->tgid);
            if (s) {
                if (now > t->switched_in_ns)
                    s->c.cpu_ns += now - t->switched_in_ns;
                if (interval_over(s, now))
                    emit(s, 1, now, prev);
            }
        }
    }
    if (next->pid) {
        struct thread *t = is_task_slot(&threads, next);
        if (t)
            t->switched_in_ns = now;
    }
    return 0;
}

/* The running task's periodic runtime update: account its CPU so far and emit when due. */
SEC("tp_btf/sched_stat_runtime")
int BPF_PROG(on_runtime, struct task_struct *curr, u64 runtime)
{
    __u32 tid = curr->pid;
    /* The runtime update can be for another CPU's task (remote run-queue updates); the
     * row is filled from the current task, so only the current task's own update counts. */
    if (!tid || tid != (__u32)bpf_get_current_pid_tgid() || (curr->flags & PF_EXITING_) || !is_task_wanted())
        return 0;
    __u64 now = bpf_ktime_get_ns();
    struct thread *t = bpf_task_storage_get(&threads, curr, 0, 0);
    if (!t || !t->switched_in_ns)
        return 0;
    struct stats *s = stats_for(curr->tgid);
    if (!s)
        return 0;
    if (now > t->switched_in_ns)
        s->c.cpu_ns += now - t->switched_in_ns;
    t->switched_in_ns = now;
    if (interval_over(s, now))
        emit(s, 1, now, curr);
    return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
    struct task_struct *task = bpf_get_current_task_btf();
    __u32 tgid = task->tgid;
    __u64 now = bpf_ktime_get_ns();
    /* The thread's slot goes with the thread; its last slice is accounted here. */
    struct thread *t = bpf_task_storage_get(&threads, task, 0, 0);
    struct stats *s = bpf_map_lookup_elem(&usage, &tgid);
    if (s && t && t->switched_in_ns && now > t->switched_in_ns)
        s->c.cpu_ns += now - t->switched_in_ns;
    /* Only the last thread of the group ends the process. */
    if (task->signal->live.counter != 0)
        return 0;
    if (s) {
        emit(s, 0, now, task);
        bpf_map_delete_elem(&usage, &tgid);
    }
    return 0;
}

SEC("tracepoint/exceptions/page_fault_user")
int on_user_fault(void *ctx)
{
    struct stats *s = current_stats();
    if (s)
        s->c.user_faults++;
    return 0;
}

SEC("tracepoint/exceptions/page_fault_kernel")
int on_kernel_fault(void *ctx)
{
    struct stats *s = current_stats();
    if (s)
        s->c.kernel_faults++;
    return 0;
}

static __always_inline void remember(struct task_struct *task, __u64 value, __u32 kind)
{
    struct thread *t = is_task_slot(&threads, task);
    if (!t)
        return;
    t->pending = value;
    t->pending_kind = kind;
}

static __always_inline void settle(long ret)
{
    struct thread *t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0, 0);
    if (!t || !t->pending_kind)
        return;
    __u32 kind = t->pending_kind;
    __u64 before = t->pending;
    t->pending_kind = 0;
    struct stats *s = current_stats();
    if (!s)
        return;
    if (kind == PENDING_MMAP && ret >= 0)
        s->c.vm_mmap_bytes += before;
    else if (kind == PENDING_MUNMAP && ret == 0)
        s->c.vm_munmap_bytes += before;
    else if (kind == PENDING_BRK && ret > 0) {
        __u64 now = (__u64)ret;
        if (now > before)
            s->c.vm_brk_grow_bytes += now - before;
        else
            s->c.vm_brk_shrink_bytes += before - now;
    }
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
    __u64 len = ctx->args[1];
    struct task_struct *task = bpf_get_current_task_btf();
    if (is_task_wanted_from(task))
        remember(task, len, PENDING_MMAP);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_munmap")
int enter_munmap(struct trace_event_raw_sys_enter *ctx)
{
    __u64 len = ctx->args[1];
    struct task_struct *task = bpf_get_current_task_btf();
    if (is_task_wanted_from(task))
        remember(task, len, PENDING_MUNMAP);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_brk")
int enter_brk(struct trace_event_raw_sys_enter *ctx)
{
    struct task_struct *task = bpf_get_current_task_btf();
    if (is_task_wanted_from(task))
        remember(task, task->mm->brk, PENDING_BRK);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int exit_mmap(struct trace_event_raw_sys_exit *ctx) { settle(ctx->ret); return 0; }

SEC("tracepoint/syscalls/sys_exit_munmap")
int exit_munmap(struct trace_event_raw_sys_exit *ctx) { settle(ctx->ret); return 0; }

SEC("tracepoint/syscalls/sys_exit_brk")
int exit_brk(struct trace_event_raw_sys_exit *ctx) { settle(ctx->ret); return 0; }

static __always_inline void count_io(long ret, bool write)
{
    if (ret <= 0)
        return;
    struct stats *s = current_stats();
    if (!s)
        return;
    if (write)
        s->c.bytes_written += ret;
    else
        s->c.bytes_read += ret;
}

#define IO_EXIT(call, is_write)                                         \
    SEC("tracepoint/syscalls/sys_exit_" #call)                          \
    int exit_##call(struct trace_event_raw_sys_exit *ctx)               \
    {                                                                   \
        count_io(ctx->ret, is_write);                                   \
        return 0;                                                       \
    }

IO_EXIT(read, false)
IO_EXIT(readv, false)
IO_EXIT(pread64, false)
IO_EXIT(preadv, false)
IO_EXIT(preadv2, false)
IO_EXIT(write, true)
IO_EXIT(writev, true)
IO_EXIT(pwrite64, true)
IO_EXIT(pwritev, true)
IO_EXIT(pwritev2, true)
