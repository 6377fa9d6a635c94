// Small helpers shared by the C++ benches in tests/bench/ (header only):
// percentiles, the machine's load average, and a tight wait for a nydusd
// state that does not add back-off delay to what is being timed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/unix_socket.h"
#include "tests/integration/nydusd/nydusd_support.h"

namespace nydus::bench {

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

inline std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// How long a state wait may take before the bench fails.
inline constexpr std::chrono::milliseconds kStateDeadline{20000};
// Poll period of the state wait: small, so that what is timed is the daemon,
// not our back-off.
inline constexpr std::chrono::microseconds kStatePoll{500};

// Waits until the daemon's API reports `state`; false on deadline or exit.
inline bool wait_state_fast(testing::NydusdProcess& daemon, const std::string& state) {
  auto deadline = Clock::now() + kStateDeadline;
  std::unique_ptr<HttpClient> client;
  while (Clock::now() < deadline) {
    if (daemon.process().exited()) return false;
    if (!client && connect_unix(daemon.apisock(), std::chrono::milliseconds(100)).ok()) {
      client = std::make_unique<HttpClient>(daemon.apisock());
    }
    if (client) {
      auto r = client->request("GET", "/api/v1/daemon", {}, std::chrono::seconds(5));
      if (r.ok() && r->status == 200 && nlohmann::json::parse(r->body).value("state", "") == state) {
        return true;
      }
      if (!r.ok()) client.reset();
    }
    std::this_thread::sleep_for(kStatePoll);  // bounded by the deadline
  }
  return false;
}

// PUT /api/v1/daemon/fuse/sendfd once the daemon can save: a fresh daemon
// reports RUNNING before the kernel's FUSE INIT has reached it, and answers
// 503 (kNotReady) until then. True once saved (204).
inline bool sendfd_when_ready(testing::NydusdProcess& daemon) {
  auto deadline = Clock::now() + kStateDeadline;
  while (Clock::now() < deadline) {
    int status = daemon.call("PUT", "/api/v1/daemon/fuse/sendfd").status;
    if (status == 204) return true;
    if (status != 503) return false;
    std::this_thread::sleep_for(kStatePoll);  // bounded by the deadline
  }
  return false;
}

}  // namespace nydus::bench
