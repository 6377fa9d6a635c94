// nydusd failover and hot upgrade end to end: real nydusd processes, a real
// FUSE mount, an in-process supervisor (tests/support/test_supervisor.h) and
// 8 reader threads that verify every byte they read.
//
//  - kill -9 of a serving daemon, then `nydusd --upgrade` + takeover + start:
//    zero reader errors, no read stalls 5 s or more.
//  - a READ the dead daemon had taken from the kernel (test hook
//    NYDUSD_TEST_HANG_READ_INO) completes with correct data after the
//    successor's FUSE_NOTIFY_RESEND.
//  - 20 hot upgrades in a row (takeover, exit old, start new): zero errors,
//    and requests_resent == 0 on every new daemon: the old one answered every
//    request it read, so nothing was executed twice.
//  - the old daemon dies between takeover and start: zero errors.
//  - a corrupted or unknown-major state: clear error, state stays INIT, a
//    retry with a good state works.
//
// Processes are killed by pid through their Process handles; mounts live
// below the test's TempDir (detached on exit, also on failure).
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <future>

#include "tests/integration/nydusd/failover_support.h"
#include "tests/integration/nydusd/nydusd_support.h"
#include "tests/support/test_supervisor.h"

using namespace nydus;
using namespace nydus::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr unsigned kReaders = 8;
constexpr double kMaxStallMs = 5000;
constexpr auto kLoadProgress = std::chrono::seconds(20);
constexpr auto kSupervisorWait = std::chrono::seconds(10);

struct Env {
  TempDir tmp{"nydusd-failover"};
  FailoverImage image;
  fs::path mnt;
  std::unique_ptr<TestSupervisor> supervisor;
  int generation = 0;

  Env() {
    image = make_failover_image(tmp / "image", 16, 1536 * 1024, 7);
    mnt = tmp / "mnt";
    fs::create_directories(mnt);
    supervisor = std::make_unique<TestSupervisor>((tmp / "supervisor.sock").string());
    REQUIRE(supervisor->start().ok());
  }

  fs::path next_dir() {
    fs::path dir = tmp / ("d" + std::to_string(generation++));
    fs::create_directories(dir);
    return dir;
  }

  std::vector<std::string> common_args() {
    return {"--mountpoint", mnt.string(), "--supervisor", supervisor->path(), "--id", "daemon-1",
            "--thread-num", "4"};
  }

  // A first daemon: mounts, runs and saves once.
  std::unique_ptr<NydusdProcess> start_first(std::vector<std::pair<std::string, std::string>> env = {}) {
    auto args = common_args();
    args.insert(args.end(), {"--config", image.config_path, "--bootstrap", image.boot});
    auto d = NydusdProcess::start(next_dir(), args, std::move(env));
    d->wait_state("RUNNING");
    save(*d);
    return d;
  }

  void save(NydusdProcess& d) {
    uint64_t before = supervisor->saves();
    auto r = d.call("PUT", "/api/v1/daemon/fuse/sendfd");
    INFO(r.body);
    REQUIRE(r.status == 204);
    REQUIRE(supervisor->wait_saves(before + 1, kSupervisorWait));
  }

  // A successor in upgrade mode, taken over (READY), not started.
  std::unique_ptr<NydusdProcess> take_over() {
    auto args = common_args();
    args.push_back("--upgrade");
    auto d = NydusdProcess::start(next_dir(), args);
    d->wait_state("INIT");
    supervisor->serve_next();
    auto r = d->call("PUT", "/api/v1/daemon/fuse/takeover");
    INFO(r.body << "\n" << d->log());
    REQUIRE(r.status == 204);
    d->wait_state("READY");
    return d;
  }

  static void start(NydusdProcess& d) {
    auto r = d.call("PUT", "/api/v1/daemon/start");
    INFO(r.body);
    REQUIRE(r.status == 204);
    d.wait_state("RUNNING");
  }
};

void check_load(ReadLoad& load) {
  load.stop();
  for (const auto& e : load.first_errors()) UNSCOPED_INFO(e);
  CHECK(load.errors() == 0);
  CHECK_FALSE(load.aborted());
  CHECK(load.max_ms() < kMaxStallMs);
}

void kill9(NydusdProcess& d) {
  REQUIRE(d.process().kill(SIGKILL).ok());
  CHECK(d.wait_exit() == -SIGKILL);
}

}  // namespace

TEST_CASE("kill -9 of a serving nydusd: a successor takes over with no reader error",
          "[failover]") {
  Env env;
  auto a = env.start_first();
  ReadLoad load(env.mnt, env.image, kReaders);
  load.start();
  REQUIRE(load.wait_more_ops(300, kLoadProgress));
  kill9(*a);
  auto b = env.take_over();
  Env::start(*b);
  REQUIRE(load.wait_more_ops(300, kLoadProgress));
  check_load(load);
  auto info = b->get_json("/api/v1/daemon");
  INFO(info.dump());
  CHECK(info["takeovers"] == 1);
  CHECK(info["last_restore_duration_ms"].is_number());
  CHECK(info["backend_collection"].contains("/"));
  // SIGTERM of the successor unmounts.
  REQUIRE(b->process().kill(SIGTERM).ok());
  CHECK(b->wait_exit() == 0);
  std::ifstream mounts("/proc/self/mounts");
  std::string all((std::istreambuf_iterator<char>(mounts)), {});
  CHECK(all.find(env.mnt.string()) == std::string::npos);
}

