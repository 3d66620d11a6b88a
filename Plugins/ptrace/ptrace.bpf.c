// SPDX-License-Identifier: GPL-2.0
/* ptrace.bpf.c — every ptrace(2) request: who traces whom, with addr, data and result. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "infrasight_common.bpf.h"
#include "ptrace_record.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 8192);
    __type(key, __u64);
    __type(value, struct is_ptrace_event);
} inflight SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_ptrace")
int enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
    if (!is_task_wanted())
        return 0;
    struct is_ptrace_event e = {};
    is_begin(&e.hdr, 1, sizeof(e));
    e.request = (__s64)ctx->args[0];
    e.target_pid = (__s64)(__s32)ctx->args[1]; /* pid_t */
    e.addr = ctx->args[2];
    e.data = ctx->args[3];
    is_inflight_put(&inflight, &e);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_ptrace")
int exit_ptrace(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct is_ptrace_event));
    return 0;
}
