/* Compile-time checks that the network record's layout is the same on every user-space
 * target as for -target bpf (network.bpf.c and the Swift decoder share the header). */
#include "network_record.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_network_event) == 272, "is_network_event layout changed");
_Static_assert(offsetof(struct is_network_event, saddr) == 104 + 8, "is_network_event layout");
_Static_assert(offsetof(struct is_network_event, unix_path) == 104 + 56, "is_network_event layout");
