// End to end, the snapshotter in fscache mode, with the real binaries: two
// images built here with nydus-image, then one VM boot in which
// tests/vm/snapshotter_fscache_vm_driver.cc runs the real
// containerd-nydus-grpc with `[daemon] fs_driver = "fscache"` four times, each
// on a fresh root on the VM's ext4 disk, and drives it over gRPC as
// containerd's unpacker and runtime would (Prepare/Commit of each meta layer,
// Prepare of a rootfs over it, the overlay mounted) while 4 byte-verifying
// readers per rootfs run:
//   main     recover_policy failover: the shared `nydusd singleton --fscache`
//            killed with kill -9 (a READ in flight), then hot-upgraded
//            through system.sock to a copy of nydusd;
//   standby  hot_standby = true: kill -9, the standby takes over, a new
//            standby follows;
//   readopt  kill -9 of the snapshotter itself, restarted: it re-adopts the
//            live nydusd; then a kill -9 of nydusd still fails over;
//   restart  recover_policy restart: kill -9, and kill -9 of the fresh
//            nydusd while the snapshotter's re-mount waits for it (its
//            OPENs are slowed by a test hook); a third nydusd and EROFS
//            mounts with new fsids; a new container reads every byte.
// Zero reader errors (except, by nature, on the mounts a restart leaves
// dead); the snapshots' removal must unmount the EROFS mounts and unbind the
// RAFS instances (the driver's header has the details).
//
// Every data READ of nydusd is slowed by its test hook
// (NYDUS_TEST_FSCACHE_READ_DELAY_MS, set on the snapshotter, inherited by
// nydusd) so that a READ is in flight at each switch: each run's cache is
// fresh, and what is read after a switch was never read before it.
//
// NYDUS_VM_SNAPSHOTTER_RUNS=standby,restart (for instance) runs only those.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/process.h"
#include "tests/support/temp_dir.h"
#include "tests/vm/vm_test_support.h"

using namespace nydus;
using namespace nydus::testing;
using namespace nydus::testing::vm;
namespace fs = std::filesystem;

namespace {

// A few MiB in several files, one of them of several MiB (many chunks, many
// READs), plus the entry kinds a rootfs has: nested directories, a symlink,
// a hard link, an empty file, a file of zeros, an xattr, odd modes.
void make_tree(const fs::path& root, uint32_t seed, size_t big_size) {
  fs::create_directories(root / "usr" / "lib" / "deep");
  fs::create_directories(root / "etc");
  fs::create_directories(root / "empty_dir");
  write_file(root / "etc" / "hostname", "fscache-snapshotter\n");
  write_file(root / "etc" / "empty", "");
  write_file(root / "usr" / "lib" / "big.bin", random_bytes(big_size, seed + 1), 0755);
  write_file(root / "usr" / "lib" / "mid.bin", random_bytes(900 * 1024 + 13, seed + 2));
  write_file(root / "usr" / "lib" / "deep" / "small.bin", random_bytes(4097, seed + 3), 0600);
  write_file(root / "usr" / "lib" / "deep" / "page.bin", random_bytes(4096, seed + 4));
  write_file(root / "zeros.bin", std::string(512 * 1024, '\0'));
  std::string text;
  for (int i = 0; i < 12000; ++i) text += "line " + std::to_string(i) + " of a compressible file\n";
  write_file(root / "etc" / "text.conf", text);
  fs::create_symlink("usr/lib/big.bin", root / "link_to_big");
  fs::create_hard_link(root / "etc" / "hostname", root / "etc" / "hostname.hardlink");
  REQUIRE(::setxattr((root / "etc" / "hostname").c_str(), "user.snapshotter", "fscache", 7, 0) == 0);
}

}  // namespace

TEST_CASE("vm_snapshotter_fscache: a shared nydusd singleton serves rootfs overlays through kill -9, hot upgrade, "
          "hot standby, a snapshotter restart and recover_policy restart",
          "[vm][fscache][snapshotter]") {
  require_vm_or_skip();
  const std::string driver = std::string(NYDUS_BIN_DIR) + "/snapshotter_fscache_vm_driver";
  for (const char* bin : {"snapshotter_fscache_vm_driver", "containerd-nydus-grpc", "nydusd", "nydus-image"}) {
    INFO(bin);
    REQUIRE(fs::exists(std::string(NYDUS_BIN_DIR) + "/" + bin));
  }

  const auto t0 = std::chrono::steady_clock::now();
  TempDir dir("nydus-vm-snap-fscache");
  const fs::path img = dir / "images";
  make_tree(img / "src-a", 101, 6 * 1024 * 1024 + 4096 + 11);
  make_tree(img / "src-b", 202, 3 * 1024 * 1024 + 7);
  build_image(img / "src-a", img / "a.boot", img / "blobs");
  build_image(img / "src-b", img / "b.boot", img / "blobs");
  // The binary of the hot upgrade: a copy, so that the upgraded daemon
  // provably runs another file.
  const fs::path upgraded = dir / "nydusd-upgraded";
  fs::copy_file(std::string(NYDUS_BIN_DIR) + "/nydusd", upgraded);
  fs::permissions(upgraded, fs::perms(0755));
  const double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  nlohmann::json scenario = {
      {"snapshotter", std::string(NYDUS_BIN_DIR) + "/containerd-nydus-grpc"},
      {"nydusd", std::string(NYDUS_BIN_DIR) + "/nydusd"},
      {"nydusd_upgrade", upgraded.string()},
      // On the VM's ext4 disk: cachefiles refuses a cache dir on tmpfs, and
      // the snapshotter's cache dir is <root>/cache/fscache (each run's root
      // is <root>/<run>).
      {"root", std::string(kGuestCacheDir) + "/snap"},
      {"blobs", (img / "blobs").string()},
      {"read_delay_ms", 150},
      {"readers", 4},
      {"images",
       {{{"name", "image-a"}, {"boot", (img / "a.boot").string()}, {"source", (img / "src-a").string()}},
        {{"name", "image-b"}, {"boot", (img / "b.boot").string()}, {"source", (img / "src-b").string()}}}}};
  if (const char* runs = std::getenv("NYDUS_VM_SNAPSHOTTER_RUNS")) {
    std::stringstream list(runs);
    for (std::string run; std::getline(list, run, ',');) scenario["runs"].push_back(run);
  }
  const fs::path scenario_path = dir / "scenario.json";
  std::ofstream(scenario_path) << scenario.dump(2);

  VmOptions o;
  fs::create_directories(dir / "vm");
  o.work_dir = (dir / "vm").string();
  o.argv = {driver, scenario_path.string()};
  o.timeout = std::chrono::seconds(240);
  o.cache_disk_mb = 256;
  VmResult r = run_or_fail(o);
  std::printf("%s", r.output.c_str());
  std::printf("snapshotter fscache e2e: images built in %.1fs, %.1fs in the VM\n", build_s,
              double(r.elapsed.count()) / 1000.0);
  std::fflush(stdout);
  INFO(r.output);
  CHECK(r.exit_code == 0);
}
