/* The one definition of the signals plugin's ring-buffer record, included by
 * signals.bpf.c and imported by the Swift decoder. */
#ifndef SIGNAL_EVENT_H
#define SIGNAL_EVENT_H

#include "infrasight_event.h"

struct signal_event {
    struct is_event_header hdr; /* every record starts with the common header */
    __s32 target_pid;           /* kill()'s pid argument: > 0 a process, 0/-1/< -1 groups */
    __u32 signal;
};

#endif
