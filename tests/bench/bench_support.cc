// Catch2's implementation for the benches, without its main(): each bench
// has its own, which takes the bench's options and calls run_test_cases.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/bench/bench_support.h"

#include <signal.h>

#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/process.h"
#include "common/unix_socket.h"

namespace nydus::bench {

int run_test_cases(std::vector<char*> args) {
  return Catch::Session().run(static_cast<int>(args.size()), args.data());
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

bool wait_state_fast(NydusdProcess& daemon, const std::string& state) {
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

bool sendfd_when_ready(NydusdProcess& daemon) {
  auto deadline = Clock::now() + kStateDeadline;
  while (Clock::now() < deadline) {
    int status = daemon.call("PUT", "/api/v1/daemon/fuse/sendfd").status;
    if (status == 204) return true;
    if (status != 503) return false;
    std::this_thread::sleep_for(kStatePoll);  // bounded by the deadline
  }
  return false;
}

RafsImage build_rafs_image(const fs::path& dir, const fs::path& src, std::chrono::milliseconds deadline,
                           const std::string& log_level) {
  RafsImage image{(dir / "image.boot").string(), (dir / "blobs").string()};
  fs::create_directories(image.blob_dir);
  SpawnOptions options;
  options.argv = {bin_path("nydus-image")};
  if (!log_level.empty()) options.argv.insert(options.argv.end(), {"-l", log_level});
  options.argv.insert(options.argv.end(), {"create", "-t", "dir-rafs", "-B", image.boot, "-D", image.blob_dir,
                                           "-c", "lz4_block", src.string()});
  std::string log = (dir / "nydus-image.log").string();
  options.stdout_redirect = Redirect::append_to(log);
  options.stderr_redirect = Redirect::append_to(log);
  options.parent_death_signal = SIGKILL;
  auto process = Process::spawn(options);
  REQUIRE(process.ok());
  auto status = process->wait(deadline);
  INFO(read_text(log));
  REQUIRE(status.ok());
  REQUIRE(*status == 0);
  return image;
}

DaemonChain::DaemonChain(const fs::path& dir, std::vector<std::string> extra_args)
    : dir_(dir), mnt_(dir / "mnt"), supervisor_((dir / "supervisor.sock").string()) {
  fs::create_directories(mnt_);
  REQUIRE(supervisor_.start().ok());
  common_ = {"--mountpoint", mnt_.string(), "--supervisor", supervisor_.path(), "--id", "bench"};
  common_.insert(common_.end(), extra_args.begin(), extra_args.end());
}

std::unique_ptr<NydusdProcess> DaemonChain::start_first(const std::vector<std::string>& args) {
  auto all = common_;
  all.insert(all.end(), args.begin(), args.end());
  fs::path d = dir_ / ("d" + std::to_string(generation_++));
  fs::create_directories(d);
  auto daemon = NydusdProcess::start(d, all);
  REQUIRE(wait_state_fast(*daemon, "RUNNING"));
  return daemon;
}

std::unique_ptr<NydusdProcess> DaemonChain::spawn_successor() {
  auto all = common_;
  all.push_back("--upgrade");
  fs::path d = dir_ / ("d" + std::to_string(generation_++));
  fs::create_directories(d);
  auto daemon = NydusdProcess::start(d, all);
  REQUIRE(wait_state_fast(*daemon, "INIT"));
  return daemon;
}

Clock::time_point DaemonChain::take_over(NydusdProcess& next, NydusdProcess* serving) {
  supervisor_.serve_next();
  auto at = Clock::now();
  REQUIRE(next.call("PUT", "/api/v1/daemon/fuse/takeover").status == 204);
  if (serving) {
    REQUIRE(serving->call("PUT", "/api/v1/daemon/exit").status == 204);
    serving->wait_exit();
  }
  REQUIRE(next.call("PUT", "/api/v1/daemon/start").status == 204);
  REQUIRE(wait_state_fast(next, "RUNNING"));
  return at;
}

void DaemonChain::save_state(NydusdProcess& daemon, bool fresh) {
  uint64_t saves = supervisor_.saves();
  if (fresh) {
    REQUIRE(sendfd_when_ready(daemon));
  } else {
    REQUIRE(daemon.call("PUT", "/api/v1/daemon/fuse/sendfd").status == 204);
  }
  REQUIRE(supervisor_.wait_saves(saves + 1, kSaveDeadline));
}

void crash_daemon(NydusdProcess& daemon) {
  REQUIRE(daemon.process().kill(SIGKILL).ok());
  daemon.wait_exit();
}

void stop_daemon(NydusdProcess& daemon) {
  (void)daemon.process().kill(SIGTERM);
  daemon.wait_exit();
}

}  // namespace nydus::bench
