// SPDX-License-Identifier: GPL-2.0
/* mmap.bpf.c — mmap(2): address, length, protection, flags, fd, offset; the result is
 * the mapped address or -errno. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "infrasight_common.bpf.h"
#include "mmap_record.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct is_mmap_event);
} inflight SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_mmap")
int enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
    if (!is_task_wanted())
        return 0;
    struct is_mmap_event e = {};
    is_begin(&e.hdr, 1, sizeof(e));
    e.addr = ctx->args[0];
    e.len = ctx->args[1];
    e.prot = ctx->args[2];
    e.flags = ctx->args[3];
    e.fd = (__s64)(int)ctx->args[4];
    e.off = ctx->args[5];
    is_inflight_put(&inflight, &e);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct is_mmap_event));
    return 0;
}
