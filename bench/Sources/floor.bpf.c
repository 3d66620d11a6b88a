// SPDX-License-Identifier: GPL-2.0
/* The floor of tracing overhead: empty programs on the tracepoints `tracing` uses for
 * openat. Whatever a real probe costs beyond this is ours. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_openat")
int floor_enter(void *ctx) { return 0; }

SEC("tracepoint/syscalls/sys_exit_openat")
int floor_exit(void *ctx) { return 0; }
