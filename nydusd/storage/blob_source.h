// One blob as a source of verified chunk data: resolve the chunk's
// compressed extent (chunk table, or the blob's CI array), read it from the
// backend, decompress it into exactly uncompressed_size bytes and, when
// validation is on, check its digest.
//
// Every failure is logged here, once, naming the blob id, the chunk (CI index
// and offsets) and the file the read was for; the returned error carries the
// same description.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/storage/backend.h"
#include "nydusd/storage/blob_meta.h"
#include "nydusd/storage/storage.h"

namespace nydus::storage {

class BlobSource {
 public:
  // `backend` and `metrics` must outlive the source. `work_dir` (may be
  // empty) is where the CI array is cached as <blob_id>.blob.meta.
  BlobSource(Backend* backend, rafs::BlobInfo blob, std::string work_dir,
             StorageMetrics* metrics, bool validate);
  // Pinned: meta_ refers to blob_.
  BlobSource(const BlobSource&) = delete;
  BlobSource& operator=(const BlobSource&) = delete;

  const rafs::BlobInfo& blob() const { return blob_; }
  bool validate() const { return validate_; }

  // Reads, decompresses and (validate) verifies one chunk from the backend.
  Result<std::vector<uint8_t>> fetch(const rafs::ChunkRef& chunk, std::string_view file_hint);

  // Verifies chunk data obtained elsewhere (read back from the cache file).
  Status verify(const rafs::ChunkRef& chunk, std::span<const uint8_t> data,
                std::string_view file_hint);

  // Paths of the files this source keeps in work_dir.
  std::vector<std::string> cache_files() const { return meta_.cache_files(); }

 private:
  Backend* backend_;
  rafs::BlobInfo blob_;
  StorageMetrics* metrics_;
  bool validate_;
  BlobMeta meta_;
  std::atomic<bool> warned_no_digest_{false};
};

}  // namespace nydus::storage
