// The one place libfuse's low-level API is included, with the API version
// pinned: libfuse 3.14 as Debian 12 ships it (fuse_session_custom_io exists
// since 3.13; the kernel ABI it knows stops at protocol 7.38, see fuse_abi.h).
#pragma once

#ifdef FUSE_USE_VERSION
#error "include nydusd/fuse/libfuse.h instead of defining FUSE_USE_VERSION"
#endif
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

static_assert(FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 13,
              "fuse_session_custom_io needs libfuse >= 3.13");
static_assert(sizeof(fuse_ino_t) == 8, "node ids are 64 bits");
