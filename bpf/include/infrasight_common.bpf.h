/*
 * infrasight_common.bpf.h — what every plugin's BPF program shares: the drop counters,
 * the filters set in read-only data by the host, header filling, the wake-up policy, and
 * the per-thread slots that join a call's enter with its exit.
 *
 * Include after vmlinux.h and the libbpf headers. A plugin declares its own ring buffer
 * named `events` and calls is_submit() to send a record.
 */
#ifndef INFRASIGHT_COMMON_BPF_H
#define INFRASIGHT_COMMON_BPF_H

#include "infrasight_event.h"

#define IS_FILTER_MAX 16

/* Filters: `const volatile` so the host sets them before load and the verifier prunes
 * what is unused. A zero count means "no filter of this kind". */
const volatile __u32 is_self_pid = 0; /* the agent itself, excluded when non-zero */
const volatile __u32 is_include_pid_count = 0;
const volatile __u32 is_include_pids[IS_FILTER_MAX] = {};
const volatile __u32 is_exclude_pid_count = 0;
const volatile __u32 is_exclude_pids[IS_FILTER_MAX] = {};
const volatile __u32 is_include_uid_count = 0;
const volatile __u32 is_include_uids[IS_FILTER_MAX] = {};
const volatile __u32 is_exclude_uid_count = 0;
const volatile __u32 is_exclude_uids[IS_FILTER_MAX] = {};
const volatile __u32 is_include_comm_count = 0;
const volatile char is_include_comms[IS_FILTER_MAX][IS_COMM_LEN] = {};
const volatile __u32 is_exclude_comm_count = 0;
const volatile char is_exclude_comms[IS_FILTER_MAX][IS_COMM_LEN] = {};
/* Wake the reader only when this many bytes are waiting; the reader also drains on a
 * timer, so a quiet ring is never stranded. 0 wakes on every record. The host sets it to
 * a quarter of the plugin's smallest ring before load: every wake-up is an
 * inter-processor interrupt (a VM exit on a virtual machine), so fewer is cheaper. */
const volatile __u64 is_wakeup_bytes = 256 * 1024;

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, IS_DROP_REASONS);
    __type(key, __u32);
    __type(value, __u64);
} is_drops SEC(".maps");

static __always_inline void is_count_drop(__u32 reason)
{
    __u64 *slot = bpf_map_lookup_elem(&is_drops, &reason);
    if (slot)
        *slot += 1;
}

static __always_inline bool is_in_list(__u32 value, const volatile __u32 *list, __u32 count)
{
    for (int i = 0; i < IS_FILTER_MAX; i++) {
        if (i >= count)
            break;
        if (list[i] == value)
            return true;
    }
    return false;
}

static __always_inline bool is_comm_equal(const char *comm, const volatile char *want)
{
    for (int i = 0; i < IS_COMM_LEN; i++) {
        if (comm[i] != want[i])
            return false;
        if (comm[i] == 0)
            return true;
    }
    return true;
}

static __always_inline bool is_comm_in_list(const char *comm, const volatile char (*list)[IS_COMM_LEN], __u32 count)
{
    for (int i = 0; i < IS_FILTER_MAX; i++) {
        if (i >= count)
            break;
        if (is_comm_equal(comm, list[i]))
            return true;
    }
    return false;
}

/* True when the current task passes the pid, uid and comm filters (checked at enter). The
 * uid and comm are read only when a filter needs them: the verifier prunes the unused
 * branches, but not a helper call made before them. */
static __always_inline bool is_task_wanted_from(struct task_struct *task)
{
    __u32 pid = task->tgid;
    if (is_self_pid && pid == is_self_pid)
        return false;
    if (is_include_pid_count && !is_in_list(pid, is_include_pids, is_include_pid_count))
        return false;
    if (is_exclude_pid_count && is_in_list(pid, is_exclude_pids, is_exclude_pid_count))
        return false;
    if (is_include_uid_count || is_exclude_uid_count) {
        __u32 uid = (__u32)bpf_get_current_uid_gid();
        if (is_include_uid_count && !is_in_list(uid, is_include_uids, is_include_uid_count))
            return false;
        if (is_exclude_uid_count && is_in_list(uid, is_exclude_uids, is_exclude_uid_count))
            return false;
    }
    if (is_include_comm_count || is_exclude_comm_count) {
        char comm[IS_COMM_LEN] = {};
        bpf_get_current_comm(comm, sizeof(comm));
        if (is_include_comm_count && !is_comm_in_list(comm, is_include_comms, is_include_comm_count))
            return false;
        if (is_exclude_comm_count && is_comm_in_list(comm, is_exclude_comms, is_exclude_comm_count))
            return false;
    }
    return true;
}

