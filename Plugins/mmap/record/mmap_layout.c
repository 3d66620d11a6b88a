/* Compile-time checks that the mmap record's layout is the same on every user-space
 * target as for -target bpf (mmap.bpf.c and the Swift decoder share the header). */
#include "mmap_record.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_mmap_event) == 104 + 48, "is_mmap_event layout changed");
_Static_assert(offsetof(struct is_mmap_event, addr) == 104, "is_mmap_event layout");
_Static_assert(offsetof(struct is_mmap_event, off) == 104 + 40, "is_mmap_event layout");
