// Turns an OCI layer tar (plain, gzip, or anything libarchive can unwrap;
// ustar, GNU and PAX including SCHILY.xattr.*) into an Image tree. Content
// is streamed to the ContentSink in tar order while reading, so a layer of
// any size is read once and never spooled.
#pragma once

#include <string>

#include "common/result.h"
#include "tools/nydus-image/content_sink.h"
#include "tools/nydus-image/tree.h"
#include "tools/nydus-image/whiteout.h"

namespace nydus::builder {

// Later entries for the same path replace earlier ones (a directory keeps
// its children). Parents missing from the tar are created as 0755 root-owned
// directories. Hard links to regular files share one Inode; hard links to
// anything else become copies.
Result<InodePtr> read_tar_layer(const std::string& path, WhiteoutSpec spec, ContentSink& sink);

}  // namespace nydus::builder
