// Request coalescing: concurrent requests for one chunk share one fetch.
//
// The first caller for a key becomes the leader and runs the fetch; callers
// that arrive while it runs wait on the same shared future and receive the
// same result, success or error. The entry is removed before the result is
// published, so a caller arriving after a failure starts a fresh fetch (a
// retry) instead of inheriting a stale error.
//
// Thread safety: all methods may be called concurrently. mu_ guards only the
// table; no fetch runs and no waiter blocks while holding it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/result.h"

namespace nydus::storage {

// The uncompressed bytes of one chunk, shared by every waiter.
using ChunkData = std::shared_ptr<const std::vector<uint8_t>>;

// A waiter gives up on a leader after this long. The leader's fetch is one
// bounded backend read plus decompression, so hitting this means the backend
// is stuck; the waiter fails with kTimeout instead of hanging a FUSE worker.
inline constexpr std::chrono::seconds kChunkFetchWaitTimeout{120};

class InflightTable {
 public:
  enum class Role { kLeader, kWaiter };

  // Returns the result of `fetch` for `key`, running it only if no fetch for
  // `key` is in flight. `role` (optional) tells which one this caller was.
  Result<ChunkData> run(uint64_t key, const std::function<Result<ChunkData>()>& fetch,
                        Role* role = nullptr);

  // Number of keys with a fetch in flight (for tests and metrics).
  size_t in_flight() const;

 private:
  using Future = std::shared_future<Result<ChunkData>>;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Future> table_;  // guarded by mu_
};

}  // namespace nydus::storage
