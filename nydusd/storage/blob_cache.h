// The persistent cache of one blob's uncompressed data.
//
//   <work_dir>/<blob_id>.blob.data            sparse, sized to the blob's
//                                             uncompressed size; chunk i lives
//                                             at its uncompressed offset
//   <work_dir>/<blob_id>.blob.data.chunk_map  which chunks are ready (chunk_map.h)
//
// Write ordering (why a crash never marks unwritten data ready): a fetched
// chunk is pwrite'd into the data file, the data file is fdatasync'ed, and
// only then is the chunk's bit set in the map. The map's page can reach the
// disk only after the bit is set, i.e. after the data is durable. A crash in
// between leaves the chunk unmarked and it is simply fetched again. The cost
// is one fdatasync per fetched chunk (not per read), which is small next to
// the backend read and the decompression of up to a chunk of data.
//
// If the data file is new, or its size is not the blob's uncompressed size
// (it was replaced or truncated under us), the map is discarded: its marks
// would describe data that is not there. Opening the pair is serialized
// between processes by an flock on the data file, held only during open().
//
// Reads: a ready chunk is read straight from the data file, only the bytes
// asked for. With validation on, a chunk this process has not yet verified
// (it was cached by an earlier process) is read whole and checked once; a
// cached chunk that fails is unmarked and fetched again. A chunk that is not
// ready is fetched through the in-flight table, so concurrent reads of it,
// foreground or prefetch, share one backend fetch.
//
// Cache write failures (disk full) are logged and counted; the read is still
// served from the fetched bytes, the chunk just stays not ready.
//
// Thread safety: all methods may be called concurrently from any thread and
// from several processes sharing the work_dir.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/storage/blob_source.h"
#include "nydusd/storage/chunk_map.h"
#include "nydusd/storage/inflight.h"
#include "nydusd/storage/storage.h"

namespace nydus::storage {

// Another process holds the data file's open lock for at most the time it
// takes to size the data file and create or check the map.
inline constexpr std::chrono::seconds kCacheOpenLockTimeout{30};

class BlobCache {
 public:
  // `source` and `metrics` must outlive the cache. work_dir must exist.
  static Result<std::unique_ptr<BlobCache>> open(const std::string& work_dir, BlobSource* source,
                                                 StorageMetrics* metrics);

  // Copies out.size() bytes starting `offset` bytes into `chunk` (a chunk
  // ref already checked with check_chunk_extent) into `out`.
  Status read(const rafs::ChunkRef& chunk, uint32_t offset, std::span<uint8_t> out,
              std::string_view file_hint);

  // Makes `chunk` ready unless it already is. Returns whether this call
  // fetched it from the backend.
  Result<bool> prefetch(const rafs::ChunkRef& chunk);

  bool is_ready(uint32_t ci_index) const { return map_->is_ready(ci_index); }
  ChunkMap& chunk_map() { return *map_; }
  const std::string& data_path() const { return data_path_; }

 private:
  enum class Purpose { kRead, kPrefetch };

  BlobCache(BlobSource* source, StorageMetrics* metrics, std::string data_path, UniqueFd data_fd,
            std::unique_ptr<ChunkMap> map);

  // The leader's work for one chunk: serve it from the cache if it is (now)
  // ready and good, else fetch, store and mark it.
  Result<ChunkData> fill(const rafs::ChunkRef& chunk, std::string_view file_hint, Purpose purpose,
                         bool* fetched);
  // Writes, syncs and marks a fetched chunk (see the ordering above).
  void store(const rafs::ChunkRef& chunk, const std::vector<uint8_t>& data);

  bool is_verified(uint32_t ci_index) const;
  void set_verified(uint32_t ci_index);

  BlobSource* source_;
  StorageMetrics* metrics_;
  std::string data_path_;
  UniqueFd data_fd_;
  std::unique_ptr<ChunkMap> map_;
  // One bit per chunk: verified by this process since open (validate only).
  std::unique_ptr<std::atomic<uint64_t>[]> verified_;
  InflightTable inflight_;
};

}  // namespace nydus::storage
