/* host_shims.h — Linux calls that the Swift Glibc module does not expose (they need
 * _GNU_SOURCE), wrapped in plain functions. */
#ifndef INFRASIGHT_HOST_SHIMS_H
#define INFRASIGHT_HOST_SHIMS_H

#include <stdint.h>

/* Opens the cgroup2 directory whose id (the kernfs inode, what bpf_get_current_cgroup_id
 * returns) is `cgroup_id`, relative to the cgroup2 mount open as `mount_fd`. Returns a
 * file descriptor, or -errno. Needs CAP_DAC_READ_SEARCH. */
int is_open_cgroup_by_id(int mount_fd, uint64_t cgroup_id);

/* Limits glibc malloc to `arenas` arenas (mallopt M_ARENA_MAX). Returns 1 on success. */
int is_limit_malloc_arenas(int arenas);

#endif
