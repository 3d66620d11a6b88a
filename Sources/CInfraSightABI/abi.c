#include "infrasight_plugin.h"

/* The fixed prefix must never move: the host reads it before trusting anything else. */
_Static_assert(__builtin_offsetof(is_plugin_descriptor, magic) == 0, "magic at 0");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, abi_major) == 4, "abi_major at 4");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, abi_minor) == 6, "abi_minor at 6");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, struct_size) == 8, "struct_size at 8");
