// SPDX-License-Identifier: GPL-2.0
/*
 * network.bpf.c — connect(2), accept(2), accept4(2). The destination of a connect comes
 * from its sockaddr argument (read at enter, again at exit if that failed); the local end
 * of a connect and both ends of an accepted socket come from the socket itself, found
 * through the file descriptor at syscall exit (tracepoints stand in for the kprobes this
 * kernel lacks). The record is built at enter in the calling thread's task-local slot
 * and completed there at exit. A non-blocking TCP connect is held until the socket leaves
 * SYN_SENT, so its row carries the outcome rather than EINPROGRESS.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "infrasight_common.bpf.h"
#include "network_record.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_UNIX_ 1
#define AF_INET_ 2
#define AF_INET6_ 10
#define EINPROGRESS_ 115

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

IS_INFLIGHT_MAP(inflight, struct is_network_event);

/* Non-blocking TCP connects whose handshake has not ended, whole records keyed by the
 * socket: the row is sent when the socket leaves SYN_SENT, with the outcome. A plain hash,
 * not LRU: a full map must not evict a record silently (the connect is then sent at once,
 * with -EINPROGRESS). What is still here when the host stops is sent as it is (maps named
 * is_held*, see infrasight_common.bpf.h). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __type(key, __u64);
    __type(value, struct is_network_event);
} is_held_connects SEC(".maps");

static __always_inline struct is_network_event *begin(__u16 kind, __s32 fd)
{
    struct inflight_slot *s = is_inflight_enter(&inflight);
    if (!s)
        return NULL;
    struct is_network_event *e = &s->e;
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
    return 0;
}

/* Sends the held connect of socket `key` with its outcome: 0 once established, else the
 * socket's error (-ECONNREFUSED, -ETIMEDOUT, ...), or -EINPROGRESS when it was closed
 * before the handshake ended. The exit timestamp is the handshake's end. The syscall's exit
 * and the state change can race on two CPUs: whoever deletes the entry sends the row. */
static __always_inline void settle_connect(__u64 key, int newstate, struct sock *sk)
{
    struct is_network_event *held = bpf_map_lookup_elem(&is_held_connects, &key);
    if (!held)
        return;
    struct is_network_event *out = bpf_ringbuf_reserve(&events, sizeof(*out), 0);
    if (!out) {
        if (!bpf_map_delete_elem(&is_held_connects, &key))
            is_count_drop(IS_DROP_RINGBUF_FULL);
        return;
    }
    bpf_probe_read_kernel(out, sizeof(*out), held);
    if (bpf_map_delete_elem(&is_held_connects, &key)) {
        bpf_ringbuf_discard(out, BPF_RB_NO_WAKEUP); /* the other side sent it */
        return;
    }
    out->hdr.ts_exit_ns = bpf_ktime_get_ns();
    int err = BPF_CORE_READ(sk, sk_err);
    out->hdr.return_code = newstate != TCP_CLOSE ? 0 : err ? -err : -EINPROGRESS_;
    bpf_ringbuf_submit(out, is_wakeup_flags(&events));
}

/* Holds a non-blocking TCP connect until its handshake ends; false when it cannot be held
 * (the map is full) and must be sent now. The handshake may already have ended before the
 * entry was in place (on loopback it ends before connect returns): then it is settled here. */
static __always_inline bool hold_connect(struct inflight_slot *s, struct sock *sk, struct task_struct *task)
{
    struct is_network_event *e = &s->e;
    __u64 key = (__u64)sk;
    e->hdr.ts_exit_ns = bpf_ktime_get_ns();
    e->hdr.return_code = -EINPROGRESS_;
    is_fill_task_local(&e->hdr, &s->join.identity, task);
    if (bpf_map_update_elem(&is_held_connects, &key, e, BPF_NOEXIST))
        return false;
    int state = BPF_CORE_READ(sk, __sk_common.skc_state);
    if (state != TCP_SYN_SENT)
        settle_connect(key, state, sk);
    return true;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
    long ret = ctx->ret;
    struct task_struct *task = bpf_get_current_task_btf();
    struct inflight_slot *s = is_inflight_exit(&inflight, task);
    if (!s)
        return 0;
    struct is_network_event *e = &s->e;
    if (!e->family)
        read_sockaddr(e, (const void *)e->sockaddr_ptr);
    struct sock *sk = socket_of(e->fd);
    if (sk) {
        e->protocol = BPF_CORE_READ(sk, sk_protocol);
        if (e->family == AF_INET_ || e->family == AF_INET6_)
            read_end(sk, e->family, true, e->saddr, &e->sport);
        if (ret == -EINPROGRESS_ && e->protocol == IPPROTO_TCP && hold_connect(s, sk, task))
            return 0;
    }
    is_inflight_send(&s->join, &events, &e->hdr, ret, sizeof(*e), task);
    return 0;
}

/* A socket leaving SYN_SENT ends a held connect's handshake (in whatever context the
 * change happens: often softirq, on the packet that answers the SYN). */
SEC("tracepoint/sock/inet_sock_set_state")
int connect_settled(struct trace_event_raw_inet_sock_set_state *ctx)
{
    if (ctx->oldstate != TCP_SYN_SENT || ctx->protocol != IPPROTO_TCP)
        return 0;
    settle_connect((__u64)ctx->skaddr, ctx->newstate, (struct sock *)ctx->skaddr);
    return 0;
}

static __always_inline int enter_accept_kind(__u16 kind)
{
    begin(kind, -1);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(void *ctx) { return enter_accept_kind(IS_NET_ACCEPT); }

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(void *ctx) { return enter_accept_kind(IS_NET_ACCEPT4); }

static __always_inline int exit_accept_any(long ret)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct inflight_slot *s = is_inflight_exit(&inflight, task);
    if (!s)
        return 0;
    struct is_network_event *e = &s->e;
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
    is_inflight_send(&s->join, &events, &e->hdr, ret, sizeof(*e), task);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx) { return exit_accept_any(ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx) { return exit_accept_any(ctx->ret); }
