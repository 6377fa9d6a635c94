// A supervisor for tests and benches: the nydus-snapshotter side of the
// supervisor socket (reference-nydusd.md §5.1), in-process.
//
// It listens on a unix socket and handles one connection at a time on its own
// thread. By default a connection is a save: it reads one message (state bytes
// + SCM_RIGHTS fds, end = close), keeps the bytes and the first fd, and closes
// the fd it held before. After serve_next(), the next connection is a
// takeover instead: it is sent the stored bytes with the stored fd
// (send_message, then close). The stored fd stays held, so the FUSE
// connection outlives any daemon, and can be served any number of times.
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus::testing {

class TestSupervisor {
 public:
  static constexpr std::chrono::milliseconds kIoTimeout{10000};

  explicit TestSupervisor(std::string path);
  ~TestSupervisor();  // stops the thread, closes the held fd
  TestSupervisor(const TestSupervisor&) = delete;
  TestSupervisor& operator=(const TestSupervisor&) = delete;

  Status start();
  const std::string& path() const { return path_; }

  // The next accepted connection is served the stored state instead of
  // receiving a save.
  void serve_next();
  // Replaces the stored state bytes (keeps the fd): tests of bad states.
  void set_bytes(std::vector<uint8_t> bytes);

  // Waits until `n` saves (resp. serves) have completed; false on timeout.
  bool wait_saves(uint64_t n, std::chrono::milliseconds timeout);
  bool wait_serves(uint64_t n, std::chrono::milliseconds timeout);
  uint64_t saves() const;
  uint64_t serves() const;
  std::vector<uint8_t> bytes() const;
  bool has_fd() const;
  std::string last_error() const;

 private:
  void run();
  bool wait_count(const uint64_t& counter, uint64_t n, std::chrono::milliseconds timeout);

  std::string path_;
  UniqueFd listen_fd_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;          // guarded by mu_
  unsigned serve_pending_ = 0;     // guarded by mu_
  std::vector<uint8_t> bytes_;     // guarded by mu_
  UniqueFd fd_;                    // guarded by mu_
  uint64_t saves_ = 0;             // guarded by mu_
  uint64_t serves_ = 0;            // guarded by mu_
  std::string last_error_;         // guarded by mu_
};

}  // namespace nydus::testing
