/* Compile-time checks that the record layouts are the same on every user-space target as
 * for -target bpf (which has no implicit padding surprises with these explicit pads). */
#include "infrasight_event.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_event_header) == 88, "is_event_header layout changed");
_Static_assert(offsetof(struct is_event_header, cgroup_id) == 40, "is_event_header layout");
_Static_assert(offsetof(struct is_tracing_event, filename) == 88 + 40, "is_tracing_event layout");
