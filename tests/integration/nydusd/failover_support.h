// Shared by the failover integration tests and tests/bench/failover_bench.cc:
// a multi-MiB image with known contents, and a reader load that verifies
// every byte it reads through the FUSE mount and measures each read's latency.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nydus::testing {

struct FailoverImage {
  std::string boot;
  std::string blob_dir;
  std::string config_path;  // v1 localfs config
  // name (in the image root) -> content
  std::vector<std::pair<std::string, std::string>> files;
};

// Builds an image of `count` files of random sizes up to `max_size` (plus a
// 64 KiB "hang.bin" for the held-request tests) under `dir`.
FailoverImage make_failover_image(const std::filesystem::path& dir, size_t count, size_t max_size,
                                  uint32_t seed);

// The node id of /name in a dedicated daemon's image (mount index 1).
uint64_t root_file_node_id(const std::string& boot, const std::string& name);

// Readers: each loops open, pread a random range of a random file, compare
// every byte, drop the file's page cache (so the next read reaches the
// daemon), close. Errors are counted with their first messages.
class ReadLoad {
 public:
  // How long stop() waits for readers before aborting the FUSE connection
  // (fusectl) so that a failed test cannot hang on a dead mount.
  static constexpr std::chrono::milliseconds kStopDeadline{30000};

  ReadLoad(std::filesystem::path mnt, const FailoverImage& image, unsigned threads);
  ~ReadLoad();
  ReadLoad(const ReadLoad&) = delete;
  ReadLoad& operator=(const ReadLoad&) = delete;

  void start();
  void stop();
  uint64_t ops() const { return ops_.load(); }
  uint64_t errors() const { return errors_.load(); }
  // Waits until `more` further operations completed; false on timeout.
  bool wait_more_ops(uint64_t more, std::chrono::milliseconds timeout) const;
  // The longest single operation since the last call, in ms.
  double take_max_ms();
  double max_ms() const { return max_us_total_.load() / 1000.0; }
  std::vector<std::string> first_errors() const;
  bool aborted() const { return aborted_; }

 private:
  void reader(unsigned seed);
  void note_error(std::string message);

  std::filesystem::path mnt_;
  const FailoverImage& image_;
  unsigned threads_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<unsigned> running_{0};
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> max_us_{0};        // since take_max_ms()
  std::atomic<uint64_t> max_us_total_{0};
  mutable std::mutex mu_;
  std::vector<std::string> first_errors_;  // guarded by mu_
  uint64_t conn_id_ = 0;                   // fusectl connection (st_dev minor)
  bool aborted_ = false;
};

}  // namespace nydus::testing
