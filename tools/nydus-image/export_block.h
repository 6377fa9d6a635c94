// `nydus-image export --block`: one uncompressed file the kernel mounts with
// no options (§18 flat mode): the bootstrap, then each blob's uncompressed
// data at mapped_blkaddr * 4096. The device slots of the copied bootstrap
// get freshly computed mapped_blkaddr values, so images from builders that
// left them 0 export too.
#pragma once

#include <string>

#include "common/result.h"

namespace nydus::builder {

struct ExportResult {
  uint64_t size = 0;
  size_t blobs = 0;
};

Result<ExportResult> export_block(const std::string& bootstrap, const std::string& blob_dir,
                                  const std::string& output);

}  // namespace nydus::builder