TEST_CASE("a READ the dead daemon held is resent to the successor and completes", "[failover]") {
  Env env;
  uint64_t hang_node = root_file_node_id(env.image.boot, "hang.bin");
  auto a = env.start_first({{"NYDUSD_TEST_HANG_READ_INO", std::to_string(hang_node)}});
  const std::string& want = env.image.files.back().second;
  // The reader is another process: a thread of ours blocked on the held
  // request could stall our own fork/exec of the successor.
  std::string out = (env.tmp / "hang.out").string();
  SpawnOptions spawn;
  spawn.argv = {"/bin/sh", "-c", "cat '" + (env.mnt / "hang.bin").string() + "' > '" + out + "'"};
  spawn.parent_death_signal = SIGKILL;
  auto reader = Process::spawn(spawn);
  REQUIRE(reader.ok());
  // Event: the daemon reports the READ of hang.bin in flight.
  bool held = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!held && std::chrono::steady_clock::now() < deadline) {
    auto r = a->call("GET", "/api/v1/metrics/inflight");
    if (r.status == 200) {
      for (const auto& slot : json::parse(r.body)) {
        if (slot["opcode"] == 15 && slot["inode"].get<uint64_t>() == hang_node) held = true;
      }
    }
    if (!held) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // bounded poll
  }
  REQUIRE(held);
  CHECK_FALSE(reader->exited());
  kill9(*a);
  auto b = env.take_over();
  Env::start(*b);
  auto status = reader->wait(std::chrono::seconds(10));
  REQUIRE(status.ok());
  CHECK(*status == 0);
  std::string got = read_file(out);
  CHECK(got.size() == want.size());
  CHECK(got == want);
  auto info = b->get_json("/api/v1/daemon");
  INFO(info.dump() << "\n" << b->log());
  CHECK(info["requests_resent"].get<uint64_t>() >= 1);
}

TEST_CASE("20 hot upgrades in a row under load: no error, no request handled twice",
          "[failover][upgrade]") {
  Env env;
  auto current = env.start_first();
  ReadLoad load(env.mnt, env.image, kReaders);
  load.start();
  REQUIRE(load.wait_more_ops(200, kLoadProgress));
  for (int i = 0; i < 20; ++i) {
    INFO("upgrade " << i);
    auto next = env.take_over();
    auto r = current->call("PUT", "/api/v1/daemon/exit");
    REQUIRE(r.status == 204);
    CHECK(current->wait_exit() == 0);
    Env::start(*next);
    env.save(*next);  // the supervisor keeps the latest state, as the snapshotter does
    REQUIRE(load.wait_more_ops(100, kLoadProgress));
    auto info = next->get_json("/api/v1/daemon");
    CHECK(info["takeovers"] == 1);
    // The old daemon answered every request it read before exiting: the
    // resend found nothing to queue again.
    CHECK(info["requests_resent"] == 0);
    current = std::move(next);
  }
  check_load(load);
}

TEST_CASE("the old daemon dies between takeover and start: the new one serves",
          "[failover][upgrade]") {
  Env env;
  auto old = env.start_first();
  ReadLoad load(env.mnt, env.image, kReaders);
  load.start();
  REQUIRE(load.wait_more_ops(200, kLoadProgress));
  auto next = env.take_over();
  REQUIRE(load.wait_more_ops(100, kLoadProgress));  // the old one still serves
  kill9(*old);
  Env::start(*next);
  REQUIRE(load.wait_more_ops(300, kLoadProgress));
  check_load(load);
}

TEST_CASE("a bad state fails the takeover clearly and leaves INIT -- a retry works", "[failover]") {
  Env env;
  auto a = env.start_first();
  std::vector<uint8_t> good = env.supervisor->bytes();
  kill9(*a);
  auto args = env.common_args();
  args.push_back("--upgrade");
  auto b = NydusdProcess::start(env.next_dir(), args);
  b->wait_state("INIT");

  // Truncated.
  env.supervisor->set_bytes(std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  env.supervisor->serve_next();
  auto r = b->call("PUT", "/api/v1/daemon/fuse/takeover");
  CHECK(r.status >= 400);
  CHECK(r.body.find("message") != std::string::npos);
  CHECK(b->get_json("/api/v1/daemon")["state"] == "INIT");
  // An unknown format_major (field 1 varint = 99).
  std::vector<uint8_t> future = good;
  REQUIRE(future.size() > 2);
  REQUIRE(future[0] == 0x08);
  future[1] = 99;
  env.supervisor->set_bytes(future);
  env.supervisor->serve_next();
  r = b->call("PUT", "/api/v1/daemon/fuse/takeover");
  CHECK(r.status == 501);
  CHECK(r.body.find("format 99") != std::string::npos);
  CHECK(b->get_json("/api/v1/daemon")["state"] == "INIT");
  // Retry with the good state.
  env.supervisor->set_bytes(good);
  env.supervisor->serve_next();
  r = b->call("PUT", "/api/v1/daemon/fuse/takeover");
  INFO(r.body);
  REQUIRE(r.status == 204);
  Env::start(*b);
  const auto& [name, content] = env.image.files.front();
  CHECK(read_file(env.mnt / name) == content);
}

TEST_CASE("mount changes are saved to the supervisor on their own", "[failover]") {
  Env env;
  auto a = env.start_first();
  uint64_t before = env.supervisor->saves();
  json body = {{"source", env.image.boot}, {"fs_type", "rafs"}, {"config", read_text(env.image.config_path)}};
  // The dedicated image at "/" shadows sub-mounts: remount "/" instead.
  auto r = a->call("PUT", "/api/v1/mount?mountpoint=/", body.dump());
  INFO(r.body);
  REQUIRE(r.status == 204);
  REQUIRE(env.supervisor->wait_saves(before + 1, kSupervisorWait));
}
