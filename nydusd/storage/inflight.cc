#include "nydusd/storage/inflight.h"

#include <exception>
#include <new>

namespace nydus::storage {

Result<ChunkData> InflightTable::run(uint64_t key, const std::function<Result<ChunkData>()>& fetch,
                                     Role* role) {
  std::promise<Result<ChunkData>> promise;
  Future waiting;
  {
    std::lock_guard lock(mu_);
    auto it = table_.find(key);
    if (it != table_.end()) {
      waiting = it->second;
    } else {
      table_.emplace(key, promise.get_future().share());
    }
  }

  if (waiting.valid()) {
    if (role != nullptr) *role = Role::kWaiter;
    if (waiting.wait_for(kChunkFetchWaitTimeout) != std::future_status::ready) {
      return make_error(ErrorKind::kTimeout, "waited {}s for an in-flight fetch of chunk key {:#x}",
                        kChunkFetchWaitTimeout.count(), key);
    }
    return waiting.get();
  }

  if (role != nullptr) *role = Role::kLeader;
  // The promise must be fulfilled on every path, or waiters would hang and
  // the key would stay blocked forever; so nothing may escape fetch().
  Result<ChunkData> result = make_error(ErrorKind::kInternal, "chunk fetch did not run");
  try {
    result = fetch();
  } catch (const std::bad_alloc&) {
    result = make_error(ErrorKind::kTooLarge, "out of memory fetching chunk key {:#x}", key);
  } catch (const std::exception& e) {
    result = make_error(ErrorKind::kInternal, "fetching chunk key {:#x}: {}", key, e.what());
  }
  {
    std::lock_guard lock(mu_);
    table_.erase(key);
  }
  promise.set_value(result);
  return result;
}

size_t InflightTable::in_flight() const {
  std::lock_guard lock(mu_);
  return table_.size();
}

}  // namespace nydus::storage
