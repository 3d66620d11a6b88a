// SPDX-License-Identifier: GPL-2.0
/*
 * network.bpf.c — connect(2), accept(2), accept4(2). The destination of a connect comes
 * from its sockaddr argument (read at enter, again at exit if that failed); the local end
 * of a connect and both ends of an accepted socket come from the socket itself, found
 * through the file descriptor at syscall exit (tracepoints stand in for the kprobes this
 * kernel lacks).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "infrasight_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_UNIX_ 1
#define AF_INET_ 2
#define AF_INET6_ 10

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct is_network_event);
} inflight SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct is_network_event);
} scratch SEC(".maps");

static __always_inline struct is_network_event *begin(__u16 kind, __s32 fd)
{
    if (!is_task_wanted())
        return NULL;
    __u32 zero = 0;
    struct is_network_event *e = bpf_map_lookup_elem(&scratch, &zero);
    if (!e)
        return NULL;
    __builtin_memset(e, 0, sizeof(*e));
    is_begin(&e->hdr, kind, sizeof(*e));
    e->fd = fd;
    return e;
}

/* The destination from a connect's sockaddr; false when it is not readable (yet). */
static __always_inline bool read_sockaddr(struct is_network_event *e, const void *uaddr)
{
    __u16 family = 0;
    if (!uaddr || bpf_probe_read_user(&family, sizeof(family), uaddr))
        return false;
    e->family = family;
    if (family == AF_INET_) {
        struct sockaddr_in sin = {};
        if (bpf_probe_read_user(&sin, sizeof(sin), uaddr))
            return false;
        e->dport = bpf_ntohs(sin.sin_port);
        __builtin_memcpy(e->daddr, &sin.sin_addr.s_addr, 4);
    } else if (family == AF_INET6_) {
        struct sockaddr_in6 sin6 = {};
        if (bpf_probe_read_user(&sin6, sizeof(sin6), uaddr))
            return false;
        e->dport = bpf_ntohs(sin6.sin6_port);
        __builtin_memcpy(e->daddr, &sin6.sin6_addr, 16);
    } else if (family == AF_UNIX_) {
        /* sun_path may hold an abstract name (leading NUL): copy the bytes, not a string. */
        if (bpf_probe_read_user(e->unix_path, sizeof(e->unix_path), (const char *)uaddr + 2))
            return false;
        e->unix_path_len = IS_UNIX_PATH_LEN;
    }
    return true;
}

/* The socket behind `fd` of the current task, or NULL. */
static __always_inline struct sock *socket_of(int fd)
{
    if (fd < 0)
        return NULL;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    if ((unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
        return NULL;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *file = NULL;
    bpf_core_read(&file, sizeof(file), &fds[fd]);
    if (!file)
        return NULL;
    struct socket *sock = BPF_CORE_READ(file, private_data);
    return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

/* Fills one end from a socket: the local end (`local`) or the peer. */
static __always_inline void read_end(struct sock *sk, __u16 family, bool local, __u8 *addr, __u16 *port)
{
    if (family == AF_INET_) {
        __be32 a = local ? BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr) : BPF_CORE_READ(sk, __sk_common.skc_daddr);
        __builtin_memcpy(addr, &a, 4);
    } else if (family == AF_INET6_) {
        struct in6_addr a = local ? BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr) : BPF_CORE_READ(sk, __sk_common.skc_v6_daddr);
        __builtin_memcpy(addr, &a, 16);
    }
    *port = local ? BPF_CORE_READ(sk, __sk_common.skc_num) : bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
    __s32 fd = (__s32)ctx->args[0];
    __u64 uaddr = ctx->args[1];
    struct is_network_event *e = begin(IS_NET_CONNECT, fd);
    if (!e)
        return 0;
    e->sockaddr_ptr = uaddr;
    read_sockaddr(e, (const void *)uaddr);
    is_inflight_put(&inflight, e);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
    __u64 id = is_thread_key();
    struct is_network_event *e = bpf_map_lookup_elem(&inflight, &id);
    if (!e)
        return 0;
    if (!e->family)
        read_sockaddr(e, (const void *)e->sockaddr_ptr);
    struct sock *sk = socket_of(e->fd);
    if (sk) {
        e->protocol = BPF_CORE_READ(sk, sk_protocol);
        if (e->family == AF_INET_ || e->family == AF_INET6_)
            read_end(sk, e->family, true, e->saddr, &e->sport);
    }
    is_inflight_finish(&inflight, &events, ctx->ret, sizeof(struct is_network_event));
    return 0;
}

static __always_inline int enter_accept_kind(__u16 kind)
{
    struct is_network_event *e = begin(kind, -1);
    if (e)
        is_inflight_put(&inflight, e);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(void *ctx) { return enter_accept_kind(IS_NET_ACCEPT); }

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(void *ctx) { return enter_accept_kind(IS_NET_ACCEPT4); }

static __always_inline int exit_accept_any(long ret)
{
    __u64 id = is_thread_key();
    struct is_network_event *e = bpf_map_lookup_elem(&inflight, &id);
    if (!e)
        return 0;
    if (ret >= 0) {
        e->fd = (__s32)ret;
        struct sock *sk = socket_of((int)ret);
        if (sk) {
            e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
            e->protocol = BPF_CORE_READ(sk, sk_protocol);
            /* The peer initiated the connection: it is the source. */
            read_end(sk, e->family, false, e->saddr, &e->sport);
            read_end(sk, e->family, true, e->daddr, &e->dport);
        }
    }
    is_inflight_finish(&inflight, &events, ret, sizeof(struct is_network_event));
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx) { return exit_accept_any(ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx) { return exit_accept_any(ctx->ret); }
