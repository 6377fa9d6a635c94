// Helpers of the nydusd integration tests: a nydusd child process owned by
// the test (killed and reaped by its Process handle, also when a REQUIRE
// fails), the tools it needs, source trees to build images from, and a tree
// comparison. Every wait is bounded by a named deadline and driven by events
// (connect retries with back-off, the daemon's reported state, the pidfd).
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/process.h"
#include "tests/support/temp_dir.h"

namespace nydus::testing {

inline constexpr std::chrono::milliseconds kDaemonStartDeadline{20000};
inline constexpr std::chrono::milliseconds kDaemonExitDeadline{20000};
inline constexpr std::chrono::milliseconds kToolDeadline{60000};

std::string bin_path(const std::string& name);
std::string sample_dir();   // tests/data/rafs-v6-2.2
std::string sample_boot();

// Runs a tool to completion; returns its exit status, output in `log`.
int run_tool(const std::vector<std::string>& argv, const std::string& log);
std::string read_text(const std::string& path);
std::string read_file(const std::filesystem::path& path);

// The v1 config the reference snapshotter writes for a localfs image.
std::string v1_config(const std::string& blob_dir, const std::string& work_dir, bool validate = true);

class NydusdProcess {
 public:
  // Starts `nydusd` with `args` (plus --apisock, --log-file in `dir`).
  // `env`: extra environment variables (test hooks).
  static std::unique_ptr<NydusdProcess> start(
      const std::filesystem::path& dir, std::vector<std::string> args,
      std::vector<std::pair<std::string, std::string>> env = {});
  // Starts and waits until GET /api/v1/daemon reports `state`.
  static std::unique_ptr<NydusdProcess> start_and_wait(const std::filesystem::path& dir,
                                                       std::vector<std::string> args,
                                                       const std::string& state = "RUNNING");

  // Waits for the API socket and then for the reported state (fails the test
  // with the daemon's log if it exits or the deadline passes).
  void wait_state(const std::string& state);
  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = {});
  nlohmann::json get_json(const std::string& target);
  // Waits for the process to exit; returns its status.
  int wait_exit();
  std::string log() const;

  Process& process() { return process_; }
  const std::string& apisock() const { return apisock_; }

 private:
  NydusdProcess(Process process, std::string apisock, std::string log_path)
      : process_(std::move(process)), apisock_(std::move(apisock)), log_path_(std::move(log_path)) {}
  Process process_;
  std::string apisock_;
  std::string log_path_;
  std::unique_ptr<HttpClient> client_;
};

// A source tree with every kind of entry an image carries: files of sizes
// around chunk and block boundaries (random, deterministic content), nested
// and empty directories, symlinks, a hard link, a fifo, a char device, user
// xattrs, odd modes, owners and timestamps.
void make_source_tree(const std::filesystem::path& root, uint32_t seed);

struct CompareOptions {
  bool compare_nlink_dirs = true;
  bool compare_mtime_nsec = true;
  bool compare_ino = false;       // st_ino of `b` against node_ino of `a`... see below
  bool compare_xattrs = true;
};
// Compares two trees entry by entry (type, mode, owner, size, mtime, rdev,
// nlink, symlink target, xattrs, every byte of regular files and the
// hard-link structure) with tests/support/tree_compare.h. Returns a list of
// differences (empty when equal).
std::vector<std::string> compare_trees(const std::filesystem::path& a, const std::filesystem::path& b,
                                       const CompareOptions& options);

// mount(2) of a raw EROFS file, read-only, no loop device.
bool mount_erofs(const std::string& image, const std::string& target, std::string* error);

}  // namespace nydus::testing
