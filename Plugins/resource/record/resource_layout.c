/* Compile-time checks that the resource record's layout is the same on every user-space
 * target as for -target bpf (resource.bpf.c and the Swift decoder share the header). */
#include "resource_record.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_resource_counters) == 9 * 8, "is_resource_counters layout changed");
_Static_assert(sizeof(struct is_resource_event) == 104 + 9 * 8 + 8, "is_resource_event layout changed");
_Static_assert(offsetof(struct is_resource_event, is_active) == 104 + 9 * 8, "is_resource_event layout");
