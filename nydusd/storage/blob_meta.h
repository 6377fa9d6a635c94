// The compressed extents of a blob's chunks that the bootstrap chunk table
// does not list: they come from the blob's CI array (spec §12), loaded once
// per blob, on first need, from <work_dir>/<blob_id>.blob.meta when that
// cache file is present and valid, else from the backend (and then saved to
// that file, written to a temporary name and renamed into place).
//
// Thread safety: resolve() may be called concurrently; the first caller
// loads the array under mu_, later callers only read it. A failed load is not
// remembered, so the next resolve() tries again.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/rafs/layout.h"
#include "nydusd/storage/backend.h"

namespace nydus::storage {

class BlobMeta {
 public:
  // `work_dir` may be empty: the array is then kept in memory only.
  BlobMeta(Backend* backend, const rafs::BlobInfo& blob, std::string work_dir);

  // Fills chunk->compressed_offset/compressed_size/compressed from CI entry
  // chunk->ci_index, after checking that the entry's uncompressed extent is
  // the one the bootstrap gave.
  Status resolve(rafs::ChunkRef* chunk);

  std::vector<std::string> cache_files() const;

 private:
  Status load_locked();

  Backend* backend_;
  const rafs::BlobInfo& blob_;  // owned by the BlobSource that owns this
  std::string meta_path_;       // empty without a work_dir

  mutable std::mutex mu_;
  std::optional<std::vector<rafs::ChunkInfo>> entries_;  // guarded by mu_; set once
};

}  // namespace nydus::storage