static __always_inline bool is_task_wanted(void)
{
    return is_task_wanted_from(bpf_get_current_task_btf());
}

/* Process identity that costs a dozen kernel reads to find (the parent, its start time
 * and the pid namespace ids), cached per process. An entry is used only while the
 * process's start time and parent are those it was made with: a reused pid or a
 * reparented process makes a new one. Start times are the thread-group leaders'
 * start_boottime (see is_event_header). */
struct is_identity {
    __u64 start_time;
    __u64 parent;
    __u64 parent_start_time;
    __u32 ppid;
    __u32 ns_pid;
    __u32 ns_ppid;
    __u32 _pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(map_flags, BPF_F_NO_COMMON_LRU);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct is_identity);
} is_identities SEC(".maps");

/* The ids that are cheap to read: pids, uid/gid, cgroup, comm. Read with plain loads
 * through the task's BTF pointer rather than the helpers (bpf_get_current_uid_gid,
 * _cgroup_id, _comm): the same fields, measured ~100 ns less per record. uid/gid are the
 * kernel's kuid/kgid values, which are the ids in the initial user namespace (what
 * bpf_get_current_uid_gid returns); the cgroup is the task's default-hierarchy (v2)
 * cgroup, as bpf_get_current_cgroup_id reports it. */
static __always_inline void is_fill_basic_from(struct is_event_header *h, struct task_struct *task)
{
    const struct cred *cred = task->cred;
    h->pid = task->tgid;
    h->tid = task->pid;
    h->uid = cred->uid.val;
    h->gid = cred->gid.val;
    h->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
    /* comm is 16 bytes; two word loads instead of a byte-wise copy. A rename racing
     * with this read can mix old and new names, as the helper's copy could too. */
    const __u64 *comm = (const __u64 *)task->comm;
    __u64 *out = (__u64 *)h->comm;
    out[0] = comm[0];
    out[1] = comm[1];
}

static __always_inline void is_fill_basic(struct is_event_header *h)
{
    is_fill_basic_from(h, bpf_get_current_task_btf());
}

/* The walk the identity cache saves: the parent's pid and start time, and the namespace
 * pids. The parent's start time is its process's (its group leader's): `real_parent` is
 * the thread that forked, which need not be the leader. */
static __always_inline void is_walk_identity(struct is_event_header *h, struct task_struct *task, struct task_struct *parent)
{
    h->ppid = BPF_CORE_READ(parent, tgid);
    h->parent_start_time_ns = BPF_CORE_READ(parent, group_leader, start_boottime);
    /* The process ids as seen in the task's own pid namespace: the last level of the
     * struct pid of the group leader (the process), and of the parent's group leader. */
    struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);
    unsigned int level = BPF_CORE_READ(pid, level);
    struct upid up = {};
    bpf_core_read(&up, sizeof(up), &pid->numbers[level]);
    h->ns_pid = up.nr;
    struct pid *ppid = BPF_CORE_READ(parent, group_leader, thread_pid);
    unsigned int plevel = BPF_CORE_READ(ppid, level);
    /* A parent outside the task's namespace (a level above it) has no id there: 0. */
    h->ns_ppid = 0;
    if (plevel >= level) {
        struct upid pup = {};
        bpf_core_read(&pup, sizeof(pup), &ppid->numbers[level]);
        h->ns_ppid = pup.nr;
    }
}

/* Fills the task part of a header from `task` (a BTF pointer: the current task's, or one
 * a tp_btf program is handed), through the per-process identity cache. The process's
 * start time is read every time: it is the cache entry's key, with the parent, so a
 * reused pid never takes an earlier process's identity. */
static __always_inline void is_fill_task_from(struct is_event_header *h, struct task_struct *task)
{
    is_fill_basic_from(h, task);
    __u32 tgid = h->pid;
    struct task_struct *parent = BPF_CORE_READ(task, real_parent);
    __u64 start = BPF_CORE_READ(task, group_leader, start_boottime);
    h->start_time_ns = start;
    struct is_identity *known = bpf_map_lookup_elem(&is_identities, &tgid);
    if (known && known->start_time == start && known->parent == (__u64)parent) {
        h->ppid = known->ppid;
        h->ns_pid = known->ns_pid;
        h->ns_ppid = known->ns_ppid;
        h->parent_start_time_ns = known->parent_start_time;
        return;
    }
    is_walk_identity(h, task, parent);
    struct is_identity fresh = {
        .start_time = start, .parent = (__u64)parent, .parent_start_time = h->parent_start_time_ns,
        .ppid = h->ppid, .ns_pid = h->ns_pid, .ns_ppid = h->ns_ppid,
    };
    /* A full cache only costs the next event the walk again: not a drop. */
    bpf_map_update_elem(&is_identities, &tgid, &fresh, BPF_ANY);
}

