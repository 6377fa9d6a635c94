#include "nydusd/storage/prefetcher.h"

#include <sys/stat.h>

#include <algorithm>

#include <spdlog/spdlog.h>

namespace nydus::storage {

namespace {

// The reference accepts 1..=1024 prefetch threads.
constexpr uint32_t kMaxPrefetchThreads = 1024;

uint64_t chunk_key(const rafs::ChunkRef& c) { return (uint64_t(c.blob_index) << 32) | c.ci_index; }

}  // namespace

Prefetcher::Prefetcher(const rafs::Bootstrap* bootstrap, PrefetchConfig config, FetchFn fetch,
                       ReadyFn ready, DoneFn done, StorageMetrics* metrics)
    : bootstrap_(bootstrap), config_(config), fetch_(std::move(fetch)), ready_(std::move(ready)),
      done_(std::move(done)), metrics_(metrics) {}

Prefetcher::~Prefetcher() { stop(); }

void Prefetcher::start(std::vector<uint64_t> nids) {
  std::lock_guard control(control_mu_);
  stop_locked();
  uint32_t n = std::clamp<uint32_t>(config_.threads, 1, kMaxPrefetchThreads);
  {
    std::lock_guard lock(mu_);
    queue_.clear();
    planning_done_ = false;
    stop_.store(false);
    busy_threads_ = n;
    idle_ = false;
  }
  planned_chunks_.clear();
  visited_nids_.clear();
  spdlog::info("prefetch: starting with {} threads, {} listed inodes, prefetch_all={}", n,
               nids.size(), config_.prefetch_all);
  threads_.emplace_back([this, nids = std::move(nids)]() mutable { run_planner(std::move(nids)); });
  for (uint32_t i = 1; i < n; ++i) threads_.emplace_back([this] { run_worker(); });
}

void Prefetcher::stop() {
  std::lock_guard control(control_mu_);
  stop_locked();
}

void Prefetcher::stop_locked() {
  if (threads_.empty()) return;
  {
    std::lock_guard lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::lock_guard lock(mu_);
  queue_.clear();
  idle_ = true;
  cv_.notify_all();
}

bool Prefetcher::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return idle_; });
}

void Prefetcher::run_planner(std::vector<uint64_t> nids) {
  for (uint64_t nid : nids) {
    if (stopping()) break;
    plan_tree(nid, [this](const rafs::ChunkRef& c) { enqueue(c); });
  }
  if (config_.prefetch_all && !stopping()) {
    // Everything else, in blob order, so whole blobs are read front to back.
    std::vector<rafs::ChunkRef> rest;
    visited_nids_.clear();  // files listed above are walked again but their chunks are deduped
    plan_tree(bootstrap_->root_nid(), [&](const rafs::ChunkRef& c) { rest.push_back(c); });
    std::sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) {
      return chunk_key(a) < chunk_key(b);
    });
    for (const auto& c : rest) {
      if (stopping()) break;
      enqueue(c);
    }
  }
  {
    std::lock_guard lock(mu_);
    planning_done_ = true;
  }
  cv_.notify_all();
  run_worker();
}

void Prefetcher::plan_tree(uint64_t nid, const std::function<void(const rafs::ChunkRef&)>& sink) {
  // Breadth-first with a visited set: bounded by the number of distinct
  // inodes, whatever cycles or hard links a hostile image has.
  std::deque<uint64_t> pending{nid};
  while (!pending.empty() && !stopping()) {
    uint64_t cur = pending.front();
    pending.pop_front();
    if (!visited_nids_.insert(cur).second) continue;
    auto attr = bootstrap_->getattr(cur);
    if (!attr.ok()) {
      spdlog::warn("prefetch: skipping nid {}: {}", cur, attr.error().message());
      continue;
    }
    if (S_ISREG(attr->mode)) {
      plan_file(cur, attr->size, sink);
    } else if (S_ISDIR(attr->mode)) {
      Status st = bootstrap_->readdir(cur, 0, [&](const rafs::DirEntry& e, uint64_t) {
        if (e.name != "." && e.name != ".." && !visited_nids_.contains(e.nid)) {
          pending.push_back(e.nid);
        }
        return !stopping();
      });
      if (!st.ok()) {
        spdlog::warn("prefetch: skipping directory nid {}: {}", cur, st.error().message());
      }
    }
  }
}

void Prefetcher::plan_file(uint64_t nid, uint64_t size,
                           const std::function<void(const rafs::ChunkRef&)>& sink) {
  if (size == 0) return;
  auto chunks = bootstrap_->map_range(nid, 0, size);
  if (!chunks.ok()) {
    spdlog::warn("prefetch: skipping file nid {}: {}", nid, chunks.error().message());
    return;
  }
  for (const auto& c : *chunks) {
    if (!planned_chunks_.insert(chunk_key(c)).second) continue;
    if (ready_(c)) continue;
    sink(c);
  }
}

void Prefetcher::enqueue(const rafs::ChunkRef& chunk) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(chunk);
  }
  cv_.notify_one();
}

void Prefetcher::run_worker() {
  for (;;) {
    rafs::ChunkRef chunk;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping() || !queue_.empty() || planning_done_; });
      if (stopping() || queue_.empty()) break;
      chunk = queue_.front();
      queue_.pop_front();
    }
    if (Status st = fetch_(chunk); !st.ok()) {
      metrics_->prefetch_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("prefetch: {}", st.error().message());
    }
  }

  bool last = false;
  {
    std::lock_guard lock(mu_);
    last = --busy_threads_ == 0;
  }
  if (!last) return;
  if (!stopping()) {
    spdlog::info("prefetch: done");
    if (done_) done_();
  }
  {
    std::lock_guard lock(mu_);
    idle_ = true;
  }
  cv_.notify_all();
}

}  // namespace nydus::storage
