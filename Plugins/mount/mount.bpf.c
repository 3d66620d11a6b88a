// SPDX-License-Identifier: GPL-2.0
/* mount.bpf.c — mount(2) (source, target, filesystem type, flags) and umount2(2)
 * (target, flags). The record, too big for the stack, is built at enter in the calling
 * thread's task-local slot and sent from there at exit. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "infrasight_common.bpf.h"
#include "mount_record.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1024 * 1024);
} events SEC(".maps");

IS_INFLIGHT_MAP(inflight, struct is_mount_event);

static __always_inline struct is_mount_event *begin(__u16 kind)
{
    struct inflight_slot *s = is_inflight_enter(&inflight);
    if (!s)
        return NULL;
    struct is_mount_event *e = &s->e;
    is_begin(&e->hdr, kind, sizeof(*e));
    e->flags = 0;
    e->dev_name_len = e->dir_name_len = e->type_len = 0;
    e->dev_name[0] = e->dir_name[0] = e->type[0] = 0;
    e->dev_name_ptr = e->dir_name_ptr = e->type_ptr = 0;
    return e;
}

static __always_inline __u32 read_str(char *dst, const char *src)
{
    if (!src)
        return 0;
    long n = bpf_probe_read_user_str(dst, IS_MOUNT_STR_LEN, src);
    return n > 0 ? n - 1 : 0;
}

/* Re-reads at exit what the enter could not (see infrasight_event.h), then sends. Mounts
 * are rare and the slot is big: it is freed once sent rather than kept with the thread. */
static __always_inline void finish(long ret)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct inflight_slot *s = is_inflight_exit(&inflight, task);
    if (!s)
        return;
    struct is_mount_event *e = &s->e;
    if (!e->dev_name_len)
        e->dev_name_len = read_str(e->dev_name, (const char *)e->dev_name_ptr);
    if (!e->dir_name_len)
        e->dir_name_len = read_str(e->dir_name, (const char *)e->dir_name_ptr);
    if (!e->type_len)
        e->type_len = read_str(e->type, (const char *)e->type_ptr);
    is_inflight_send(&s->join, &events, &e->hdr, ret, sizeof(*e), task);
    bpf_task_storage_delete(&inflight, task);
}

SEC("tracepoint/syscalls/sys_enter_mount")
int enter_mount(struct trace_event_raw_sys_enter *ctx)
{
    /* Arguments first, into registers: the verifier refuses ctx loads through a pointer
     * the compiler has offset. */
    __u64 dev = ctx->args[0], dir = ctx->args[1], type = ctx->args[2], flags = ctx->args[3];
    struct is_mount_event *e = begin(IS_MOUNT_MOUNT);
    if (!e)
        return 0;
    e->dev_name_ptr = dev;
    e->dir_name_ptr = dir;
    e->type_ptr = type;
    e->dev_name_len = read_str(e->dev_name, (const char *)dev);
    e->dir_name_len = read_str(e->dir_name, (const char *)dir);
    e->type_len = read_str(e->type, (const char *)type);
    e->flags = flags;
    return 0;
}

/* The umount2 system call; its tracepoint is named after the kernel's sys_umount. */
SEC("tracepoint/syscalls/sys_enter_umount")
int enter_umount(struct trace_event_raw_sys_enter *ctx)
{
    __u64 dir = ctx->args[0], flags = ctx->args[1];
    struct is_mount_event *e = begin(IS_MOUNT_UMOUNT);
    if (!e)
        return 0;
    e->dir_name_ptr = dir;
    e->dir_name_len = read_str(e->dir_name, (const char *)dir);
    e->flags = flags;
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_mount")
int exit_mount(struct trace_event_raw_sys_exit *ctx)
{
    finish(ctx->ret);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_umount")
int exit_umount(struct trace_event_raw_sys_exit *ctx)
{
    finish(ctx->ret);
    return 0;
}
