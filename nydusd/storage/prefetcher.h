// Background prefetch: fill the blob caches before the data is asked for.
//
// Order: first the chunks of the listed files (directories are expanded to
// the files below them), then, with prefetch_all, every chunk of every file
// in the image, sorted by blob and CI index so the backend is read
// sequentially. Each chunk is queued once.
//
// Threads: exactly `threads` threads. The first one plans (walks the
// bootstrap and queues chunks) and then joins the others in fetching, so
// fetching starts as soon as the first chunk is queued. A fetch goes through
// the blob cache's in-flight table, so a foreground read of a chunk being
// prefetched just waits for that one fetch (and a prefetch of a chunk a read
// is fetching waits for the read's fetch); nothing else is shared with the
// foreground and no lock is held while fetching.
//
// Stopping: stop() raises a flag checked between chunks (and between
// inodes while planning), wakes idle threads and joins them; it returns once
// each thread has finished the chunk in hand, i.e. within one chunk fetch.
//
// Thread safety: start(), stop() and wait_idle() may be called from any
// thread; start() and stop() are serialized by control_mu_.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/storage/storage.h"

namespace nydus::storage {

class Prefetcher {
 public:
  // Makes one chunk ready (skipping it when it already is). Errors are logged
  // and counted by the prefetcher, never retried.
  using FetchFn = std::function<Status(const rafs::ChunkRef&)>;
  // Tells whether a chunk is already ready, to skip queueing it.
  using ReadyFn = std::function<bool(const rafs::ChunkRef&)>;
  // Called by the last thread once everything queued was handled (not after stop()).
  using DoneFn = std::function<void()>;

  Prefetcher(const rafs::Bootstrap* bootstrap, PrefetchConfig config, FetchFn fetch,
             ReadyFn ready, DoneFn done, StorageMetrics* metrics);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Stops a previous run, then starts a new one in the background.
  void start(std::vector<uint64_t> nids);
  void stop();
  // Waits until the current run has handled everything it queued (or was
  // stopped); false if `timeout` passed first.
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  void run_planner(std::vector<uint64_t> nids);
  void run_worker();
  // Queues the chunks of `nid` and, for a directory, of everything below it.
  void plan_tree(uint64_t nid, const std::function<void(const rafs::ChunkRef&)>& sink);
  void plan_file(uint64_t nid, uint64_t size,
                 const std::function<void(const rafs::ChunkRef&)>& sink);
  void enqueue(const rafs::ChunkRef& chunk);
  void stop_locked();  // requires control_mu_
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

  const rafs::Bootstrap* bootstrap_;
  const PrefetchConfig config_;
  FetchFn fetch_;
  ReadyFn ready_;
  DoneFn done_;
  StorageMetrics* metrics_;

  std::mutex control_mu_;  // serializes start()/stop(); taken before mu_
  std::vector<std::thread> threads_;  // guarded by control_mu_

  mutable std::mutex mu_;
  std::condition_variable cv_;        // work queued, planning done, stop, idle
  std::deque<rafs::ChunkRef> queue_;  // guarded by mu_
  bool planning_done_ = true;         // guarded by mu_
  // Written under mu_ (so waiters cannot miss it), read without it.
  std::atomic<bool> stop_{false};
  uint32_t busy_threads_ = 0;         // guarded by mu_: threads of this run still working
  bool idle_ = true;                  // guarded by mu_: the run is over (done or stopped)

  // Planner-only state (the planner is one thread).
  std::unordered_set<uint64_t> planned_chunks_;  // blob << 32 | ci, already queued
  std::unordered_set<uint64_t> visited_nids_;
};

}  // namespace nydus::storage
