/* Compile-time checks that the common record header's layout is the same on every
 * user-space target as for -target bpf (which has no implicit padding surprises with
 * these explicit pads). Each plugin's record checks its own layout beside its header
 * (Plugins/<name>/record/<name>_layout.c). */
#include "infrasight_event.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_event_header) == 88, "is_event_header layout changed");
_Static_assert(offsetof(struct is_event_header, cgroup_id) == 40, "is_event_header layout");
