// failover_bench: how invisible are nydusd failover and hot upgrade?
// Not part of `make test` (no ctest registration). Run as root:
//
//   build/bin/failover_bench [--cycles N]      (default 50)
//
// For each of two modes it runs N cycles under 8 byte-verifying readers:
//   kill      kill -9 of the serving nydusd, `nydusd --upgrade`, takeover, start
//   upgrade   `nydusd --upgrade`, takeover, PUT exit on the old one, start
// and prints reader errors and the p50/p99/max of the per-cycle reader
// stall (the longest single read during the cycle).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <cstdio>

#include "tests/integration/nydusd/failover_support.h"
#include "tests/integration/nydusd/nydusd_support.h"
#include "tests/support/test_supervisor.h"

using namespace nydus;
using namespace nydus::testing;
namespace fs = std::filesystem;

namespace {

int g_cycles = 50;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

void run_mode(bool hot_upgrade) {
  TempDir tmp("nydusd-failover-bench");
  FailoverImage image = make_failover_image(tmp / "image", 16, 1536 * 1024, 11);
  fs::path mnt = tmp / "mnt";
  fs::create_directories(mnt);
  TestSupervisor supervisor((tmp / "supervisor.sock").string());
  REQUIRE(supervisor.start().ok());
  int gen = 0;
  auto next_dir = [&] {
    fs::path d = tmp / ("d" + std::to_string(gen++));
    fs::create_directories(d);
    return d;
  };
  std::vector<std::string> common = {"--mountpoint", mnt.string(), "--supervisor", supervisor.path(),
                                     "--id", "bench", "--thread-num", "4"};
  auto args = common;
  args.insert(args.end(), {"--config", image.config_path, "--bootstrap", image.boot});
  auto current = NydusdProcess::start_and_wait(next_dir(), args);
  REQUIRE(current->call("PUT", "/api/v1/daemon/fuse/sendfd").status == 204);
  REQUIRE(supervisor.wait_saves(1, std::chrono::seconds(10)));

  ReadLoad load(mnt, image, 8);
  load.start();
  REQUIRE(load.wait_more_ops(200, std::chrono::seconds(20)));
  std::vector<double> stalls;
  for (int i = 0; i < g_cycles; ++i) {
    load.take_max_ms();
    auto up = common;
    up.push_back("--upgrade");
    std::unique_ptr<NydusdProcess> next;
    if (!hot_upgrade) {
      REQUIRE(current->process().kill(SIGKILL).ok());
      current->wait_exit();
    }
    next = NydusdProcess::start_and_wait(next_dir(), up, "INIT");
    supervisor.serve_next();
    REQUIRE(next->call("PUT", "/api/v1/daemon/fuse/takeover").status == 204);
    if (hot_upgrade) {
      REQUIRE(current->call("PUT", "/api/v1/daemon/exit").status == 204);
      current->wait_exit();
    }
    REQUIRE(next->call("PUT", "/api/v1/daemon/start").status == 204);
    next->wait_state("RUNNING");
    uint64_t saves = supervisor.saves();
    REQUIRE(next->call("PUT", "/api/v1/daemon/fuse/sendfd").status == 204);
    REQUIRE(supervisor.wait_saves(saves + 1, std::chrono::seconds(10)));
    REQUIRE(load.wait_more_ops(100, std::chrono::seconds(20)));
    stalls.push_back(load.take_max_ms());
    current = std::move(next);
  }
  load.stop();
  std::printf("%-8s cycles=%d reads=%llu errors=%llu stall_ms p50=%.1f p99=%.1f max=%.1f\n",
              hot_upgrade ? "upgrade" : "kill", g_cycles,
              static_cast<unsigned long long>(load.ops()),
              static_cast<unsigned long long>(load.errors()), percentile(stalls, 0.5),
              percentile(stalls, 0.99), stalls.empty() ? 0 : *std::max_element(stalls.begin(), stalls.end()));
  for (const auto& e : load.first_errors()) std::printf("  error: %s\n", e.c_str());
  (void)current->process().kill(SIGTERM);
  current->wait_exit();
}

}  // namespace

TEST_CASE("failover bench: kill -9 and takeover") { run_mode(false); }
TEST_CASE("failover bench: hot upgrade") { run_mode(true); }

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--cycles" && i + 1 < argc) {
      g_cycles = std::atoi(argv[++i]);
    } else {
      rest.push_back(argv[i]);
    }
  }
  return Catch::Session().run(static_cast<int>(rest.size()), rest.data());
}
