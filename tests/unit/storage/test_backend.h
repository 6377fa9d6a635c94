// Test doubles and fixtures shared by the storage tests.
//
// TestBackend wraps a real backend (so reads return real blob bytes) and
// records every read by (blob, offset); it can hold reads at a gate, to make
// concurrent readers pile up on one fetch or to keep a prefetch busy.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "nydusd/storage/backend.h"
#include "nydusd/storage/blob_store.h"

namespace nydus::storage::testing {

inline const std::string kSampleDir = std::string(NYDUS_TESTDATA_DIR) + "/rafs-v6-2.2";
inline const std::string kSampleBoot = kSampleDir + "/rafs-v6-2.2.boot";
inline const std::string kSampleBlobId =
    "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";

class TestBackend final : public Backend {
 public:
  TestBackend(std::unique_ptr<Backend> inner, StorageMetrics* metrics)
      : Backend(metrics), inner_(std::move(inner)) {}

  std::string_view type() const override { return "test"; }

  // Reads started so far at (blob, offset).
  uint64_t reads_at(const std::string& blob_id, uint64_t offset) const {
    std::lock_guard lock(mu_);
    auto it = reads_.find({blob_id, offset});
    return it == reads_.end() ? 0 : it->second;
  }
  std::map<std::pair<std::string, uint64_t>, uint64_t> reads() const {
    std::lock_guard lock(mu_);
    return reads_;
  }
  uint64_t total_reads() const {
    std::lock_guard lock(mu_);
    uint64_t n = 0;
    for (auto& [k, v] : reads_) n += v;
    return n;
  }

  // While held, reads block (after being counted) until release().
  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  // Waits until at least `n` reads have started.
  bool wait_reads(uint64_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return started_ >= n; });
  }

 protected:
  Status do_read(const std::string& blob_id, uint64_t offset, std::span<uint8_t> out) override {
    {
      std::unique_lock lock(mu_);
      ++reads_[{blob_id, offset}];
      ++started_;
      cv_.notify_all();
      // Bounded so a broken test fails instead of hanging.
      cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !held_; });
    }
    return inner_->read(blob_id, offset, out);
  }

 private:
  std::unique_ptr<Backend> inner_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<std::string, uint64_t>, uint64_t> reads_;
  uint64_t started_ = 0;
  bool held_ = false;
};

// A BackendFactory that builds the configured backend wrapped in a
// TestBackend and leaves a pointer to it in *out (owned by the store).
inline BackendFactory test_backend_factory(TestBackend** out) {
  return [out](const BackendConfig& cfg, const std::vector<rafs::BlobInfo>& blobs,
               StorageMetrics* metrics) -> Result<std::unique_ptr<Backend>> {
    NYDUS_ASSIGN_OR_RETURN(auto inner, open_backend(cfg, blobs, nullptr));
    auto tb = std::make_unique<TestBackend>(std::move(inner), metrics);
    *out = tb.get();
    return std::unique_ptr<Backend>(std::move(tb));
  };
}

// Starts a whole-blob prefetch on `cfg.prefetch.threads` threads, waits
// until every thread is inside a held backend read, then stops the prefetch
// while the reads are released a moment later. Returns how long
// stop_prefetch() took: it must wait for the reads in hand only.
inline std::chrono::steady_clock::duration stop_prefetch_mid_read(StorageConfig cfg,
                                                                  std::shared_ptr<const rafs::Bootstrap> boot,
                                                                  std::shared_ptr<BlobStoreImpl>* store_out,
                                                                  TestBackend** backend_out) {
  cfg.prefetch.enable = true;
  cfg.prefetch.prefetch_all = true;
  TestBackend* backend = nullptr;
  auto store = BlobStoreImpl::create(cfg, std::move(boot), test_backend_factory(&backend));
  if (!store.ok()) throw std::runtime_error(store.error().message());
  backend->hold();
  (*store)->start_prefetch({});
  if (!backend->wait_reads(cfg.prefetch.threads, std::chrono::seconds(10))) {
    backend->release();
    throw std::runtime_error("prefetch threads never reached the backend");
  }
  std::thread releaser([backend] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    backend->release();
  });
  auto start = std::chrono::steady_clock::now();
  (*store)->stop_prefetch();
  auto took = std::chrono::steady_clock::now() - start;
  releaser.join();
  *store_out = std::move(*store);
  *backend_out = backend;
  return took;
}

}  // namespace nydus::storage::testing
