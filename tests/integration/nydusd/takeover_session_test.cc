// The takeover building blocks of the FUSE session, in one process: session A
// mounts and serves, stops at a request boundary; session B adopts a dup of
// A's connection fd with A's captured INIT (synthetic INIT to libfuse), sends
// FUSE_NOTIFY_RESEND and serves the same mount while a reader keeps reading.
// This is what the failover work drives across processes.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/mount.h"
#include "nydusd/fuse/session.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::fuse;
namespace fs = std::filesystem;

namespace {

const std::string kSampleDir = std::string(NYDUS_TESTDATA_DIR) + "/rafs-v6-2.2";

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return in ? s.str() : std::string("<unreadable>");
}

std::shared_ptr<RafsMount> sample(const std::string& work_dir) {
  auto bootstrap = rafs::Bootstrap::open(kSampleDir + "/rafs-v6-2.2.boot");
  REQUIRE(bootstrap.ok());
  storage::StorageConfig config;
  config.backend.dir = kSampleDir;
  config.cache.work_dir = work_dir;
  config.validate = true;
  auto store = storage::BlobStore::open(config, *bootstrap);
  REQUIRE(store.ok());
  auto mount = std::make_shared<RafsMount>();
  mount->mountpoint = "/";
  mount->source = "sample";
  mount->bootstrap = *bootstrap;
  mount->store = *store;
  mount->options.entry_timeout = 0;  // every access reaches the daemon
  mount->options.attr_timeout = 0;
  mount->stats = std::make_shared<FsIoStats>("/");
  return mount;
}

}  // namespace

TEST_CASE("a second session adopts the connection with a replayed INIT and resend", "[takeover]") {
  testing::TempDir tmp("nydusd-takeover");
  fs::create_directories(tmp / "mnt");
  Vfs vfs;
  REQUIRE(vfs.mount(sample((tmp / "cache").string())).ok());

  auto a = FuseSession::create(vfs, {(tmp / "mnt").string(), 2});
  REQUIRE(a.ok());
  REQUIRE((*a)->mount().ok());
  REQUIRE((*a)->start().ok());
  const std::string expected = slurp(tmp / "mnt/lib.rs");
  REQUIRE(expected.size() == 16931);
  auto init = (*a)->init_state();
  REQUIRE(init.has_value());
  CHECK(init->max_write > 0);
  CHECK(init->proto_major == 7);

  // A reader that keeps going across the switch: it may stall, never fail.
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, bad{0};
  std::thread reader([&] {
    while (!done) {
      if (slurp(tmp / "mnt/lib.rs") != expected) ++bad;
      ++reads;
    }
  });
  while (reads < 20) std::this_thread::yield();

  (*a)->stop();  // request boundary: what A has not read stays queued
  UniqueFd dup_fd(::dup((*a)->connection_fd()));
  REQUIRE(dup_fd);
  auto b = FuseSession::create(vfs, {(tmp / "mnt").string(), 2});
  REQUIRE(b.ok());
  REQUIRE((*b)->adopt(std::move(dup_fd), *init).ok());
  CHECK((*b)->init_state() == init);
  if (init->has_resend()) REQUIRE((*b)->resend().ok());
  REQUIRE((*b)->start().ok());
  a->reset();  // A's fd closes; B's keeps the connection alive

  int before = reads;
  while (reads < before + 20) std::this_thread::yield();
  done = true;
  reader.join();
  CHECK(bad == 0);
  CHECK(slurp(tmp / "mnt/sync_io.rs").size() == 13400);
  CHECK(is_mountpoint((tmp / "mnt").string()));
  REQUIRE((*b)->unmount().ok());
  CHECK_FALSE(is_mountpoint((tmp / "mnt").string()));
}

TEST_CASE("adopt refuses a max_write larger than libfuse's buffer", "[takeover]") {
  Vfs vfs;
  auto s = FuseSession::create(vfs, {"/nonexistent", 1});
  REQUIRE(s.ok());
  FuseInitState init;
  init.kernel_major = 7;
  init.kernel_minor = 45;
  init.max_write = 16 << 20;
  UniqueFd fd(::dup(0));
  auto status = (*s)->adopt(std::move(fd), init);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().kind() == ErrorKind::kFailedPrecondition);
  CHECK_FALSE((*s)->attached());
}
