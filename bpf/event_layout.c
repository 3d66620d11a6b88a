/* Compile-time checks that the common record header's layout is the same on every
 * user-space target as for -target bpf (which has no implicit padding surprises with
 * these explicit pads). Each plugin's record checks its own layout beside its header
 * (Plugins/<name>/record/<name>_layout.c). */
#include "infrasight_event.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_event_header) == 104, "is_event_header layout changed");
_Static_assert(offsetof(struct is_event_header, cgroup_id) == 40, "is_event_header layout");
/* The header of ABI 1.0 and 1.1 ends at start_time_ns: the host reads an older plugin's
 * records with that size (PluginChannel). */
_Static_assert(offsetof(struct is_event_header, start_time_ns) == 88, "is_event_header layout");
_Static_assert(offsetof(struct is_event_header, parent_start_time_ns) == 96, "is_event_header layout");
