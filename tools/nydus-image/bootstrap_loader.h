// Reads a bootstrap back into an Image (tree, blob table, chunk table), the
// input of merge. Uses only the reader contract (nydusd/rafs/bootstrap.h),
// which has validated the file; this walk adds the structural guards a tree
// needs (a directory reachable twice is refused).
#pragma once

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"
#include "tools/nydus-image/tree.h"

namespace nydus::builder {

// Every regular file's chunk list indexes the returned Image::chunks, which
// holds one entry per distinct (blob, CI index) the files reference.
Result<Image> load_image(const rafs::Bootstrap& bs);

}  // namespace nydus::builder