/* Fills the task part of a header from the current task (see is_fill_task_from). */
static __always_inline void is_fill_task(struct is_event_header *h)
{
    is_fill_task_from(h, bpf_get_current_task_btf());
}

/* Like is_fill_task, with the identity cached in `slot`, which belongs to the current
 * thread `task` (bpf_get_current_task_btf(), which the caller has at hand for its
 * task-local storage; zeroed when created): no map lookup. The slot dies with the thread,
 * so only a change of parent (reparenting) invalidates it. The process's start time is
 * the thread's for its whole life: a thread that execs from another than the leader
 * takes the leader's place and its start times (de_thread). */
static __always_inline void is_fill_task_local(struct is_event_header *h, struct is_identity *slot, struct task_struct *task)
{
    is_fill_basic_from(h, task);
    struct task_struct *parent = task->real_parent;
    if (slot->parent && slot->parent == (__u64)parent) {
        h->ppid = slot->ppid;
        h->ns_pid = slot->ns_pid;
        h->ns_ppid = slot->ns_ppid;
        h->start_time_ns = slot->start_time;
        h->parent_start_time_ns = slot->parent_start_time;
        return;
    }
    is_walk_identity(h, task, parent);
    h->start_time_ns = task->group_leader->start_boottime;
    slot->parent = (__u64)parent;
    slot->start_time = h->start_time_ns;
    slot->parent_start_time = h->parent_start_time_ns;
    slot->ppid = h->ppid;
    slot->ns_pid = h->ns_pid;
    slot->ns_ppid = h->ns_ppid;
}

/* Flags for a ring-buffer submission: wake the reader only past the fill threshold.
 * `sample` is any value whose low bits cycle between calls (a counter). */
static __always_inline __u64 is_wakeup_flags_sampled(void *ringbuf, __u64 sample)
{
    if (!is_wakeup_bytes)
        return 0;
    /* Reading the fill level touches the positions the reader's CPU writes: measured
     * ~230 ns per call, a quarter of a traced openat's exit. One submission in 32 looks;
     * the wake-up comes at most 31 records past the threshold. */
    if (sample & 31)
        return BPF_RB_NO_WAKEUP;
    return bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA) >= is_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
                                                                             : BPF_RB_NO_WAKEUP;
}

static __always_inline __u64 is_wakeup_flags(void *ringbuf)
{
    return is_wakeup_flags_sampled(ringbuf, bpf_get_prandom_u32());
}

/* Sends `size` bytes at `record` to `ringbuf`, counting a full ring as a drop; `sample`
 * picks which submissions look at the fill level (is_wakeup_flags_sampled). */
static __always_inline int is_output_sampled(void *ringbuf, void *record, __u64 size, __u64 sample)
{
    if (bpf_ringbuf_output(ringbuf, record, size, is_wakeup_flags_sampled(ringbuf, sample))) {
        is_count_drop(IS_DROP_RINGBUF_FULL);
        return -1;
    }
    return 0;
}

/* Sends `size` bytes at `record` to `ringbuf`, counting a full ring as a drop. */
static __always_inline int is_output(void *ringbuf, void *record, __u64 size)
{
    return is_output_sampled(ringbuf, record, size, bpf_get_prandom_u32());
}

/* Records a plugin holds back in the kernel, waiting for something later (a connect's
 * handshake, say), live in hash maps whose names start with `is_held`: each value is a
 * complete record, ready to decode. When the host stops it sends whatever is still held
 * through the plugin's decoder, as it would a ring-buffer record, so stopping loses none. */

/* Per-thread state lives in task-local storage: one slot per thread (task_struct), found
 * through the task itself rather than a hash lookup, created on the thread's first use
 * (not preallocated: about the value's size plus a hundred bytes) and freed with the
 * thread, so a thread that dies inside a call leaks nothing and no table can fill up. */
#define IS_TASK_STORAGE(name, value_type)                                                     \
    struct {                                                                                  \
        __uint(type, BPF_MAP_TYPE_TASK_STORAGE);                                              \
        __uint(map_flags, BPF_F_NO_PREALLOC);                                                 \
        __type(key, int);                                                                     \
        __type(value, value_type);                                                            \
    } name SEC(".maps")

/* `task`'s slot in `map` (declared with IS_TASK_STORAGE), created zeroed if it has none;
 * NULL when the kernel cannot create it (memory pressure, or a BPF program on this CPU
 * already inside task storage), counted as IS_DROP_MAP_FULL: never a silent loss. */
