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

void FsIoStats::record_read(uint64_t node, uint64_t bytes, std::chrono::microseconds latency) {
  size_t bucket = block_size_bucket(bytes);
  data_read_.fetch_add(bytes, std::memory_order_relaxed);
  block_count_read_[bucket].fetch_add(1, std::memory_order_relaxed);
  read_latency_dist_[latency_bucket(latency)].fetch_add(1, std::memory_order_relaxed);
  if (!accounting_.any()) return;
  std::lock_guard lock(files_mu_);
  if (accounting_.files) {
    auto& f = files_[node];
    ++f.total_fops;
    f.data_read += bytes;
    ++f.block_count_read[bucket];
  }
  if (accounting_.access_pattern) {
    auto [it, inserted] = pattern_.try_emplace(node);
    if (inserted) it->second.first_access = std::chrono::system_clock::now();
    ++it->second.nr_read;
  }
  if (accounting_.latest_read_files) latest_read_.insert(node);
}

void FsIoStats::record_open(uint64_t node) {
  nr_opens_.fetch_add(1, std::memory_order_relaxed);
  if (!accounting_.files) return;
  std::lock_guard lock(files_mu_);
  auto& f = files_[node];
  ++f.nr_open;
  ++f.total_fops;
}

std::optional<nlohmann::json> FsIoStats::files_json(bool latest) {
  std::lock_guard lock(files_mu_);
  if (latest) {
    if (!accounting_.latest_read_files) return std::nullopt;
    // Consecutive node ids collapse into [first,last]; a lone one is [id].
    auto ranges = nlohmann::json::array();
    for (auto it = latest_read_.begin(); it != latest_read_.end();) {
      uint64_t first = *it, last = *it;
      for (++it; it != latest_read_.end() && *it == last + 1; ++it) last = *it;
      ranges.push_back(first == last ? nlohmann::json::array({first})
                                     : nlohmann::json::array({first, last}));
    }
    latest_read_.clear();
    return ranges;
  }
  if (!accounting_.files) return std::nullopt;
  auto out = nlohmann::json::object();
  for (const auto& [node, f] : files_) {
    out[std::to_string(node)] = {{"nr_open", f.nr_open},
                                 {"total_fops", f.total_fops},
                                 {"data_read", f.data_read},
                                 {"block_count_read", f.block_count_read}};
  }
  return out;
}

std::optional<nlohmann::json> FsIoStats::pattern_json() const {
  if (!accounting_.access_pattern) return std::nullopt;
  std::lock_guard lock(files_mu_);
  auto out = nlohmann::json::array();
  for (const auto& [node, record] : pattern_) {
    auto since_epoch = record.first_access.time_since_epoch();
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs);
    out.push_back({{"ino", node},
                   {"nr_read", record.nr_read},
                   {"first_access_time_secs", secs.count()},
                   {"first_access_time_nanos", nanos.count()}});
  }
  return out;
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
      {"files_account_enabled", accounting_.files},
      {"access_pattern_enabled", accounting_.access_pattern},
      {"record_latest_read_files_enabled", accounting_.latest_read_files},
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
