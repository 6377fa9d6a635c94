// Turns a directory on the local filesystem into an Image tree. File content
// is not read here: regular files remember their source path, and
// add_directory_content() streams them into a ContentSink in tree order.
#pragma once

#include <string>

#include "common/result.h"
#include "tools/nydus-image/content_sink.h"
#include "tools/nydus-image/tree.h"
#include "tools/nydus-image/whiteout.h"

namespace nydus::builder {

// Scans `source` (not following symlinks below it). Regular files sharing a
// (dev, ino) become one Inode. Xattrs RAFS cannot store are logged and
// skipped. With WhiteoutSpec::kOci, `.wh.*` markers are converted.
Result<InodePtr> scan_directory(const std::string& source, WhiteoutSpec spec);

// Reads every regular file with content (each hard-linked inode once) and
// stores its chunk list.
Status add_directory_content(const InodePtr& root, ContentSink& sink);

}  // namespace nydus::builder
