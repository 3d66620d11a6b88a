/*
 * resource_record.h — the one definition of the resource plugin's ring-buffer record:
 * one process's usage over one interval. Included by resource.bpf.c and imported by the
 * Swift decoder (module ResourceRecord).
 */
#ifndef INFRASIGHT_RESOURCE_RECORD_H
#define INFRASIGHT_RESOURCE_RECORD_H

#include "infrasight_event.h"

struct is_resource_counters {
    __u64 cpu_ns;
    __u64 user_faults;
    __u64 kernel_faults;
    __u64 vm_mmap_bytes;
    __u64 vm_munmap_bytes;
    __u64 vm_brk_grow_bytes;
    __u64 vm_brk_shrink_bytes;
    __u64 bytes_read;
    __u64 bytes_written;
};

/* One interval of one process (thread group). ts_enter_ns == ts_exit_ns == emission time. */
struct is_resource_event {
    struct is_event_header hdr;
    struct is_resource_counters c;
    __u32 is_active; /* 0 on the last row, emitted when the process exits */
    __u32 _pad;
};

#endif
