/* Compile-time checks that the tracing record's layout is the same on every user-space
 * target as for -target bpf: tracing.bpf.c and the Swift decoder share the header, and
 * these pin what they share. Exec records send the whole struct, the others end at argv. */
#include "tracing_record.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_tracing_event) == 1424, "is_tracing_event layout changed");
_Static_assert(offsetof(struct is_tracing_event, filename) == 104 + 40, "is_tracing_event layout");
_Static_assert(offsetof(struct is_tracing_event, argv) == 104 + 40 + IS_PATH_LEN, "is_tracing_event layout");
