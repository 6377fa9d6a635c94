// Processes for the snapshotter's integration and e2e tests.
//
// A TestChild is spawned with stdout and stderr merged into a pipe that a
// reader thread drains into memory (and into an optional log file), so a
// test can wait for a line the child prints (an event) instead of sleeping.
// Its exit is watched through a pidfd. The destructor kills the child with
// SIGKILL if it still runs and reaps it: a failing REQUIRE never leaves a
// process behind. Only the test's own pid is ever signalled.
//
// (Written before common/process.h existed; the spawn part can move onto it.)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace nydus::testing {

using namespace std::chrono_literals;

class TestChild {
 public:
  // Spawns argv (argv[0] is a path). Throws std::runtime_error on failure.
  explicit TestChild(const std::vector<std::string>& argv, const std::string& log_file = "");
  TestChild(const TestChild&) = delete;
  TestChild& operator=(const TestChild&) = delete;
  ~TestChild();

  pid_t pid() const { return pid_; }
  bool running();
  // Sends a signal (only while the child was not reaped yet).
  void signal(int sig);
  // Waits for exit up to `timeout`; returns the wait status, or nullopt on
  // timeout. Reaps the child.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // Waits until the output contains `needle`, the child exits (its output
  // read to that point), or the timeout passes. True when found. Driven by
  // the reader thread's events, no polling.
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout);
  std::string output();

 private:
  void reader_loop(int out_fd, std::string log_file);

  pid_t pid_ = -1;
  bool reaped_ = false;
  UniqueFd pidfd_;
  UniqueFd stop_fd_;  // eventfd that ends the reader thread
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;
  bool output_closed_ = false;
  bool child_exited_ = false;  // set by the reader after draining at exit
};

struct CommandResult {
  int status = -1;  // wait status; -1 when killed at the timeout
  std::string output;
  bool exited_ok() const;
};

// Runs argv to completion with merged output, killing it after `timeout`.
CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 30s);

// Mount points below `root` (from /proc/self/mountinfo).
std::vector<std::string> mounts_under(const std::string& root);

}  // namespace nydus::testing
