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
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace nydus::fuse {

// Index into fop_hits/fop_errors, in the reference's order.
enum class Fop : uint8_t {
  kGetattr, kReadlink, kOpen, kRelease, kRead, kStatfs, kGetxattr, kListxattr, kOpendir,
  kLookup, kReaddir, kReaddirplus, kAccess, kForget, kBatchForget,
};
inline constexpr size_t kFopCount = 15;

// The per-file switches of a mount's config (iostats_files, access_pattern,
// latest_read_files). Off by default: each costs a lock per open and read.
struct FileAccounting {
  bool files = false;
  bool access_pattern = false;
  bool latest_read_files = false;
  bool any() const { return files || access_pattern || latest_read_files; }
};

class FsIoStats {
 public:
  explicit FsIoStats(std::string id, FileAccounting accounting = {})
      : id_(std::move(id)), accounting_(accounting) {}

  void record(Fop fop, bool ok, std::chrono::microseconds latency);
  // A successful read of `bytes` of `node` that took `latency`.
  void record_read(uint64_t node, uint64_t bytes, std::chrono::microseconds latency);
  void record_open(uint64_t node);

  const std::string& id() const { return id_; }
  const FileAccounting& accounting() const { return accounting_; }
  nlohmann::json to_json() const;

  // GET /api/v1/metrics/files: per-file counters keyed by node id (the st_ino
  // the kernel shows), or with `latest` the nodes read since the previous
  // latest=true call as [first,last] ranges, which the call resets. Null
  // when the switch is off.
  std::optional<nlohmann::json> files_json(bool latest);
  // GET /api/v1/metrics/pattern: when each file was first read and how often.
  std::optional<nlohmann::json> pattern_json() const;

  uint64_t fop_hits(Fop fop) const { return hits_[idx(fop)].load(std::memory_order_relaxed); }
  uint64_t fop_errors(Fop fop) const { return errors_[idx(fop)].load(std::memory_order_relaxed); }
  uint64_t data_read() const { return data_read_.load(std::memory_order_relaxed); }

  // Buckets: <1K, 1K, 4K, 16K, 64K, 128K, 512K, 1M+.
  static size_t block_size_bucket(uint64_t bytes);
  // Buckets: <=200us, 1ms, 20ms, 50ms, 500ms, 1s, 2s, >2s.
  static size_t latency_bucket(std::chrono::microseconds latency);

 private:
  static size_t idx(Fop fop) { return static_cast<size_t>(fop); }

  struct FileCounters {
    uint64_t nr_open = 0;
    uint64_t total_fops = 0;
    uint64_t data_read = 0;
    std::array<uint64_t, 8> block_count_read{};
  };
  struct AccessRecord {
    uint64_t nr_read = 0;
    std::chrono::system_clock::time_point first_access;
  };

  std::string id_;
  const FileAccounting accounting_;
  mutable std::mutex files_mu_;
  std::map<uint64_t, FileCounters> files_;     // guarded by files_mu_
  std::map<uint64_t, AccessRecord> pattern_;   // guarded by files_mu_
  std::set<uint64_t> latest_read_;             // guarded by files_mu_
  std::atomic<uint64_t> nr_opens_{0};
  std::atomic<uint64_t> data_read_{0};
  std::array<std::atomic<uint64_t>, kFopCount> hits_{};
  std::array<std::atomic<uint64_t>, kFopCount> errors_{};
  std::array<std::atomic<uint64_t>, kFopCount> latency_total_us_{};
  std::array<std::atomic<uint64_t>, 8> block_count_read_{};
  std::array<std::atomic<uint64_t>, 8> read_latency_dist_{};
};

}  // namespace nydus::fuse
