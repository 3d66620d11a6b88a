/*
 * ptrace_record.h — the one definition of the ptrace plugin's ring-buffer record: one
 * ptrace(2) request. Included by ptrace.bpf.c and imported by the Swift decoder (module
 * PtraceRecord).
 */
#ifndef INFRASIGHT_PTRACE_RECORD_H
#define INFRASIGHT_PTRACE_RECORD_H

#include "infrasight_event.h"

struct is_ptrace_event {
    struct is_event_header hdr;
    __s64 request;
    __s64 target_pid;
    __u64 addr;
    __u64 data;
};

#endif
