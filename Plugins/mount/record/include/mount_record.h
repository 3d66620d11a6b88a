/*
 * mount_record.h — the one definition of the mount plugin's ring-buffer record: mount(2)
 * and umount2(2). Included by mount.bpf.c and imported by the Swift decoder (module
 * MountRecord).
 */
#ifndef INFRASIGHT_MOUNT_RECORD_H
#define INFRASIGHT_MOUNT_RECORD_H

#include "infrasight_event.h"

enum is_mount_kind {
    IS_MOUNT_MOUNT = 1,
    IS_MOUNT_UMOUNT,
};

#define IS_MOUNT_STR_LEN 256

struct is_mount_event {
    struct is_event_header hdr;
    __u64 flags;
    __u32 dev_name_len;
    __u32 dir_name_len;
    __u32 type_len;
    __u32 _pad;
    /* The user pointers, to re-read at exit (kernel side only). */
    __u64 dev_name_ptr;
    __u64 dir_name_ptr;
    __u64 type_ptr;
    char dev_name[IS_MOUNT_STR_LEN];
    char dir_name[IS_MOUNT_STR_LEN];
    char type[IS_MOUNT_STR_LEN];
};

#endif
