// Reads file data of a bootstrap from local blob files (localfs layout:
// <blob_dir>/<blob_id>): fetches each chunk's compressed extent, decompresses
// it, checks it against the blob's CI array and verifies its digest when the
// chunk table has one. For tools and tests (nydus-image check/export, kernel
// cross-checks); nydusd's storage layer has its own cached, concurrent path.
//
// Not thread-safe: blob fds and CI arrays are cached lazily, unguarded.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "nydusd/rafs/bootstrap.h"

namespace nydus::rafs {

class BlobReader {
 public:
  BlobReader(std::shared_ptr<const Bootstrap> bootstrap, std::string blob_dir);

  // Bytes [offset, offset+length) of regular file `nid`, clipped at EOF.
  Result<std::vector<uint8_t>> read(uint64_t nid, uint64_t offset = 0,
                                    uint64_t length = std::numeric_limits<uint64_t>::max());
  // One chunk, decompressed to exactly c.uncompressed_size bytes and verified.
  Result<std::vector<uint8_t>> read_chunk(const ChunkRef& c);
  // The blob's CI array, read from the blob file once.
  Result<const std::vector<ChunkInfo>*> chunk_infos(uint32_t blob_index);
  // Writes the blob's uncompressed cache, the kernel's extra device: every
  // chunk decompressed at its uncompressed offset, the file sized
  // uncompressed_size (gaps stay sparse zeros).
  Status write_uncompressed_blob(uint32_t blob_index, const std::string& out_path);

  std::string blob_path(uint32_t blob_index) const;

 private:
  struct BlobState {
    UniqueFd fd;
    std::optional<std::vector<ChunkInfo>> ci;
  };
  Result<BlobState*> blob(uint32_t blob_index);
  // Fetches, decompresses and verifies the chunk `info` (CI entry ci_index).
  Result<std::vector<uint8_t>> fetch(uint32_t blob_index, uint32_t ci_index, const ChunkInfo& info,
                                     const std::optional<Digest>& digest);

  std::shared_ptr<const Bootstrap> bootstrap_;
  std::string blob_dir_;
  std::vector<BlobState> blobs_;
};

}  // namespace nydus::rafs
