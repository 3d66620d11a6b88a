// SPDX-License-Identifier: GPL-2.0
/* ptrace.bpf.c — every ptrace(2) request: who traces whom, with addr, data and result.
 * The request waits for its exit in the calling thread's task-local slot. */
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

IS_INFLIGHT_MAP(inflight, struct is_ptrace_event);

SEC("tracepoint/syscalls/sys_enter_ptrace")
int enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
    __u64 request = ctx->args[0], pid = ctx->args[1], addr = ctx->args[2], data = ctx->args[3];
    struct inflight_slot *s = is_inflight_enter(&inflight);
    if (!s)
        return 0;
    is_begin(&s->e.hdr, 1, sizeof(s->e));
    s->e.request = (__s64)request;
    s->e.target_pid = (__s64)(__s32)pid; /* pid_t */
    s->e.addr = addr;
    s->e.data = data;
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_ptrace")
int exit_ptrace(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct is_ptrace_event));
    return 0;
}
