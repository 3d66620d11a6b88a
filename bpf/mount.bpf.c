// SPDX-License-Identifier: GPL-2.0
/* mount.bpf.c — mount(2) (source, target, filesystem type, flags) and umount2(2)
 * (target, flags). The record is built in a per-CPU slot: it is too big for the stack. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "infrasight_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1024 * 1024);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct is_mount_event);
} inflight SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct is_mount_event);
} scratch SEC(".maps");

static __always_inline struct is_mount_event *begin(__u16 kind)
{
    if (!is_task_wanted())
        return NULL;
    __u32 zero = 0;
    struct is_mount_event *e = bpf_map_lookup_elem(&scratch, &zero);
    if (!e)
        return NULL;
    is_begin(&e->hdr, kind, sizeof(*e));
    e->flags = 0;
    e->dev_name_len = e->dir_name_len = e->type_len = 0;
    e->dev_name[0] = e->dir_name[0] = e->type[0] = 0;
    return e;
}

static __always_inline __u32 read_str(char *dst, const char *src)
{
    if (!src)
        return 0;
    long n = bpf_probe_read_user_str(dst, IS_MOUNT_STR_LEN, src);
    return n > 0 ? n - 1 : 0;
}

SEC("tracepoint/syscalls/sys_enter_mount")
int enter_mount(struct trace_event_raw_sys_enter *ctx)
{
    struct is_mount_event *e = begin(IS_MOUNT_MOUNT);
    if (!e)
        return 0;
    e->dev_name_len = read_str(e->dev_name, (const char *)ctx->args[0]);
    e->dir_name_len = read_str(e->dir_name, (const char *)ctx->args[1]);
    e->type_len = read_str(e->type, (const char *)ctx->args[2]);
    e->flags = ctx->args[3];
    is_inflight_put(&inflight, e);
    return 0;
}

/* The umount2 system call; its tracepoint is named after the kernel's sys_umount. */
SEC("tracepoint/syscalls/sys_enter_umount")
int enter_umount(struct trace_event_raw_sys_enter *ctx)
{
    struct is_mount_event *e = begin(IS_MOUNT_UMOUNT);
    if (!e)
        return 0;
    e->dir_name_len = read_str(e->dir_name, (const char *)ctx->args[0]);
    e->flags = ctx->args[1];
    is_inflight_put(&inflight, e);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_mount")
int exit_mount(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct is_mount_event));
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_umount")
int exit_umount(struct trace_event_raw_sys_exit *ctx)
{
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct is_mount_event));
    return 0;
}
