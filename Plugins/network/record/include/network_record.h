/*
 * network_record.h — the one definition of the network plugin's ring-buffer record:
 * connect(2), accept(2), accept4(2). Included by network.bpf.c and imported by the Swift
 * decoder (module NetworkRecord).
 */
#ifndef INFRASIGHT_NETWORK_RECORD_H
#define INFRASIGHT_NETWORK_RECORD_H

#include "infrasight_event.h"

enum is_network_kind {
    IS_NET_CONNECT = 1,
    IS_NET_ACCEPT,
    IS_NET_ACCEPT4,
};

#define IS_UNIX_PATH_LEN 108

/* Addresses are in network byte order as the kernel keeps them (IPv4 in the first four
 * bytes); ports in host order. For every row, `s` is the connection's initiator and `d`
 * its responder: a connect row's s is the local socket, an accept row's s the peer. */
struct is_network_event {
    struct is_event_header hdr;
    __u16 family;       /* AF_INET, AF_INET6, AF_UNIX, ... */
    __u16 protocol;     /* IPPROTO_TCP, IPPROTO_UDP, ...; 0 when unknown */
    __u16 sport;
    __u16 dport;
    __u8 saddr[16];
    __u8 daddr[16];
    __s32 fd;           /* the socket: connect's fd, accept's new fd (or -1) */
    __u32 unix_path_len;
    __u64 sockaddr_ptr; /* the user pointer, to re-read at exit (kernel side only) */
    char unix_path[IS_UNIX_PATH_LEN]; /* sun_path; an abstract name starts with NUL */
    __u32 _pad;
};

#endif
