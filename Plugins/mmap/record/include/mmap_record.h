/*
 * mmap_record.h — the one definition of the mmap plugin's ring-buffer record: one
 * mmap(2) call. Included by mmap.bpf.c and imported by the Swift decoder (module
 * MmapRecord).
 */
#ifndef INFRASIGHT_MMAP_RECORD_H
#define INFRASIGHT_MMAP_RECORD_H

#include "infrasight_event.h"

struct is_mmap_event {
    struct is_event_header hdr;
    __u64 addr;
    __u64 len;
    __u64 prot;
    __u64 flags;
    __s64 fd; /* -1 for anonymous mappings */
    __u64 off;
};

#endif
