/* Compile-time checks that the mount record's layout is the same on every user-space
 * target as for -target bpf (mount.bpf.c and the Swift decoder share the header). */
#include "mount_record.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_mount_event) == 104 + 48 + 3 * IS_MOUNT_STR_LEN, "is_mount_event layout changed");
_Static_assert(offsetof(struct is_mount_event, dev_name_ptr) == 104 + 24, "is_mount_event layout");
_Static_assert(offsetof(struct is_mount_event, dev_name) == 104 + 48, "is_mount_event layout");
