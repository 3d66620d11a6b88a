// SPDX-License-Identifier: GPL-2.0
/* mmap.bpf.c — mmap(2): address, length, protection, flags, fd, offset; the result is
 * the mapped address or -errno. The call waits for its exit in the calling thread's
 * task-local slot. */
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

IS_INFLIGHT_MAP(inflight, struct is_mmap_event);

SEC("tracepoint/syscalls/sys_enter_mmap")
int enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
    __u64 addr = ctx->args[0], len = ctx->args[1], prot = ctx->args[2], flags = ctx->args[3], fd = ctx->args[4], off = ctx->args[5];
    struct inflight_slot *s = is_inflight_enter(&inflight);
    if (!s)
        return 0;
    is_begin(&s->e.hdr, 1, sizeof(s->e));
    s->e.addr = addr;
    s->e.len = len;
    s->e.prot = prot;
    s->e.flags = flags;
    s->e.fd = (__s64)(int)fd;
    s->e.off = off;
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct is_mmap_event));
    return 0;
}
