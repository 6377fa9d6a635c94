// Serializes an Image into a RAFS v6 bootstrap (§3-§11, §19): block 0 with
// the superblock, extended superblock and device slots; the blob table; the
// inodes with their xattrs, inline tails and chunk indexes; out-of-line
// directory and symlink blocks; the chunk table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "tools/nydus-image/tree.h"

namespace nydus::builder {

// mapped_blkaddr of each blob in a flat image that starts with a bootstrap
// of `bootstrap_size` bytes (§5: 512 KiB aligned, in blob order).
std::vector<uint32_t> flat_mapped_blkaddrs(uint64_t bootstrap_size, const std::vector<uint64_t>& blob_blocks);

Result<std::vector<uint8_t>> write_bootstrap(const Image& img);

}  // namespace nydus::builder
