// `nydus-image merge`: stacks layer bootstraps (lowest first) into one
// image with overlay semantics, referencing every layer's blob.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "tools/nydus-image/tree.h"

namespace nydus::builder {

// Applies `upper` on top of `lower` (both directories), as overlayfs shows a
// stack: upper entries win; a whiteout (char 0:0) deletes the lower entry;
// an opaque upper directory hides everything below it; a directory present
// in both keeps the upper's attributes and merges children. Moves subtrees
// of `upper` into `lower`.
void overlay_apply(Inode& lower, Inode& upper);

// Removes whiteouts and the opaque xattr everywhere below `dir`: markers only
// mean something relative to a lower layer.
void strip_markers(Inode& dir);

// Stacks loaded layer images into one: blob tables are concatenated (a blob
// id present in several layers is listed once), chunk tables remapped, and
// the trees overlaid. OCI `.wh.` markers are honoured too.
Result<Image> merge_images(std::vector<Image> layers);

struct MergeOptions {
  std::vector<std::string> sources;  // layer bootstraps, lowest first
  std::string bootstrap;             // output
  std::optional<std::string> blob_dir;  // when given, every referenced blob must be there
};

struct MergeResult {
  size_t blobs = 0;
  uint64_t chunks = 0;
  uint64_t bootstrap_size = 0;
};

Result<MergeResult> run_merge(const MergeOptions& opts);

}  // namespace nydus::builder
