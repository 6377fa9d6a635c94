// Shared by the C++ benches that drive nydusd themselves (failover_bench,
// restore_bench; the library nydus_bench_support, which also holds Catch2's
// runner: a bench has its own main() and calls run_test_cases): percentiles,
// the machine's load average, image building, a tight wait for a nydusd
// state that does not add back-off delay to what is being timed, and the
// chain of nydusd generations a takeover cycle goes through.
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/nydusd/nydusd_support.h"
#include "tests/support/test_supervisor.h"

namespace nydus::bench {

// What a bench uses besides this file: nydus, its test support, std::filesystem.
using namespace nydus;
using namespace nydus::testing;
namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Nearest-rank percentile, p in [0, 1]; 0 for an empty sample.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

inline double max_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// Runs the bench's TEST_CASE through Catch2 (whose runner is in this
// library) with `args`: argv[0] and the options the bench did not take.
// Returns Catch2's exit status.
int run_test_cases(std::vector<char*> args);

// "1min 5min 15min" from /proc/loadavg.
std::string load_average();

// How long a state wait may take before the bench fails.
inline constexpr std::chrono::milliseconds kStateDeadline{20000};
// Poll period of the state wait: small, so that what is timed is the daemon,
// not our back-off.
inline constexpr std::chrono::microseconds kStatePoll{500};
// How long the supervisor may take to receive a saved state.
inline constexpr std::chrono::seconds kSaveDeadline{10};

// Waits until the daemon's API reports `state`; false on deadline or exit.
bool wait_state_fast(NydusdProcess& daemon, const std::string& state);

// PUT /api/v1/daemon/fuse/sendfd once the daemon can save: a fresh daemon
// reports RUNNING before the kernel's FUSE INIT has reached it, and answers
// 503 (kNotReady) until then. True once saved (204).
bool sendfd_when_ready(NydusdProcess& daemon);

struct RafsImage {
  std::string boot;
  std::string blob_dir;
};

// `nydus-image [-l LOG_LEVEL] create -t dir-rafs -c lz4_block` of `src`:
// bootstrap dir/image.boot, blobs in dir/blobs, the tool's output in
// dir/nydus-image.log (shown when it fails). Fails the test unless it
// succeeds within `deadline`. An empty `log_level` keeps the tool's default.
RafsImage build_rafs_image(const fs::path& dir, const fs::path& src, std::chrono::milliseconds deadline,
                           const std::string& log_level = "");

// The nydusd generations of one bench run, handing their FUSE mount(s) to
// each other through a TestSupervisor that keeps the state (the fd and the
// saved bytes) between them. Every daemon runs with `--mountpoint DIR/mnt
// --supervisor DIR/supervisor.sock --id bench` plus the chain's extra
// arguments, in its own directory DIR/d0, DIR/d1, ... Every step fails the
// test when the daemon does not answer as it should.
class DaemonChain {
 public:
  DaemonChain(const fs::path& dir, std::vector<std::string> extra_args);

  const fs::path& mnt() const { return mnt_; }
  TestSupervisor& supervisor() { return supervisor_; }

  // The first daemon, with `args` added; returned once RUNNING.
  std::unique_ptr<NydusdProcess> start_first(const std::vector<std::string>& args = {});
  // `nydusd --upgrade`; returned once it waits in INIT.
  std::unique_ptr<NydusdProcess> spawn_successor();
  // `next` (waiting in INIT) takes over the state the supervisor holds; when
  // `serving` is given (a hot upgrade: the old daemon serves on), it is told
  // to exit once `next` holds the mounts; then `next` starts and is RUNNING.
  // Returns the time of the takeover request.
  Clock::time_point take_over(NydusdProcess& next, NydusdProcess* serving = nullptr);
  // `daemon` saves its state (PUT sendfd) and the supervisor receives it.
  // `fresh`: a daemon that was not taken over, whose FUSE INIT may still be
  // on its way (sendfd_when_ready).
  void save_state(NydusdProcess& daemon, bool fresh = false);

 private:
  fs::path dir_;
  fs::path mnt_;
  TestSupervisor supervisor_;
  std::vector<std::string> common_;
  int generation_ = 0;
};

// kill -9 (a crash), and the exit reaped.
void crash_daemon(NydusdProcess& daemon);
// SIGTERM at the end of a run, and the exit reaped.
void stop_daemon(NydusdProcess& daemon);

}  // namespace nydus::bench
