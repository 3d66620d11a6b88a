#define _GNU_SOURCE
#include "host_shims.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <string.h>

#ifndef FILEID_KERNFS
#define FILEID_KERNFS 0xfe /* include/linux/exportfs.h */
#endif

int is_open_cgroup_by_id(int mount_fd, uint64_t cgroup_id)
{
    union {
        struct file_handle handle;
        char storage[sizeof(struct file_handle) + sizeof(uint64_t)];
    } h;
    h.handle.handle_bytes = sizeof(uint64_t);
    h.handle.handle_type = FILEID_KERNFS;
    memcpy(h.handle.f_handle, &cgroup_id, sizeof(cgroup_id));
    int fd = open_by_handle_at(mount_fd, &h.handle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int is_limit_malloc_arenas(int arenas)
{
    return mallopt(M_ARENA_MAX, arenas);
}
