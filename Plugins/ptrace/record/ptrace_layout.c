/* Compile-time checks that the ptrace record's layout is the same on every user-space
 * target as for -target bpf (ptrace.bpf.c and the Swift decoder share the header). */
#include "ptrace_record.h"
#include <stddef.h>

_Static_assert(sizeof(struct is_ptrace_event) == 104 + 32, "is_ptrace_event layout changed");
_Static_assert(offsetof(struct is_ptrace_event, request) == 104, "is_ptrace_event layout");
_Static_assert(offsetof(struct is_ptrace_event, data) == 104 + 24, "is_ptrace_event layout");
