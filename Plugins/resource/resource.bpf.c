// SPDX-License-Identifier: GPL-2.0
/*
 * resource.bpf.c — per-process resource use, one record per process per interval:
 * CPU time (sched_switch), page faults (exceptions tracepoints), mmap/munmap/brk bytes,
 * bytes read and written. Counters accumulate per thread group in a bounded hash; a
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

/* When each thread was last switched in. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u64);
} oncpu SEC(".maps");

/* mmap/munmap length or the brk before the call, until the call returns. */
struct pending {
    __u64 value;
    __u32 kind;
};
#define PENDING_MMAP 1
#define PENDING_MUNMAP 2
#define PENDING_BRK 3

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct pending);
} inflight SEC(".maps");

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
    __u32 prev_tid = prev->pid, next_tid = next->pid;
    /* The idle task (pid 0) is not a process; an exiting task already sent its last row
     * (accounting it again would re-create its entry after it is gone). */
    if (prev_tid && !(prev->flags & PF_EXITING_)) {
        __u64 *start = bpf_map_lookup_elem(&oncpu, &prev_tid);
        if (start && is_task_wanted_from(prev)) {
            struct stats *s = stats_for(prev->tgid);
            if (s) {
                if (now > *start)
                    s->c.cpu_ns += now - *start;
                if (now - s->last_emit_ns >= interval_ns)
                    emit(s, 1, now, prev);
            }
        }
    }
    if (next_tid)
        bpf_map_update_elem(&oncpu, &next_tid, &now, BPF_ANY);
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
    __u64 *start = bpf_map_lookup_elem(&oncpu, &tid);
    if (!start)
        return 0;
    struct stats *s = stats_for(curr->tgid);
    if (!s)
        return 0;
    if (now > *start)
        s->c.cpu_ns += now - *start;
    *start = now;
    if (now - s->last_emit_ns >= interval_ns)
        emit(s, 1, now, curr);
    return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
    struct task_struct *task = bpf_get_current_task_btf();
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    __u64 now = bpf_ktime_get_ns();
    __u64 *start = bpf_map_lookup_elem(&oncpu, &tid);
    struct stats *s = bpf_map_lookup_elem(&usage, &tgid);
    if (s && start && now > *start)
        s->c.cpu_ns += now - *start;
    bpf_map_delete_elem(&oncpu, &tid);
    /* Only the last thread of the group ends the process. */
    if (BPF_CORE_READ(task, signal, live.counter) != 0)
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

static __always_inline void remember(__u64 value, __u32 kind)
{
    __u64 id = is_thread_key();
    struct pending p = {.value = value, .kind = kind};
    if (bpf_map_update_elem(&inflight, &id, &p, BPF_ANY))
        is_count_drop(IS_DROP_MAP_FULL);
}

static __always_inline void settle(long ret)
{
    __u64 id = is_thread_key();
    struct pending *p = bpf_map_lookup_elem(&inflight, &id);
    if (!p)
        return;
    struct stats *s = current_stats();
    if (s) {
        if (p->kind == PENDING_MMAP && ret >= 0)
            s->c.vm_mmap_bytes += p->value;
        else if (p->kind == PENDING_MUNMAP && ret == 0)
            s->c.vm_munmap_bytes += p->value;
        else if (p->kind == PENDING_BRK && ret > 0) {
            __u64 now = (__u64)ret;
            if (now > p->value)
                s->c.vm_brk_grow_bytes += now - p->value;
            else
                s->c.vm_brk_shrink_bytes += p->value - now;
        }
    }
    bpf_map_delete_elem(&inflight, &id);
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
    __u64 len = ctx->args[1];
    if (is_task_wanted())
        remember(len, PENDING_MMAP);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_munmap")
int enter_munmap(struct trace_event_raw_sys_enter *ctx)
{
    __u64 len = ctx->args[1];
    if (is_task_wanted())
        remember(len, PENDING_MUNMAP);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_brk")
int enter_brk(struct trace_event_raw_sys_enter *ctx)
{
    if (!is_task_wanted())
        return 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    remember(BPF_CORE_READ(task, mm, brk), PENDING_BRK);
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
