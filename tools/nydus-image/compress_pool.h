// A fixed set of worker threads that digest and compress chunks for the
// blob writer, so both run on every CPU while the writer's thread reads
// and writes. Jobs complete in any order; the writer waits for them in
// submission order.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/digest.h"
#include "nydusd/rafs/layout.h"

namespace nydus::builder {

struct CompressJob {
  std::vector<uint8_t> data;     // the uncompressed chunk
  rafs::Digest digest{};         // of `data`, with the pool's digester
  std::vector<uint8_t> output;   // compressed bytes, valid when `compressed`
  bool compressed = false;       // true only if strictly smaller than `data`
  Status status;
  bool done = false;             // guarded by the pool's mutex
};

class CompressPool {
 public:
  // With no threads, submit() does the work inline.
  CompressPool(rafs::Compressor algo, rafs::Digester digester, unsigned threads);
  ~CompressPool();
  CompressPool(const CompressPool&) = delete;
  CompressPool& operator=(const CompressPool&) = delete;

  std::shared_ptr<CompressJob> submit(std::vector<uint8_t> data);
  // Blocks until `job` is done.
  void wait(const CompressJob& job);

 private:
  void worker();
  void process(CompressJob& job, std::vector<uint8_t>& out, bool& smaller, Status& st) const;

  rafs::Compressor algo_;
  rafs::Digester digester_;
  std::mutex mu_;
  std::condition_variable work_cv_;  // jobs queued or stopping
  std::condition_variable done_cv_;  // a job finished
  std::deque<std::shared_ptr<CompressJob>> queue_;  // guarded by mu_
  bool stopping_ = false;                           // guarded by mu_
  std::vector<std::thread> threads_;
};

// Compresses `in` with `algo` and reports whether the result is strictly
// smaller (only then is it worth storing, §12).
Status compress_if_smaller(rafs::Compressor algo, const std::vector<uint8_t>& in, std::vector<uint8_t>& out,
                           bool& smaller);

}  // namespace nydus::builder
