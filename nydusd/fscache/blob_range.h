// A data blob as the kernel sees it in fscache mode: its uncompressed
// address space, where chunk k lies at its uncompressed offset (4 KiB
// aligned) and the gaps between chunks are zeros. EROFS READs ask for
// [off, off+len) of that space; this produces those bytes through the
// storage layer (nydusd/storage/): the chunk's compressed extent from the
// blob's CI array, a backend read, decompression, an optional digest check,
// and, with a blob cache configured, the persistent <work_dir>/<blob_id>.blob.data
// cache that FUSE mode uses too (so a chunk is fetched once for both).
//
// This is the "uncompressed range of blob B" entry point the storage API
// (storage.h, per-file reads only) does not have; it is built from the
// storage building blocks (Backend, BlobSource, BlobCache) and lives here so
// that the storage module stays untouched.
//
// The chunk list is the blob's CI array (rafs-v6-format.md §12), loaded once
// on the first read: from <work_dir>/<blob_id>.blob.meta when a valid one is
// there (written by the storage layer or the reference nydusd), else from
// the backend. A failed load is not remembered; the next read retries. Chunk
// digests (for `validate`) come from the bootstrap chunk table when present.
//
// Thread safety: read() may be called concurrently; concurrent reads of one
// chunk share one backend fetch when the blob cache is on.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nydusd/fscache/object_source.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/storage/backend.h"
#include "nydusd/storage/blob_cache.h"
#include "nydusd/storage/blob_source.h"
#include "nydusd/storage/storage.h"

namespace nydus::fscache {

class BlobRangeSource final : public ObjectSource {
 public:
  // `config.cache.type` "blobcache" enables the persistent blob cache in
  // config.cache.work_dir; `meta_dir` (may be empty) is where a blob.meta is
  // looked for. The bootstrap is kept for chunk digests.
  static Result<std::shared_ptr<BlobRangeSource>> open(const storage::StorageConfig& config,
                                                       const std::string& meta_dir,
                                                       std::shared_ptr<const rafs::Bootstrap> bootstrap,
                                                       const rafs::BlobInfo& blob);
  ~BlobRangeSource() override;

  uint64_t size() const override { return blob_.uncompressed_size; }
  Status read(uint64_t offset, std::span<uint8_t> out) override;
  std::string describe() const override;
  // Widened to the chunks [offset, end) touches, by at most kMaxFillGrowth
  // bytes (else not at all).
  std::pair<uint64_t, uint64_t> fill_range(uint64_t offset, uint64_t end) override;
  static constexpr uint64_t kMaxFillGrowth = 4ull << 20;

  const storage::StorageMetrics& metrics() const { return *metrics_; }
  const rafs::BlobInfo& blob() const { return blob_; }

 private:
  BlobRangeSource(rafs::BlobInfo blob, std::string meta_dir, std::shared_ptr<const rafs::Bootstrap> bootstrap);

  // The CI array, loaded on first use (see above).
  Result<std::shared_ptr<const std::vector<rafs::ChunkInfo>>> chunks();
  // Copies [offset, offset + out.size()) of one chunk into out.
  Status read_chunk(const rafs::ChunkRef& ref, uint32_t offset, std::span<uint8_t> out);

  const rafs::BlobInfo blob_;
  const std::string meta_dir_;
  const std::shared_ptr<const rafs::Bootstrap> bootstrap_;
  // Declared in dependency order: the cache uses the source, which uses the
  // backend; all count into metrics_.
  std::unique_ptr<storage::StorageMetrics> metrics_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<storage::BlobSource> source_;
  std::unique_ptr<storage::BlobCache> cache_;  // null without a blob cache

  std::mutex mu_;
  std::shared_ptr<const std::vector<rafs::ChunkInfo>> chunks_;  // guarded by mu_; set once
};

}  // namespace nydus::fscache
