// Per-filesystem I/O statistics, reported by GET /api/v1/metrics?id=<mountpoint>
// in the reference's FsIoStats shape (docs/reference-nydusd.md §9).
//
// Thread safety: every counter is a relaxed atomic; FUSE workers record
// concurrently and the API thread reads a snapshot that may be torn across
// counters (as the reference's is).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace nydus::fuse {

// Index into fop_hits/fop_errors, in the reference's order.
enum class Fop : uint8_t {
  kGetattr, kReadlink, kOpen, kRelease, kRead, kStatfs, kGetxattr, kListxattr, kOpendir,
  kLookup, kReaddir, kReaddirplus, kAccess, kForget, kBatchForget,
};
inline constexpr size_t kFopCount = 15;

class FsIoStats {
 public:
  explicit FsIoStats(std::string id) : id_(std::move(id)) {}

  void record(Fop fop, bool ok, std::chrono::microseconds latency);
  // A successful read of `bytes` that took `latency`.
  void record_read(uint64_t bytes, std::chrono::microseconds latency);
  void record_open() { nr_opens_.fetch_add(1, std::memory_order_relaxed); }

  const std::string& id() const { return id_; }
  nlohmann::json to_json() const;

  uint64_t fop_hits(Fop fop) const { return hits_[idx(fop)].load(std::memory_order_relaxed); }
  uint64_t fop_errors(Fop fop) const { return errors_[idx(fop)].load(std::memory_order_relaxed); }
  uint64_t data_read() const { return data_read_.load(std::memory_order_relaxed); }

  // Buckets: <1K, 1K, 4K, 16K, 64K, 128K, 512K, 1M+.
  static size_t block_size_bucket(uint64_t bytes);
  // Buckets: <=200us, 1ms, 20ms, 50ms, 500ms, 1s, 2s, >2s.
  static size_t latency_bucket(std::chrono::microseconds latency);

 private:
  static size_t idx(Fop fop) { return static_cast<size_t>(fop); }

  std::string id_;
  std::atomic<uint64_t> nr_opens_{0};
  std::atomic<uint64_t> data_read_{0};
  std::array<std::atomic<uint64_t>, kFopCount> hits_{};
  std::array<std::atomic<uint64_t>, kFopCount> errors_{};
  std::array<std::atomic<uint64_t>, kFopCount> latency_total_us_{};
  std::array<std::atomic<uint64_t>, 8> block_count_read_{};
  std::array<std::atomic<uint64_t>, 8> read_latency_dist_{};
};

}  // namespace nydus::fuse
