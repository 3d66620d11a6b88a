// SPDX-License-Identifier: GPL-2.0
/* kill(2): who sends which signal to whom, joined enter/exit for the return code. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "infrasight_common.bpf.h"
#include "signal_event.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1024 * 1024);
} events SEC(".maps");

/* The call waits for its exit in the calling thread's own slot (task-local storage). */
IS_INFLIGHT_MAP(inflight, struct signal_event);

SEC("tracepoint/syscalls/sys_enter_kill")
int enter_kill(struct trace_event_raw_sys_enter *ctx)
{
    __u64 pid = ctx->args[0], sig = ctx->args[1];
    struct inflight_slot *s = is_inflight_enter(&inflight); /* NULL: filtered out */
    if (!s)
        return 0;
    is_begin(&s->e.hdr, 0, sizeof(s->e));
    s->e.target_pid = (__s32)pid;
    s->e.signal = (__u32)sig;
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_kill")
int exit_kill(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct signal_event));
    return 0;
}
