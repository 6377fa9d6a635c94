#include "tools/nydus-image/compress_pool.h"

#include <span>

#include "nydusd/rafs/compression.h"

namespace nydus::builder {

Status compress_if_smaller(rafs::Compressor algo, const std::vector<uint8_t>& in, std::vector<uint8_t>& out,
                           bool& smaller) {
  smaller = false;
  if (algo == rafs::Compressor::kNone || in.empty()) return ok_status();
  NYDUS_ASSIGN_OR_RETURN(out, rafs::compress(algo, std::span<const uint8_t>(in)));
  smaller = out.size() < in.size();
  return ok_status();
}

CompressPool::CompressPool(rafs::Compressor algo, rafs::Digester digester, unsigned threads)
    : algo_(algo), digester_(digester) {
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
}

CompressPool::~CompressPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

std::shared_ptr<CompressJob> CompressPool::submit(std::vector<uint8_t> data) {
  auto job = std::make_shared<CompressJob>();
  job->data = std::move(data);
  if (threads_.empty()) {  // no workers: do it inline
    process(*job, job->output, job->compressed, job->status);
    job->done = true;
    return job;
  }
  {
    std::lock_guard lock(mu_);
    queue_.push_back(job);
  }
  work_cv_.notify_one();
  return job;
}

void CompressPool::wait(const CompressJob& job) {
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return job.done; });
}

// Reads job.data (owned by the job, not touched by the writer until done)
// and writes the digest; the results go through the out-parameters so the
// caller publishes them under the lock.
void CompressPool::process(CompressJob& job, std::vector<uint8_t>& out, bool& smaller, Status& st) const {
  job.digest = rafs::compute_digest(digester_, job.data);
  st = compress_if_smaller(algo_, job.data, out, smaller);
}

void CompressPool::worker() {
  for (;;) {
    std::shared_ptr<CompressJob> job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::vector<uint8_t> out;
    bool smaller = false;
    Status st;
    process(*job, out, smaller, st);
    {
      std::lock_guard lock(mu_);
      job->output = std::move(out);
      job->compressed = smaller;
      job->status = std::move(st);
      job->done = true;
    }
    done_cv_.notify_all();
  }
}

}  // namespace nydus::builder
