// The BlobStore implementation: ties the bootstrap's chunk map to per-blob
// sources (backend + decode + verify), per-blob caches and the prefetcher.
//
// Ownership: the store owns the backend, one BlobSource per blob, one
// BlobCache per blob (none when cache.type is ""), and the prefetcher, which
// is declared last so it is stopped and joined before anything it uses is
// destroyed.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nydusd/storage/backend.h"
#include "nydusd/storage/blob_cache.h"
#include "nydusd/storage/blob_source.h"
#include "nydusd/storage/prefetcher.h"
#include "nydusd/storage/storage.h"

namespace nydus::storage {

// Builds the backend; the seam tests use to wrap or replace it.
using BackendFactory = std::function<Result<std::unique_ptr<Backend>>(
    const BackendConfig&, const std::vector<rafs::BlobInfo>&, StorageMetrics*)>;

class BlobStoreImpl final : public BlobStore {
 public:
  static Result<std::shared_ptr<BlobStoreImpl>> create(
      const StorageConfig& config, std::shared_ptr<const rafs::Bootstrap> bootstrap,
      const BackendFactory& make_backend = open_backend);
  ~BlobStoreImpl() override;

  Result<size_t> read(uint64_t nid, uint64_t offset, std::span<uint8_t> out,
                      std::string_view file_hint) override;
  void start_prefetch(std::vector<uint64_t> nids) override;
  void stop_prefetch() override;
  const StorageMetrics& metrics() const override { return metrics_; }
  std::vector<std::string> cache_files() const override;

  // Waits until the running prefetch has finished (or was stopped); false
  // on timeout. For tests and for reporting prefetch completion.
  bool wait_prefetch(std::chrono::milliseconds timeout);
  // Whether every chunk of every blob is in the cache.
  bool data_all_ready();

 private:
  struct Blob {
    std::unique_ptr<BlobSource> source;
    std::unique_ptr<BlobCache> cache;  // null without a cache
  };

  BlobStoreImpl(const StorageConfig& config, std::shared_ptr<const rafs::Bootstrap> bootstrap);

  // Copies the [offset, offset + out.size()) part of one chunk into out.
  Status read_chunk(const rafs::ChunkRef& chunk, uint32_t offset, std::span<uint8_t> out,
                    std::string_view file_hint);
  Status prefetch_chunk(const rafs::ChunkRef& chunk);
  bool chunk_ready(const rafs::ChunkRef& chunk) const;

  const StorageConfig config_;
  std::shared_ptr<const rafs::Bootstrap> bootstrap_;
  StorageMetrics metrics_;
  std::unique_ptr<Backend> backend_;
  std::vector<Blob> blobs_;  // indexed by blob index; immutable after create()
  std::unique_ptr<Prefetcher> prefetcher_;
};

}  // namespace nydus::storage
