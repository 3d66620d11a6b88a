// SPDX-License-Identifier: GPL-2.0
/* The host's own BPF: every cgroup2 cgroup's path, kept by id when the cgroup is created.
 *
 * The enricher names a row's cgroup from its id by opening the id as a cgroup2 file
 * handle; a cgroup already removed when its rows are read (a one-shot container whose
 * runtime deletes it at exit, as the kubelet's containerd does) cannot be opened any more.
 * Its path, recorded here at mkdir, still names it and the container in it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define IS_CGROUP_PATH_LEN 256

struct cgroup_path {
    char path[IS_CGROUP_PATH_LEN];
};

/* Recent cgroups by id: a cache behind the file-handle lookup, which names every cgroup
 * that still exists; the oldest entries make room. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct cgroup_path);
} is_cgroup_paths SEC(".maps");

/* The value is larger than is wise on the 512-byte stack: built in a per-CPU slot. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct cgroup_path);
} scratch SEC(".maps");

/* The tracepoint's record (events/cgroup/cgroup_mkdir/format). */
struct cgroup_mkdir_args {
    __u64 common;
    int root;
    int level;
    __u64 id;
    __u32 path_loc; /* __data_loc: offset in the low 16 bits, length in the high 16 */
};

SEC("tracepoint/cgroup/cgroup_mkdir")
int on_cgroup_mkdir(struct cgroup_mkdir_args *ctx)
{
    /* Hierarchy 0 is cgroup2's (the "0::" line of /proc/<pid>/cgroup); ids of the v1
     * hierarchies are another numbering. */
    if (ctx->root != 0)
        return 0;
    __u32 zero = 0;
    struct cgroup_path *v = bpf_map_lookup_elem(&scratch, &zero);
    if (!v)
        return 0;
    __u64 base = (__u64)ctx;
    if (bpf_probe_read_kernel_str(v->path, sizeof(v->path), (void *)(base + (ctx->path_loc & 0xFFFF))) <= 0)
        return 0;
    __u64 id = ctx->id;
    bpf_map_update_elem(&is_cgroup_paths, &id, v, BPF_ANY);
    return 0;
}
