#include "nydusd/fuse/fs_metrics.h"

namespace nydus::fuse {

namespace {

template <size_t N>
nlohmann::json dump(const std::array<std::atomic<uint64_t>, N>& counters) {
  auto out = nlohmann::json::array();
  for (const auto& c : counters) out.push_back(c.load(std::memory_order_relaxed));
  return out;
}

}  // namespace

void FsIoStats::record(Fop fop, bool ok, std::chrono::microseconds latency) {
  hits_[idx(fop)].fetch_add(1, std::memory_order_relaxed);
  if (!ok) errors_[idx(fop)].fetch_add(1, std::memory_order_relaxed);
  latency_total_us_[idx(fop)].fetch_add(static_cast<uint64_t>(latency.count()),
                                        std::memory_order_relaxed);
}

void FsIoStats::record_read(uint64_t bytes, std::chrono::microseconds latency) {
  data_read_.fetch_add(bytes, std::memory_order_relaxed);
  block_count_read_[block_size_bucket(bytes)].fetch_add(1, std::memory_order_relaxed);
  read_latency_dist_[latency_bucket(latency)].fetch_add(1, std::memory_order_relaxed);
}

size_t FsIoStats::block_size_bucket(uint64_t bytes) {
  constexpr uint64_t kLimits[] = {1024, 4096, 16384, 65536, 131072, 524288, 1048576};
  size_t bucket = 0;
  for (uint64_t limit : kLimits) {
    if (bytes < limit) return bucket;
    ++bucket;
  }
  return bucket;  // 7: 1M+
}

size_t FsIoStats::latency_bucket(std::chrono::microseconds latency) {
  constexpr int64_t kLimitsUs[] = {200, 1000, 20000, 50000, 500000, 1000000, 2000000};
  size_t bucket = 0;
  for (int64_t limit : kLimitsUs) {
    if (latency.count() <= limit) return bucket;
    ++bucket;
  }
  return bucket;  // 7: > 2s
}

nlohmann::json FsIoStats::to_json() const {
  return {
      {"files_account_enabled", false},
      {"access_pattern_enabled", false},
      {"record_latest_read_files_enabled", false},
      {"measure_latency", true},
      {"id", id_},
      {"nr_opens", nr_opens_.load(std::memory_order_relaxed)},
      {"data_read", data_read_.load(std::memory_order_relaxed)},
      {"block_count_read", dump(block_count_read_)},
      {"fop_hits", dump(hits_)},
      {"fop_errors", dump(errors_)},
      {"fop_cumulative_latency_total", dump(latency_total_us_)},
      {"read_latency_dist", dump(read_latency_dist_)},
  };
}

}  // namespace nydus::fuse
