#include "infrasight_plugin.h"

/* The fixed prefix must never move: the host reads it before trusting anything else. */
_Static_assert(__builtin_offsetof(is_plugin_descriptor, magic) == 0, "magic at 0");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, abi_major) == 4, "abi_major at 4");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, abi_minor) == 6, "abi_minor at 6");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, struct_size) == 8, "struct_size at 8");

/* What ABI 1.0 and 1.1 laid out never moves (LP64): a newer host reads an older plugin
 * by these offsets, and an older host reads a newer plugin's prefix. */
_Static_assert(__builtin_offsetof(is_plugin_descriptor, tables) == 56, "tables at 56");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, create) == 88, "create at 88");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, last_error) == 112, "last_error at 112");
_Static_assert(__builtin_offsetof(is_plugin_descriptor, create_with_input) == 120, "1.1 members after 1.0's 120 bytes");
_Static_assert(__builtin_offsetof(is_table_descriptor, derived_columns) == 24, "1.1 members after 1.0's 24 bytes");
_Static_assert(sizeof(is_table_descriptor) == 40, "is_table_descriptor is 40 bytes in 1.1");
_Static_assert(sizeof(is_option_descriptor) == 40, "is_option_descriptor is 40 bytes since 1.0");
_Static_assert(sizeof(is_derived_column) == 32, "is_derived_column is 32 bytes in 1.1");
_Static_assert(sizeof(is_create_input) == 32, "is_create_input is 32 bytes in 1.1");
