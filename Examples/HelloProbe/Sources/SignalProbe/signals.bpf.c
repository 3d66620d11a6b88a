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

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct signal_event);
} inflight SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_kill")
int enter_kill(struct trace_event_raw_sys_enter *ctx)
{
    if (!is_task_wanted())
        return 0;
    struct signal_event e = {};
    e.hdr.size = sizeof(e);
    e.hdr.ts_enter_ns = bpf_ktime_get_ns();
    e.target_pid = (__s32)ctx->args[0];
    e.signal = (__u32)ctx->args[1];
    is_inflight_put(&inflight, &e);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_kill")
int exit_kill(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct signal_event));
    return 0;
}
