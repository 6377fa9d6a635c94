// The storage layer of nydusd: fetches chunk data lazily from a backend,
// decompresses and verifies it, and keeps it in a persistent blob cache.
//
//   backend (localfs: <dir>/<blob_id> or one blob_file)
//     -> chunk fetch, concurrent requests for one chunk coalesced into one fetch
//     -> decompress (none, lz4_block, zstd)
//     -> digest check (when validate is on); a bad chunk is never cached
//     -> write into <work_dir>/<blob_id>.blob.data at the uncompressed offset
//     -> mark the chunk ready in <work_dir>/<blob_id>.blob.data.chunk_map,
//        which is persisted, so a restarted nydusd never fetches it again.
//
// Thread safety: every public method may be called from any FUSE worker or
// prefetch thread concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"

namespace nydus::storage {

struct BackendConfig {
  std::string type = "localfs";            // only "localfs" for now
  std::optional<std::string> dir;          // localfs: blobs are <dir>/<blob_id>
  std::optional<std::string> blob_file;    // localfs: one blob file for the (single) blob
};

struct CacheConfig {
  std::string type = "blobcache";          // "blobcache"/"filecache" or "" (no cache)
  std::string work_dir;                    // created if missing
};

struct PrefetchConfig {
  bool enable = false;
  uint32_t threads = 4;                    // bounded number of background threads
  bool prefetch_all = false;               // whole blobs in the background after listed files
};

struct StorageConfig {
  BackendConfig backend;
  CacheConfig cache;
  PrefetchConfig prefetch;
  bool validate = false;                   // verify chunk digests
};

// Counters reported by GET /api/v1/metrics/backend and /metrics/blobcache.
struct StorageMetrics {
  std::atomic<uint64_t> backend_read_count{0};
  std::atomic<uint64_t> backend_read_errors{0};
  std::atomic<uint64_t> backend_read_bytes{0};
  std::atomic<uint64_t> cache_hits{0};          // chunk reads served from the cache
  std::atomic<uint64_t> cache_misses{0};        // chunk reads fetched from the backend
                                                // (every chunk read when there is no cache)
  std::atomic<uint64_t> digest_failures{0};
  std::atomic<uint64_t> prefetch_chunks{0};
  std::atomic<uint64_t> prefetch_bytes{0};       // uncompressed bytes prefetched
  // Additions (storage owner):
  std::atomic<uint64_t> backend_read_latency_micros_total{0};  // summed over backend reads
  std::atomic<uint64_t> chunk_coalesced_waits{0};  // reads that waited for another's fetch
  std::atomic<uint64_t> cache_write_errors{0};     // fetched chunks that could not be cached
  std::atomic<uint64_t> prefetch_errors{0};        // prefetch chunks that failed (not retried)
};

// One mounted image's data: the blobs of one bootstrap.
class BlobStore {
 public:
  // Validates the config (unknown backend, missing dir -> clear error) and
  // opens or creates the cache files for every blob of the bootstrap.
  static Result<std::shared_ptr<BlobStore>> open(const StorageConfig& config,
                                                 std::shared_ptr<const rafs::Bootstrap> bootstrap);
  virtual ~BlobStore() = default;

  // Reads [offset, offset + out.size()) of regular file `nid` into `out`;
  // returns the number of bytes read (short at EOF). A chunk that cannot be
  // fetched or fails its digest is an error naming the blob, the chunk and
  // `file_hint` (a path or nid for the log line).
  virtual Result<size_t> read(uint64_t nid, uint64_t offset, std::span<uint8_t> out,
                              std::string_view file_hint) = 0;

  // Starts background prefetch of the given files (nids) first, then, when
  // prefetch_all is set, of every blob. Returns at once.
  virtual void start_prefetch(std::vector<uint64_t> nids) = 0;
  // Stops prefetch threads (joins them).
  virtual void stop_prefetch() = 0;

  virtual const StorageMetrics& metrics() const = 0;
  // Paths of the cache files (for /api/v1/metrics/blobcache underlying_files).
  virtual std::vector<std::string> cache_files() const = 0;
};

}  // namespace nydus::storage
