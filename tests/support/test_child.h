// A child process for tests whose output is captured: nydus::Process
// (common/process.h) for the process itself (pidfd, kill on destruction,
// reaping) plus a pipe drained into memory by a thread, so that a test can
// wait for a line the child prints (an event) instead of sleeping.
//
// Exit statuses use Process's encoding: 0..255 the exit code, -N killed by
// signal N.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/process.h"
#include "common/unique_fd.h"

namespace nydus::testing {

using namespace std::chrono_literals;

class TestChild {
 public:
  // Spawns argv (argv[0] is a path), stdout and stderr into the capture (and
  // appended to `log_file` when given). Throws std::runtime_error on failure.
  explicit TestChild(const std::vector<std::string>& argv, const std::string& log_file = "");
  TestChild(const TestChild&) = delete;
  TestChild& operator=(const TestChild&) = delete;
  ~TestChild();  // SIGKILL and reap a child still running, then stop the reader

  pid_t pid() const { return process_->pid(); }
  bool running();
  // Sends a signal while the child was not reaped yet.
  void signal(int sig);
  // Waits up to `timeout` for the exit; its status (see above) or nullopt.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // Waits until the output contains `needle`, the child exits, or `timeout`.
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout);
  std::string output();

 private:
  void reader_loop(UniqueFd out, UniqueFd pidfd, std::string log_file);

  std::optional<Process> process_;  // set by the constructor, never empty after
  std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;          // guarded by mu_
  bool output_closed_ = false;  // guarded by mu_: EOF on the pipe
  bool child_exited_ = false;   // guarded by mu_
  UniqueFd stop_fd_;            // eventfd: ends the reader
  std::thread reader_;
};

struct CommandResult {
  int status = -1000;  // Process encoding; -1000: did not finish in time
  std::string output;
  bool exited_ok() const { return status == 0; }
};

// Runs argv to completion (killed after `timeout`), capturing its output.
CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 30s);

}  // namespace nydus::testing