static __always_inline void *is_task_slot(void *map, struct task_struct *task)
{
    void *slot = bpf_task_storage_get(map, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!slot)
        is_count_drop(IS_DROP_MAP_FULL);
    return slot;
}

/* Enter/exit joining. What the exit needs from the enter (its time, arguments, strings
 * read then, or the whole record) waits in the calling thread's slot of a task-storage
 * map: a thread is inside one system call at a time, so one slot per thread joins any
 * number of threads blocked in calls at once (thousands in connect or accept are
 * ordinary), with nothing to evict. An LRU hash did this before and, once more threads
 * were inside calls than it had entries, dropped the oldest calls without a count.
 *
 * The slot belongs to the task_struct, not to a pid: a thread other than the leader that
 * calls execve is given the leader's pid inside the call (de_thread), so its exit has
 * another tid than its enter (Go programs, runc's init among them, exec that way), but it
 * keeps its task_struct and with it its slot.
 *
 * A plugin declares its join map with IS_INFLIGHT_MAP(inflight, struct my_event), whose
 * slots are struct inflight_slot { struct is_inflight join; struct my_event e; }, and
 *
 *     enter: s = is_inflight_enter(&inflight); is_begin(&s->e.hdr, ...); fill s->e;
 *     exit:  is_inflight_finish(&inflight, &events, ret, sizeof(struct my_event));
 *
 * (is_inflight_enter applies the host's filters). An exit that adds to the record first uses
 * is_inflight_exit and is_inflight_send, which is_inflight_finish combines. The slot
 * outlives the call, so the thread's next call finds it without allocating, and keeps
 * what is per thread: its identity and its count of records sent. */
struct is_inflight {
    struct is_identity identity; /* this thread's (is_fill_task_local), kept between calls */
    __u32 submissions;           /* records this thread has sent: samples the ring's fill level */
    __u32 active;                /* set by an enter, cleared by the exit that joins it */
};

#define IS_INFLIGHT_MAP(name, type)                                                           \
    struct name##_slot {                                                                      \
        struct is_inflight join;                                                              \
        type e;                                                                               \
    };                                                                                        \
    _Static_assert(__builtin_offsetof(struct name##_slot, e) == sizeof(struct is_inflight),   \
                   "is_inflight_finish finds the record right after the join");               \
    IS_TASK_STORAGE(name, struct name##_slot)

/* At enter: the current thread's join slot in `map` (a struct that starts with struct
 * is_inflight), marked as holding a call, when the thread passes the host's filters;
 * NULL when it does not, or (counted) when the slot cannot be created. The caller fills
 * the rest, all of it: the slot keeps the previous call's values. */
static __always_inline void *is_inflight_enter(void *map)
{
    struct task_struct *task = bpf_get_current_task_btf();
    if (!is_task_wanted_from(task))
        return NULL;
    struct is_inflight *join = is_task_slot(map, task);
    if (join)
        join->active = 1;
    return join;
}

/* At exit: the current thread `task`'s join slot in `map`, now consumed, or NULL when no
 * enter filled it (it happened before the plugin attached, or was filtered out). */
static __always_inline void *is_inflight_exit(void *map, struct task_struct *task)
{
    struct is_inflight *join = bpf_task_storage_get(map, task, 0, 0);
    if (!join || !join->active)
        return NULL;
    join->active = 0;
    return join;
}

/* Completes `h`, a record the current thread `task` keeps in its join slot `join`, with
 * the exit time, the return value and the thread's identity, and sends `size` bytes of it. */
static __always_inline void is_inflight_send(struct is_inflight *join, void *ringbuf, struct is_event_header *h, long ret, __u64 size,
                                             struct task_struct *task)
{
    h->ts_exit_ns = bpf_ktime_get_ns();
    h->return_code = ret;
    is_fill_task_local(h, &join->identity, task);
    is_output_sampled(ringbuf, h, size, ++join->submissions);
}

/* At exit: sends the record the current thread's enter stored in `map` (declared with
 * IS_INFLIGHT_MAP, the record's `size` bytes starting with its header), completed with
 * `ret` (see is_inflight_send); nothing when no enter stored one. */
static __always_inline void is_inflight_finish(void *map, void *ringbuf, long ret, __u64 size)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct is_inflight *join = is_inflight_exit(map, task);
    if (join)
        is_inflight_send(join, ringbuf, (struct is_event_header *)(join + 1), ret, size, task);
}

/* Starts a record of `size` bytes and `kind` in the header. */
static __always_inline void is_begin(struct is_event_header *h, __u16 kind, __u32 size)
{
    h->table = 0;
    h->kind = kind;
    h->size = size;
    h->ts_enter_ns = bpf_ktime_get_ns();
}

#endif
